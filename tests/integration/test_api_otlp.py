"""The real OpenTelemetry SDK exports OTLP (protobuf, and JSON) to a running API; the gen_ai
spans come back out of the broker as priced events, credited to the key's tenant and the
agent named on the spans, with the version from ``service.version``.

Pricing runs the streams worker's own core (``agentledger.streams.worker.processor.Processor``) as a
relay from the events topic to the priced topic, without Faust's start-up time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agentledger.admin import create_topics
from agentledger.api import otlp
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.events import PricedEvent, SpanEvent, ToolCallEvent, UsageEvent
from agentledger.pricing import PriceBook
from agentledger.settings import Settings
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import decode_priced


class JsonOtlpExporter(SpanExporter):
    """OTLP/HTTP with the JSON encoding (what JavaScript and Collector exporters can send)."""

    def __init__(self, endpoint: str, headers: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.headers = {**headers, "content-type": "application/json"}
        self.statuses: list[int] = []
        self.answers: list[dict[str, Any]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        response = httpx.post(self.endpoint, content=otlp.to_json(encode_spans(spans)), headers=self.headers)
        self.statuses.append(response.status_code)
        if response.status_code == 200:
            self.answers.append(response.json())
        return SpanExportResult.SUCCESS if response.status_code == 200 else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


@dataclass
class Running:
    url: str
    key: str
    bootstrap: str
    prefix: str


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home: Path = tmp_path_factory.mktemp("otlp")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
    )
    with ApiServer(app) as url:
        yield Running(url, keys["acme_ingest"], kafka_bootstrap, prefix)


def _run_agent(exporter: SpanExporter, agent: str) -> None:
    """What an instrumented framework (e.g. Microsoft Agent Framework) emits for one turn."""
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "service.version": "v3"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("framework")
    with tracer.start_as_current_span(f"invoke_agent {agent}") as turn:
        turn.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                             "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200})  # fmt: skip
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000,
                                "gen_ai.usage.output_tokens": 200, "gen_ai.usage.cache_read.input_tokens": 400,
                                "gen_ai.input.messages": '[{"role":"user","content":"secret"}]'})  # fmt: skip
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
    assert provider.force_flush(10_000)
    provider.shutdown()


def _price_and_collect(api: Running, agent: str, want_usage: int) -> list[PricedEvent]:
    """Relay events -> Processor -> priced topic, then read the agent's priced events back."""

    async def run() -> list[PricedEvent]:
        from aiokafka import AIOKafkaProducer

        processor = Processor(MemoryStore(), PriceBook.load())
        source = AIOKafkaConsumer(api.prefix + "agentledger.events.v1", bootstrap_servers=api.bootstrap,
                                  auto_offset_reset="earliest")  # fmt: skip
        sink = AIOKafkaConsumer(api.prefix + "agentledger.events.priced.v1", bootstrap_servers=api.bootstrap,
                                auto_offset_reset="earliest")  # fmt: skip
        producer = AIOKafkaProducer(bootstrap_servers=api.bootstrap, acks="all")
        for client in (source, sink, producer):
            await client.start()
        out: list[PricedEvent] = []
        try:
            async with asyncio.timeout(30):
                while sum(isinstance(p.event, UsageEvent) for p in out) < want_usage:
                    for tp, records in (await source.getmany(timeout_ms=200)).items():
                        for r in records:
                            output = processor.process(
                                r.value, r.key, tp.partition, r.offset, r.timestamp / 1000
                            )
                            for key, value in output.priced:  # the worker's records, as it would produce them
                                await producer.send_and_wait(api.prefix + "agentledger.events.priced.v1",
                                                             value, key=key)  # fmt: skip
                    for records in (await sink.getmany(timeout_ms=200)).values():
                        for r in records:
                            _, events = decode_priced(r.value)
                            out += [p for p in events if p.event.agent == agent]
        finally:
            for client in (source, sink, producer):
                await client.stop()
        return out

    return asyncio.run(run())


def _check(priced: list[PricedEvent], agent: str) -> None:
    (usage,) = [p for p in priced if isinstance(p.event, UsageEvent)]
    assert usage.event.tenant == "acme" and usage.event.agent == agent and usage.event.agent_version == "v3"
    assert (usage.event.provider, usage.event.model) == ("openai", "gpt-4o")
    assert (usage.event.input_tokens, usage.event.output_tokens, usage.event.cache_read_tokens) == (
        1000,
        200,
        400,
    )
    expected, ok, _ = PriceBook.load().price(usage.event)
    assert usage.priced and ok and usage.cost_usd == expected > Decimal(0)
    kinds = {type(p.event) for p in priced}
    assert {SpanEvent, ToolCallEvent} <= kinds
    assert all("secret" not in p.event.model_dump_json() for p in priced)  # content never stored
    # Usage counted once: the rolled-up totals on invoke_agent are not a second call.
    assert sum(p.cost_usd for p in priced) == expected


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_protobuf_export_comes_back_priced(api: Running, compression: Compression) -> None:
    agent = f"pb-{uuid.uuid4().hex[:6]}"
    exporter = OTLPSpanExporter(
        endpoint=f"{api.url}/v1/traces",
        headers={"Authorization": f"Bearer {api.key}"},
        compression=compression,
    )
    _run_agent(exporter, agent)
    _check(_price_and_collect(api, agent, 1), agent)


