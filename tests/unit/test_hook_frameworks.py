"""Framework adapters behind ``al.instrument()``: the agent they report is used after an
explicit span or configured agent and before OpenTelemetry; a hooked call's framework LLM
span is marked and its usage is not counted again by the OTLP mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from agentledger import collectors as al
from agentledger.collectors import frameworks, naming
from agentledger.collectors.frameworks.langchain import agent_of_metadata
from agentledger.events import SpanEvent, UsageEvent
from agentledger.genai import HOOKED_CALL, MappingDefaults, OtelSpan, spans_to_events

TRACE = "0af7651916cd43dd8448eb211c80319c"
LLM = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
       "llm.token_count.prompt": 1000, "llm.token_count.completion": 200}  # fmt: skip


@pytest.fixture
def emitter() -> Iterator[Any]:
    em = al.configure(tenant="acme", transport=al.MemoryTransport())
    yield em
    al.shutdown(1)


@pytest.fixture
def source() -> Iterator[dict[str, str | None]]:
    running: dict[str, str | None] = {"agent": None}

    def current() -> str | None:
        return running["agent"]

    naming.add_agent_source(current)
    yield running
    naming.remove_agent_source(current)


def test_a_marked_llm_span_adds_no_usage_but_keeps_its_span() -> None:
    def llm(span_id: str, **extra: Any) -> OtelSpan:
        return OtelSpan(TRACE, span_id, None, "OpenAIServerModel.generate", 1, 2, {**LLM, **extra})

    events = spans_to_events(
        [llm("1" * 16, **{HOOKED_CALL: True}), llm("2" * 16)], MappingDefaults(tenant="acme")
    )
    assert [e.span_id for e in events if isinstance(e, UsageEvent)] == ["2" * 16]  # the unmarked one only
    assert sorted(e.span_id for e in events if isinstance(e, SpanEvent)) == ["1" * 16, "2" * 16]


def test_the_adapters_agent_comes_after_an_explicit_span_and_before_opentelemetry(
    emitter: Any, source: dict[str, str | None]
) -> None:
    tracer = TracerProvider().get_tracer("t")
    assert naming.resolve(emitter).agent == "agent"  # nothing running: the default
    source["agent"] = "researcher"
    assert naming.resolve(emitter).agent == "researcher"
    with tracer.start_as_current_span("Writer.run", attributes={"openinference.span.kind": "AGENT"}):
        caller = naming.resolve(emitter)
        assert caller.agent == "researcher" and caller.trace_id is not None  # OTel still gives the trace
    with al.span("explicit", kind="agent", agent="planner"):
        assert naming.resolve(emitter).agent == "planner"


def test_an_agent_given_to_configure_wins_over_the_adapter(source: dict[str, str | None]) -> None:
    em = al.configure(tenant="acme", agent="support", transport=al.MemoryTransport())
    try:
        source["agent"] = "researcher"
        assert naming.resolve(em).agent == "support"
    finally:
        al.shutdown(1)


def test_a_failing_agent_source_never_reaches_the_call(emitter: Any) -> None:
    def broken() -> str | None:
        raise RuntimeError("adapter bug")

    naming.add_agent_source(broken)
    try:
        assert naming.resolve(emitter).agent == "agent"
    finally:
        naming.remove_agent_source(broken)


def test_the_current_llm_span_is_marked_and_other_spans_are_not() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("manager.run", attributes={"openinference.span.kind": "AGENT"}):
        frameworks.mark_hooked_call()
        with tracer.start_as_current_span(
            "OpenAIServerModel.generate", attributes={"openinference.span.kind": "LLM"}
        ):
            frameworks.mark_hooked_call()
    marked = {s.name: bool((s.attributes or {}).get(HOOKED_CALL)) for s in exported.get_finished_spans()}
    assert marked == {"OpenAIServerModel.generate": True, "manager.run": False}


def test_langchain_metadata_names_the_innermost_named_agent_else_the_top_level_node() -> None:
    assert agent_of_metadata({"lc_agent_name": "researcher", "langgraph_node": "model"}) == "researcher"
    ns = "researcher:1f0e|model:2a3b"
    assert agent_of_metadata({"langgraph_checkpoint_ns": ns, "langgraph_node": "model"}) == "researcher"
    assert agent_of_metadata({"langgraph_node": "writer"}) == "writer"
    assert agent_of_metadata({}) is None and agent_of_metadata(None) is None


def test_adapters_of_frameworks_not_installed_are_not_loaded() -> None:
    import importlib.util

    missing = [f for f in frameworks.ADAPTERS if importlib.util.find_spec(f) is None]
    assert missing, "the test venv has every framework installed"
    assert not set(frameworks.install()) & set(missing)


_ABSENT = ["langchain_core", "crewai", "smolagents", "haystack", "agent_framework"]
_PROBE = """
import importlib.util, io, json, logging, sys
from agentledger import collectors as al
from agentledger.collectors import frameworks
absent = %r
said = io.StringIO()
handler = logging.StreamHandler(said)
logging.getLogger("agentledger").addHandler(handler)
logging.getLogger("agentledger").setLevel(logging.DEBUG)
al.configure(tenant="acme", transport=al.MemoryTransport())
hooked = al.instrument(enforce=False)
adapters = ["agentledger.collectors.frameworks." + frameworks.ADAPTERS[name] for name in absent]
print(json.dumps({
    "absent": [name for name in absent if importlib.util.find_spec(name) is None],
    "hooked": len(hooked), "installed": frameworks.installed(),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in absent or m in adapters),
    "said": said.getvalue(),
}))
"""


def test_instrument_without_a_framework_installed_loads_and_says_nothing_about_it() -> None:
    """This environment has none of LangChain, CrewAI, smolagents, Haystack or Agent Framework:
    in a fresh process the one line still hooks the SDKs, imports neither those frameworks nor
    their adapters, and logs nothing about them."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE % (_ABSENT,)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["absent"] == _ABSENT  # the premise: none of them is installed here
    assert report["hooked"] > 0
    assert not set(_ABSENT) & set(report["installed"])
    assert report["loaded"] == []
    words = ("langchain", "crewai", "smolagents", "haystack", "agent_framework", "agent framework")
    assert not any(word in report["said"].lower() for word in words), report["said"]
