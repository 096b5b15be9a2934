"""``POST /v1/events`` (contract events, JSON) and ``POST /v1/traces`` (OTLP/HTTP)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from agentledger.api import ingest, otlp
from agentledger.api.auth import require
from agentledger.api.errors import ForbiddenError, OutcomeUnknownError, responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ConfigError, ContractError, TransientError
from agentledger.genai import MappingDefaults, OtelSpan, spans_to_events

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
    responses=responses(400, 401, 403, 413, 415, 422, 429, 503),
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
    planned = ingest.plan(
        checked.events, state.topics.events, state.publisher.max_value_bytes, checked.indexes
    )
    rejected = checked.rejected + [{"index": i, "reason": why} for i, why in planned.too_large]
    accepted = len(checked.events) - len(planned.too_large)
    if not accepted:
        raise ContractError(
            f"no event of the {len(items)} was accepted; nothing was written",
            [(f"events.{r['index']}", r["reason"]) for r in sorted(rejected, key=lambda r: r["index"])],
        )
    state.limiter.take(key.key_id, accepted)
    await ingest.publish(state.publisher, planned.records)
    # The hot path answers with bytes directly (the model above documents the shape).
    rejected.sort(key=lambda r: r["index"])
    answer = {"accepted": accepted, "rejected": rejected, "envelopes": len(planned.records)}
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
        **responses(400, 401, 403, 413, 415, 422, 429, 503),
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
    failed: list[tuple[OtelSpan, str]] = []
    try:
        events = spans_to_events(spans, MappingDefaults(tenant=tenant), failed) if spans else []
    except NotImplementedError:
        raise ConfigError("the OpenTelemetry GenAI mapping is not available in this build") from None
    foreign = [e for e in events if e.tenant != tenant]
    if foreign:
        raise ForbiddenError(f"mapped events name tenant {foreign[0].tenant!r}, not {tenant!r}")
    planned = ingest.plan(events, state.topics.events, state.publisher.max_value_bytes)
    too_large = {events[i].span_id: why for i, why in planned.too_large}
    reasons = [f"span {s.span_id} ({s.name[:64]!r}): {why}" for s, why in failed]
    reasons += [f"span {span_id}: {why}" for span_id, why in too_large.items()]
    written = len(events) - len(planned.too_large)
    if written:
        state.limiter.take(key.key_id, written)
    try:
        await ingest.publish(state.publisher, planned.records)
    except OutcomeUnknownError as exc:  # indexes of mapped events mean nothing to an exporter
        raise TransientError(
            f"Kafka acknowledged {len(exc.written)} of {written} mapped event(s); export the same "
            "spans again (their event ids derive from the span ids, so nothing is counted twice)"
        ) from None
    rejected = len({s.span_id for s, _ in failed} | set(too_large))
    message = "; ".join(reasons[:20]) + (f"; and {len(reasons) - 20} more" if len(reasons) > 20 else "")
    payload, media = otlp.encode_response(content_type, rejected, message)
    return Response(payload, media_type=media)
