"""``POST /v1/events`` (contract events, JSON) and ``POST /v1/traces`` (OTLP/HTTP)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from agentledger.api import ingest, otlp
from agentledger.api.auth import require
from agentledger.api.errors import ForbiddenError, responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ConfigError
from agentledger.genai import MappingDefaults, spans_to_events

router = APIRouter(prefix="/v1", tags=["ingest"])


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request's `events` list.")
    reason: str


class IngestAccepted(BaseModel):
    accepted: int = Field(description="Events written to Kafka.")
    rejected: list[RejectedEvent] = Field(description="Events refused, by index, with the reason.")
    envelopes: int = Field(description="Kafka records written (one per tenant/agent).")


_EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "object"},
                            "description": "Contract events (see docs/schema).",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/events",
    status_code=202,
    response_model=IngestAccepted,
    openapi_extra=_EVENTS_BODY,
    responses=responses(400, 401, 403, 413, 422, 429, 503),
    summary="Ingest a batch of contract events",
)
async def post_events(
    request: Request,
    key: ApiKey = Depends(require(KeyScope.INGEST)),
    state: ApiState = Depends(get_state),
) -> Response:
    """Validate each event, write the valid ones to Kafka; invalid ones are reported by index.

    A key bound to a tenant may only send that tenant's events: any other tenant refuses the
    whole request (403).
    """
    body = await ingest.read_body(request, state.settings.max_body_bytes)
    items = ingest.event_items(body, state.settings.max_events_per_request)
    checked = ingest.check_events(items, key)
    if checked.events:
        state.limiter.take(key.key_id, len(checked.events))
    written = await ingest.publish(state.publisher, state.topics.events, checked.events)
    # The hot path answers with bytes directly (the model above documents the shape).
    answer = {"accepted": len(checked.events), "rejected": checked.rejected, "envelopes": written}
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


_OTLP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            otlp.JSON: {"schema": {"type": "object", "properties": {"resourceSpans": {"type": "array"}}}},
        },
    }
}


@router.post(
    "/traces",
    openapi_extra=_OTLP_BODY,
    responses={
        200: {"description": "ExportTraceServiceResponse (protobuf or JSON, like the request)"},
        **responses(400, 401, 403, 413, 422, 429, 503),
    },
    summary="OTLP/HTTP trace export (gen_ai spans become priced events)",
)
async def post_traces(
    request: Request,
    key: ApiKey = Depends(require(KeyScope.INGEST)),
    state: ApiState = Depends(get_state),
    x_agentledger_tenant: str | None = Header(default=None, description="Tenant, for all-tenant keys."),
) -> Response:
    """Point any OTLP exporter here (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) with the key in
    ``Authorization: Bearer``; the key's tenant is the events' tenant."""
    tenant = key.tenant or x_agentledger_tenant
    if tenant is None:
        raise ForbiddenError("an all-tenant key must name the tenant in X-AgentLedger-Tenant")
    if key.tenant is not None and x_agentledger_tenant not in (None, key.tenant):
        raise ForbiddenError(f"this key is bound to tenant {key.tenant!r}")
    content_type = request.headers.get("content-type", "")
    body = await ingest.read_body(request, state.settings.max_body_bytes)
    spans = otlp.spans_of(otlp.parse_request(body, content_type))
    try:
        events = spans_to_events(spans, MappingDefaults(tenant=tenant)) if spans else []
    except NotImplementedError:
        raise ConfigError("the OpenTelemetry GenAI mapping is not available in this build") from None
    foreign = [e for e in events if e.tenant != tenant]
    if foreign:
        raise ForbiddenError(f"mapped events name tenant {foreign[0].tenant!r}, not {tenant!r}")
    if events:
        state.limiter.take(key.key_id, len(events))
    await ingest.publish(state.publisher, state.topics.events, events)
    payload, media = otlp.encode_response(content_type)
    return Response(payload, media_type=media)
