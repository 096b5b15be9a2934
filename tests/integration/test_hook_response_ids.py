"""An OpenAI-compatible server that reuses response ids (Ollama: ``chatcmpl-<0..998>``), through
the hook, the OpenTelemetry bridge, the real broker and the streams worker: two calls that
share an id count twice, and one call seen by both the hook and the bridge counts once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from _streams_harness import start_worker
from fakeprovider import FakeProvider, FixedUsage
from test_hook_sdk import MSGS

from agentledger import collectors as al

USAGE = FixedUsage(input_tokens=1000, output_tokens=200)


def test_reused_response_ids_count_each_call_once(topics: Any, tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from agentledger.collectors.otel import AgentLedgerSpanProcessor

    worker = start_worker(topics, tmp_path / "worker")
    em = al.configure(
        tenant="acme", agent="planner", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5
    )
    bridge = AgentLedgerSpanProcessor(em)
    tracer = TracerProvider()
    tracer.add_span_processor(bridge)
    try:
        al.instrument(enforce=False)
        with FakeProvider(usage=USAGE, id_cycle=1) as fake:  # every answer is chatcmpl-0
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
            answers = []
            with al.span("plain", kind="agent", agent="planner"):  # hook only
                for _ in range(2):
                    answers.append(client.chat.completions.create(model="gpt-4o", messages=MSGS))  # type: ignore[arg-type]
            llm = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
            }
            instrumentation = tracer.get_tracer("instrumentation")
            for _ in range(2):  # an OTel instrumentation's LLM span around each call: both paths see it
                with instrumentation.start_as_current_span("chat gpt-4o", attributes=llm) as span:
                    answer = client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                    span.set_attributes({"gen_ai.response.id": answer.id, "gen_ai.usage.input_tokens": 1000,
                                         "gen_ai.usage.output_tokens": 200})  # fmt: skip
                answers.append(answer)
        assert {a.id for a in answers} == {"chatcmpl-0"}
        assert bridge.force_flush(10_000) and al.flush(10)
        # 4 usage events from the hook and 3 spans (1 agent, 2 instrumentation LLM spans). The
        # bridge's copy of an instrumented call's usage is either not sent (the hook marked
        # the span it recorded) or dropped by the worker as a duplicate: never counted.
        stats = worker.wait_events(7, key="events")
        assert stats["counters"]["events"] + stats["counters"]["duplicates"] in (7, 9)
        # every call counts: four, not one (one id) and not six (two paths)
        today = worker.rollup("agent/acme/planner")["calendar_day"]
        assert (today["calls"], today["tokens"]) == (4, 4 * 1200)
    finally:
        bridge.shutdown()
        al.uninstrument()
        al.shutdown(5)
        worker.kill()
