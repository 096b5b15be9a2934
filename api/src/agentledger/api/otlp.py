"""OTLP/HTTP trace requests (protobuf or JSON) -> ``OtelSpan`` for the shared mapping.

No mapping here: ``agentledger.genai.spans_to_events`` turns spans into events for both the
in-process bridge and this endpoint. This module only reads the wire formats. OTLP JSON is
protobuf's JSON mapping except that trace and span ids are hex (not base64), so ids are
converted and protobuf's own parser does the rest (camelCase or snake_case, int64 as strings).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentledger.api.errors import BadRequestError
from agentledger.genai import OtelSpan, OtelSpanEvent

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_STATUS_ERROR = 2
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value (arrays -> lists, kvlists -> dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


def _error_type(span: Any, attrs: dict[str, Any]) -> str | None:
    if attrs.get("error.type"):
        return str(attrs["error.type"])
    for event in span.events:
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == "exception.type":
                    return str(any_value(kv.value))
    return None


def spans_of(request: ExportTraceServiceRequest) -> list[OtelSpan]:
    """Every span of an export request, with its resource's attributes."""
    out: list[OtelSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = attributes(span.attributes)
                out.append(
                    OtelSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attrs,
                        status_error=span.status.code == _STATUS_ERROR,
                        error_type=_error_type(span, attrs),
                        resource=resource,
                        events=[
                            OtelSpanEvent(e.name, e.time_unix_nano, attributes(e.attributes))
                            for e in span.events
                        ],
                    )
                )
    return out


MAX_JSON_DEPTH = 64
"""Deepest nesting an OTLP JSON body may have. A real export is about 10 levels deep (plus
nested attribute values); a deeper one would exhaust Python's recursion in the readers."""


def check_depth(doc: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """400 when ``doc`` nests deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise BadRequestError(f"OTLP JSON nests deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP JSON ids are hex; protobuf's JSON parser expects base64 for bytes fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequestError(f"{key} must be hex (OTLP JSON), got {value[:40]!r}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Read an export request in either encoding (400 when it cannot be read)."""
    media = content_type.split(";")[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise BadRequestError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        return request
    if media == JSON:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadRequestError("an OTLP JSON body is an object with `resourceSpans`")
        check_depth(doc)
        _hex_ids_to_base64(doc)
        try:
            json_format.ParseDict(doc, request, ignore_unknown_fields=True)
        except (json_format.ParseError, binascii.Error, ValueError, TypeError, RecursionError) as exc:
            raise BadRequestError(f"not an OTLP JSON ExportTraceServiceRequest: {exc}") from None
        return request
    raise BadRequestError(f"content type must be {PROTOBUF} or {JSON}, got {media or 'none'!r}")


def encode_response(content_type: str, rejected_spans: int = 0, message: str = "") -> tuple[bytes, str]:
    """An ExportTraceServiceResponse in the request's encoding."""
    response = ExportTraceServiceResponse()
    if rejected_spans:
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = message
    if content_type.split(";")[0].strip().lower() == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return json_format.MessageToJson(response, indent=None).encode(), JSON


def _base64_ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)


def to_json(request: ExportTraceServiceRequest) -> bytes:
    """An export request as OTLP JSON (hex ids, camelCase): what JSON exporters send."""
    doc = json_format.MessageToDict(request)
    _base64_ids_to_hex(doc)
    return orjson.dumps(doc)
