"""OTLP/HTTP requests (protobuf and JSON, as the real SDK encodes them) -> OtelSpan."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from agentledger.api import otlp
from agentledger.api.errors import BadRequestError


def _spans() -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "planner", "service.version": "v7"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent planner") as agent:
        agent.set_attribute("gen_ai.agent.name", "planner")
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 80)
            llm.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            llm.set_attribute("temperature", 0.5)
            llm.set_attribute("stream", False)
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_status(Status(StatusCode.ERROR, "boom"))
            tool.record_exception(ValueError("boom"))
    provider.shutdown()
    return exporter.get_finished_spans()


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sdk_export_request_reads_back_exactly(encoding: str) -> None:
    sdk_spans = _spans()
    request = encode_spans(sdk_spans)
    if encoding == "protobuf":
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    else:
        body, content_type = otlp.to_json(request), "application/json; charset=utf-8"
        assert orjson.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == (
            f"{sdk_spans[0].context.trace_id:032x}"
        )
    spans = {s.name: s for s in otlp.spans_of(otlp.parse_request(body, content_type))}
    assert set(spans) == {"invoke_agent planner", "chat gpt-4o", "execute_tool search"}
    llm, agent, tool = spans["chat gpt-4o"], spans["invoke_agent planner"], spans["execute_tool search"]
    sdk_llm = next(s for s in sdk_spans if s.name == "chat gpt-4o")
    assert llm.trace_id == f"{sdk_llm.context.trace_id:032x}"
    assert llm.span_id == f"{sdk_llm.context.span_id:016x}"
    assert llm.parent_span_id == agent.span_id and agent.parent_span_id is None
    assert (llm.start_ns, llm.end_ns) == (sdk_llm.start_time, sdk_llm.end_time)
    assert llm.attributes["gen_ai.usage.input_tokens"] == 1200
    assert llm.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert llm.attributes["temperature"] == 0.5 and llm.attributes["stream"] is False
    assert llm.resource["service.version"] == "v7" and llm.resource["service.name"] == "planner"
    assert tool.status_error and tool.error_type == "ValueError" and not llm.status_error


def test_snake_case_json_and_int64_strings_are_accepted() -> None:
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                                "span_id": "b7ad6b7169203331",
                                "name": "chat",
                                "start_time_unix_nano": "1700000000000000000",
                                "end_time_unix_nano": "1700000000500000000",
                                "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = otlp.spans_of(otlp.parse_request(orjson.dumps(doc), "application/json"))
    assert span.end_ns - span.start_ns == 500_000_000 and span.attributes["n"] == 42
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xff\xff", "application/x-protobuf"),
        (b"{not json", "application/json"),
        (b"[1,2]", "application/json"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "application/json"),
        (b'{"resourceSpans": 3}', "application/json"),
        (b"{}", "text/plain"),
    ],
)
def test_unreadable_requests_are_400(body: bytes, content_type: str) -> None:
    with pytest.raises(BadRequestError):
        otlp.parse_request(body, content_type)


def test_response_follows_the_request_encoding() -> None:
    payload, media = otlp.encode_response("application/x-protobuf")
    assert media == "application/x-protobuf" and payload == b""
    payload, media = otlp.encode_response("application/json", rejected_spans=2, message="no usage")
    assert media == "application/json" and orjson.loads(payload)["partialSuccess"]["rejectedSpans"] == "2"


@pytest.mark.parametrize("depth", [30, 250, 1000])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(depth: int) -> None:
    # Each level is 4 JSON levels deep (value, kvlistValue, values, the entry): 120 to 4,000.
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x","attributes":[{"key":"a","value":'
    body += b'{"kvlistValue":{"values":[{"key":"k","value":' * depth + b'{"stringValue":"leaf"}'
    body += b"}]}}" * depth + b"}]}]}]}]}"
    with pytest.raises(BadRequestError, match=r"deeper|not JSON"):
        otlp.parse_request(body, otlp.JSON)


def test_ordinary_nesting_still_reads() -> None:
    value: dict[str, object] = {"stringValue": "leaf"}
    for _ in range(5):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    span = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "name": "x",
        "attributes": [{"key": "a", "value": value}],
    }
    request = otlp.parse_request(
        orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), otlp.JSON
    )
    spans = otlp.spans_of(request)
    assert spans[0].attributes["a"] == {"k": {"k": {"k": {"k": {"k": "leaf"}}}}}