def test_json_export_comes_back_priced(api: Running) -> None:
    agent = f"js-{uuid.uuid4().hex[:6]}"
    exporter = JsonOtlpExporter(f"{api.url}/v1/traces", {"Authorization": f"Bearer {api.key}"})
    _run_agent(exporter, agent)
    assert exporter.statuses and set(exporter.statuses) == {200}
    _check(_price_and_collect(api, agent, 1), agent)


def test_exporter_without_a_valid_key_is_refused(api: Running) -> None:
    exporter = JsonOtlpExporter(f"{api.url}/v1/traces", {"Authorization": "Bearer al_bad_key"})
    _run_agent(exporter, "nobody")
    assert set(exporter.statuses) == {401}


def test_openinference_spans_come_back_priced(api: Running) -> None:
    """LangChain/smolagents through OpenInference: other attribute names, rollups on the AGENT
    span (counted once), the agent named by its span."""
    agent = f"oi-{uuid.uuid4().hex[:6]}"
    exporter = JsonOtlpExporter(f"{api.url}/v1/traces", {"Authorization": f"Bearer {api.key}"})
    provider = TracerProvider(resource=Resource.create({"service.version": "v4"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("openinference")
    with tracer.start_as_current_span(agent) as turn:
        turn.set_attributes({"openinference.span.kind": "AGENT", "llm.token_count.prompt": 900,
                             "llm.token_count.completion": 100})  # fmt: skip
        with tracer.start_as_current_span("ChatOpenAI") as llm:
            llm.set_attributes({"openinference.span.kind": "LLM", "llm.provider": "openai",
                                "llm.model_name": "gpt-4o", "llm.token_count.prompt": 900,
                                "llm.token_count.completion": 100,
                                "llm.token_count.prompt_details.cache_read": 300})  # fmt: skip
    assert provider.force_flush(10_000)
    provider.shutdown()
    priced = _price_and_collect(api, agent, 1)
    (usage,) = [p for p in priced if isinstance(p.event, UsageEvent)]
    assert (usage.event.tenant, usage.event.agent_version, usage.event.model) == ("acme", "v4", "gpt-4o")
    assert (usage.event.input_tokens, usage.event.output_tokens, usage.event.cache_read_tokens) == (
        900,
        100,
        300,
    )
    expected, _, _ = PriceBook.load().price(usage.event)
    assert usage.cost_usd == expected > 0 and sum(p.cost_usd for p in priced) == expected


def test_spans_with_a_boolean_count_or_a_hidden_character_in_the_name_are_reported(api: Running) -> None:
    """Both used to pass or vanish quietly: ``True`` was 1 output token, a name with a bidi
    override was only logged. Now the exporter's answer says which spans and why."""
    agent = f"bad-{uuid.uuid4().hex[:6]}"
    exporter = JsonOtlpExporter(f"{api.url}/v1/traces", {"Authorization": f"Bearer {api.key}"})
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("framework")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.agent.name": agent, "gen_ai.usage.input_tokens": 1000}  # fmt: skip
    with tracer.start_as_current_span("chat gpt-4o") as good:
        good.set_attributes({**chat, "gen_ai.usage.output_tokens": 200})
    with tracer.start_as_current_span("chat gpt-4o") as boolean:
        boolean.set_attributes({**chat, "gen_ai.usage.output_tokens": True})
    with tracer.start_as_current_span("chat gpt\u202e4o") as hidden:
        hidden.set_attributes({**chat, "gen_ai.usage.output_tokens": 200})
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert exporter.statuses == [200]
    partial = exporter.answers[0]["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    message = partial["errorMessage"]
    boolean_id = f"{boolean.get_span_context().span_id:016x}"
    hidden_id = f"{hidden.get_span_context().span_id:016x}"
    assert f"span {boolean_id}" in message and "gen_ai.usage.output_tokens is a boolean (True)" in message
    assert f"span {hidden_id}" in message and "U+202E RIGHT-TO-LEFT OVERRIDE at position 8" in message
    assert "\u202e" not in message  # the answer names the character, it does not carry it
    # The good span alone is counted: 200 output tokens, no made-up 1-token call.
    priced = _price_and_collect(api, agent, 1)
    assert [(p.event.span_id, p.event.output_tokens) for p in priced if isinstance(p.event, UsageEvent)] == [
        (f"{good.get_span_context().span_id:016x}", 200)
    ]
    assert {p.event.span_id for p in priced} == {f"{good.get_span_context().span_id:016x}"}
