"""The provider-SDK hook with the real openai and anthropic SDKs, the fake provider over HTTP and
a real broker: every call recorded once with the provider's usage, kills obeyed before
anything is sent, failover to an OpenAI-compatible fallback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider, FixedUsage

from agentledger import collectors as al
from agentledger import wire
from agentledger.collectors import AgentKilled, FailoverUnavailable, Fallback, Guard
from agentledger.collectors.naming import response_event_id
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind, UsageEvent

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]
CLAUDE = "claude-sonnet-4-6"
USAGE = FixedUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=600, reasoning_tokens=50)


def command(action: Action, params: CommandParams | None = None, **scope: Any) -> ControlCommand:
    return ControlCommand(
        command_id=f"cmd-{uuid.uuid4().hex[:12]}", ts=datetime.now(UTC), scope=Scope(**scope),
        action=action, reason="hook test", params=params or CommandParams(),
    )  # fmt: skip


def produce(bootstrap: str, topic: str, *commands: ControlCommand) -> None:
    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for cmd in commands:
                await producer.send_and_wait(topic, wire.dump(cmd), key=cmd.scope.key.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def usage_events(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[UsageEvent]:
    async def run() -> list[UsageEvent]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[UsageEvent] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for record in records:
                        decoded = wire.decode_envelope(record.value)
                        assert decoded.rejected == []
                        out.extend(e for e in decoded.events if isinstance(e, UsageEvent))
                if len(out) >= expect and not batch:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(usage=USAGE) as f:
        yield f


@pytest.fixture
def guard(topics: Any) -> Iterator[Guard]:
    g = Guard(topics.bootstrap, topics.control)
    assert g.wait_ready(30)
    yield g
    g.close()


@pytest.fixture
def configured(topics: Any) -> Iterator[Any]:
    em = al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5)
    yield em
    al.uninstrument()
    al.shutdown(5)


def wait_for(guard: Guard, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(guard.commands) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(guard.commands) == count


def sync_calls(fake: FakeProvider) -> list[str]:
    """Seven calls, one per API shape; returns the response ids the agent saw."""
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    ids = [oc.chat.completions.create(model="gpt-4o", messages=MSGS).id]  # type: ignore[arg-type]
    chunks = list(oc.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))  # type: ignore[arg-type]
    # The hook asked for the usage chunk; the agent, which did not, sees the stream it asked for.
    assert len(chunks) == 2 and all(c.usage is None and c.choices for c in chunks)
    ids.append(chunks[0].id)
    ids.append(oc.responses.create(model="gpt-4o", input="2 + 2?").id)
    events = list(oc.responses.create(model="gpt-4o", input="2 + 2?", stream=True))
    ids.append(events[-1].response.id)  # type: ignore[union-attr]
    ids.append(ac.messages.create(model=CLAUDE, max_tokens=16, messages=MSGS).id)  # type: ignore[arg-type]
    raw = list(ac.messages.create(model=CLAUDE, max_tokens=16, messages=MSGS, stream=True))  # type: ignore[arg-type]
    ids.append(raw[0].message.id)  # type: ignore[union-attr]
    with ac.messages.stream(model=CLAUDE, max_tokens=16, messages=MSGS) as stream:  # type: ignore[arg-type]
        ids.append(stream.get_final_message().id)
    return ids


async def async_calls(fake: FakeProvider) -> list[str]:
    oc = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-fake")
    ids = [(await oc.chat.completions.create(model="gpt-4o", messages=MSGS)).id]  # type: ignore[arg-type]
    chunks = [c async for c in await oc.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)]  # type: ignore[arg-type]
    assert len(chunks) == 2 and all(c.usage is None for c in chunks)
    ids.append(chunks[0].id)
    ids.append((await oc.responses.create(model="gpt-4o", input="2 + 2?")).id)
    events = [e async for e in await oc.responses.create(model="gpt-4o", input="2 + 2?", stream=True)]
    ids.append(events[-1].response.id)  # type: ignore[union-attr]
    ids.append((await ac.messages.create(model=CLAUDE, max_tokens=16, messages=MSGS)).id)  # type: ignore[arg-type]
    raw = [e async for e in await ac.messages.create(model=CLAUDE, max_tokens=16, messages=MSGS, stream=True)]  # type: ignore[arg-type]
    ids.append(raw[0].message.id)  # type: ignore[union-attr]
    async with ac.messages.stream(model=CLAUDE, max_tokens=16, messages=MSGS) as stream:  # type: ignore[arg-type]
        ids.append((await stream.get_final_message()).id)
    await oc.close()
    await ac.close()
    return ids


def test_every_call_is_recorded_once_with_the_providers_usage(
    topics: Any, fake: FakeProvider, configured: Any
) -> None:
    hooked = al.instrument(enforce=False)
    assert len(hooked) == 16  # 12 + anthropic's beta messages.create and .stream, sync and async
    assert al.instrument(enforce=False) == hooked  # idempotent: nothing wrapped twice
    with al.span("plan", kind="agent", agent="planner"):
        planner_ids = sync_calls(fake)

    async def coder() -> list[str]:
        async with al.span("code", kind="agent", agent="coder"):
            return await async_calls(fake)

    coder_ids = asyncio.run(coder())
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=14)
    assert len(fake.requests) == 14
    by_id = {e.event_id: e for e in events}
    assert len(events) == len(by_id) == 14  # once each
    for agent, ids in (("planner", planner_ids), ("coder", coder_ids)):
        for n, response_id in enumerate(ids):
            event = by_id[response_event_id(response_id)]
            anthropic_call = n >= 4
            assert event.agent == agent and event.tenant == "acme"
            assert event.provider == ("anthropic" if anthropic_call else "openai")
            assert event.model == (CLAUDE if anthropic_call else "gpt-4o")
            assert (event.input_tokens, event.output_tokens, event.cache_read_tokens) == (1000, 200, 600)
            # The fake's Anthropic messages report no thinking tokens; OpenAI's report 50.
            assert event.reasoning_tokens == (0 if anthropic_call else 50)
            assert event.attributes["gen_ai.response.id"] == response_id


def test_uninstrument_restores_the_sdk(fake: FakeProvider, configured: Any) -> None:
    original = openai.resources.chat.completions.Completions.create
    al.instrument(enforce=False)
    assert openai.resources.chat.completions.Completions.create is not original
    al.uninstrument()
    assert openai.resources.chat.completions.Completions.create is original
    assert anthropic.resources.messages.Messages.stream.__name__ == "stream"
    assert not hasattr(anthropic.resources.messages.Messages.stream, "__agentledger_hook__")


def test_a_kill_stops_that_agent_before_anything_is_sent(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    al.instrument(guard=guard)
    kill = command(Action.KILL, CommandParams(kill_reason="budget"), kind=ScopeKind.AGENT, tenant="acme", agent="a")  # fmt: skip
    produce(topics.bootstrap, topics.control, kill)
    wait_for(guard, 1)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    with al.span("a-run", kind="agent", agent="a"):
        with pytest.raises(AgentKilled) as info:
            oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert info.value.command_id == kill.command_id
        with pytest.raises(AgentKilled):
            oc.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        with pytest.raises(AgentKilled):
            ac.messages.stream(model=CLAUDE, max_tokens=16, messages=MSGS)  # type: ignore[arg-type]

    async def killed_async() -> None:
        async with (
            al.span("a-async", kind="agent", agent="a"),
            openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as aoc,
        ):
            await aoc.responses.create(model="gpt-4o", input="2 + 2?")

    with pytest.raises(AgentKilled):
        asyncio.run(killed_async())
    assert fake.requests == []  # nothing was sent for the killed agent
    with al.span("b-run", kind="agent", agent="b"):
        answer = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "4"
    assert len(fake.requests) == 1
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=1)
    assert [(e.agent, e.event_id) for e in events] == [("b", response_event_id(answer.id))]


def test_failover_sends_the_call_to_the_fallback_and_says_where_it_cannot(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    with FakeProvider(usage=FixedUsage(input_tokens=300, output_tokens=30)) as backup:
        al.instrument(guard=guard, fallbacks={"backup": Fallback(base_url=backup.openai_base_url, model="llama-3.1-8b")})  # fmt: skip
        produce(
            topics.bootstrap, topics.control,
            command(Action.FAILOVER, CommandParams(fallback_provider="backup"), kind=ScopeKind.PROVIDER, provider="openai"),
            command(Action.FAILOVER, CommandParams(fallback_provider="backup"), kind=ScopeKind.PROVIDER, provider="anthropic"),
        )  # fmt: skip
        wait_for(guard, 2)
        oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
        with al.span("run", kind="agent", agent="planner"):
            answer = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            streamed = list(oc.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))  # type: ignore[arg-type]
            ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
            with pytest.raises(FailoverUnavailable, match=r"speaks the openai API.*cannot be rerouted"):
                ac.messages.create(model=CLAUDE, max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
        assert fake.requests == []  # the primary saw nothing
        assert [(path, body["model"]) for path, body in backup.requests] == [
            ("/v1/chat/completions", "llama-3.1-8b"), ("/v1/chat/completions", "llama-3.1-8b"),
        ]  # fmt: skip
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=2)
    assert sorted(e.event_id for e in events) == sorted(
        [response_event_id(answer.id), response_event_id(streamed[0].id)]
    )
    for event in events:
        assert (event.provider, event.model, event.input_tokens, event.output_tokens) == (
            "backup", "llama-3.1-8b", 300, 30,
        )  # fmt: skip
        assert event.attributes["agentledger.failover_from"] == "openai"


def test_a_failover_to_an_unconfigured_fallback_says_what_to_configure(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    al.instrument(guard=guard)
    produce(
        topics.bootstrap, topics.control,
        command(Action.FAILOVER, CommandParams(fallback_provider="azure"), kind=ScopeKind.PROVIDER, provider="openai"),
    )  # fmt: skip
    wait_for(guard, 1)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    with pytest.raises(FailoverUnavailable, match=r"no fallback named 'azure'.*fallbacks="):
        oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert fake.requests == []


def test_raw_response_calls_are_recorded_once(topics: Any, fake: FakeProvider, configured: Any) -> None:
    """LiteLLM (so CrewAI and smolagents) calls ``with_raw_response.create`` and parses later."""
    al.instrument(enforce=False)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    with al.span("crew", kind="agent", agent="researcher"):
        raw = oc.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        ids = [raw.parse().id]
        raw_stream = oc.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True},  # type: ignore[arg-type]
        )  # fmt: skip
        chunks = list(raw_stream.parse())
        assert chunks[-1].usage is not None  # asked for by the agent: not hidden
        ids.append(chunks[0].id)

    async def async_raw() -> list[str]:
        ac = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-fake")
        async with al.span("crew", kind="agent", agent="writer"):
            raw = await ac.messages.with_raw_response.create(model=CLAUDE, max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
            response_id = (await raw.parse()).id
        await ac.close()
        return [response_id]

    ids += asyncio.run(async_raw())
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=3)
    assert sorted((e.event_id, e.agent, e.input_tokens) for e in events) == sorted(
        [(response_event_id(ids[0]), "researcher", 1000), (response_event_id(ids[1]), "researcher", 1000),
         (response_event_id(ids[2]), "writer", 1000)]
    )  # fmt: skip


def test_throttle_raises_when_set_to_and_rollback_routes_the_version(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    al.configure(
        tenant="acme",
        agent="a",
        agent_version="v2",
        bootstrap=topics.bootstrap,
        topic=topics.events,
        linger_ms=5,
    )
    al.instrument(guard=guard, throttle="raise", versions={"v1": {"model": "gpt-4o-mini"}})
    produce(
        topics.bootstrap, topics.control,
        command(Action.THROTTLE, CommandParams(rate_per_s=0.2, burst=1), kind=ScopeKind.AGENT, tenant="acme", agent="a"),
        command(Action.ROLLBACK, CommandParams(target_version="v1"), kind=ScopeKind.AGENT, tenant="acme", agent="b"),
    )  # fmt: skip
    wait_for(guard, 2)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    with al.span("a-run", kind="agent", agent="a"):
        oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        with pytest.raises(al.Throttled) as info:
            oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert info.value.retry_after_s > 1
    with al.span("b-run", kind="agent", agent="b"):
        routed = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert [body["model"] for _, body in fake.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert al.flush(10)
    events = {e.event_id: e for e in usage_events(topics.bootstrap, topics.events, expect=2)}
    rolled = events[response_event_id(routed.id)]
    assert (rolled.agent, rolled.agent_version, rolled.model) == ("b", "v1", "gpt-4o-mini")
    assert [e.agent_version for e in events.values() if e.agent == "a"] == ["v2"]


def test_an_agent_named_by_opentelemetry_is_the_one_killed_and_credited(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from agentledger.collectors.naming import track_open_spans

    tracer_provider = TracerProvider()
    assert track_open_spans(tracer_provider)
    tracer = tracer_provider.get_tracer("framework")
    al.instrument(guard=guard)
    produce(topics.bootstrap, topics.control, command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="Researcher"))  # fmt: skip
    wait_for(guard, 1)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    agent_span = {"openinference.span.kind": "AGENT"}
    with (
        tracer.start_as_current_span("Researcher.run", attributes=agent_span),
        tracer.start_as_current_span("step"),
        pytest.raises(AgentKilled),
    ):
        oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    with tracer.start_as_current_span("Writer.run", attributes=agent_span) as writer:
        answer = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert len(fake.requests) == 1
    assert al.flush(10)
    [event] = usage_events(topics.bootstrap, topics.events, expect=1)
    assert (event.event_id, event.agent) == (response_event_id(answer.id), "Writer")
    assert event.trace_id == format(writer.get_span_context().trace_id, "032x")


def test_a_recording_failure_never_reaches_the_agent(fake: FakeProvider) -> None:
    em = al.configure(tenant="acme", agent="planner", transport=al.MemoryTransport())
    try:

        def broken(event: Any) -> None:
            raise RuntimeError("queue gone")

        em._worker.put = broken  # type: ignore[method-assign]
        al.instrument(enforce=False)
        oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
        answer = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "4"
        hook = al.hook.installed()
        assert hook is not None and (hook.recorded, hook.failed) == (0, 1)
    finally:
        al.uninstrument()
        al.shutdown(1)


def test_structured_output_parse_is_recorded(topics: Any, fake: FakeProvider, configured: Any) -> None:
    al.instrument(enforce=False)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")

    async def parse_async() -> str:
        async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as aoc:
            return (await aoc.responses.parse(model="gpt-4o", input="2 + 2?")).id

    with al.span("extract", kind="agent", agent="extractor"):
        ids = [oc.chat.completions.parse(model="gpt-4o", messages=MSGS).id]  # type: ignore[arg-type]
        ids.append(asyncio.run(parse_async()))
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=2)
    assert sorted((e.event_id, e.agent, e.reasoning_tokens) for e in events) == sorted(
        (response_event_id(i), "extractor", 50) for i in ids
    )


def test_async_and_anthropic_calls_fail_over_to_a_fallback_of_their_shape(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    with FakeProvider(usage=FixedUsage(input_tokens=300, output_tokens=30)) as backup:
        al.instrument(
            guard=guard,
            fallbacks={
                "openai-backup": Fallback(base_url=backup.openai_base_url),
                "claude-backup": Fallback(api="anthropic", base_url=backup.url, model="claude-haiku-4-5"),
            },
        )
        produce(
            topics.bootstrap, topics.control,
            command(Action.FAILOVER, CommandParams(fallback_provider="openai-backup"), kind=ScopeKind.PROVIDER, provider="openai"),
            command(Action.FAILOVER, CommandParams(fallback_provider="claude-backup"), kind=ScopeKind.PROVIDER, provider="anthropic"),
        )  # fmt: skip
        wait_for(guard, 2)

        async def calls() -> None:
            async with (
                al.span("run", kind="agent", agent="planner"),
                openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as oc,
                anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-fake") as ac,
            ):
                await oc.responses.create(model="gpt-4o", input="2 + 2?")
                async with ac.messages.stream(model=CLAUDE, max_tokens=16, messages=MSGS) as stream:
                    await stream.get_final_message()

        asyncio.run(calls())
        assert fake.requests == []
        assert [(path, body["model"]) for path, body in backup.requests] == [
            ("/v1/responses", "gpt-4o"), ("/v1/messages", "claude-haiku-4-5"),
        ]  # fmt: skip
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=2)
    assert sorted((e.provider, e.model, e.input_tokens, e.attributes["agentledger.failover_from"]) for e in events) == [
        ("claude-backup", "claude-haiku-4-5", 300, "anthropic"), ("openai-backup", "gpt-4o", 300, "openai"),
    ]  # fmt: skip


def test_an_openai_compatible_host_is_its_own_provider(fake: FakeProvider) -> None:
    """Usage is recorded, and failovers keyed, under the host's provider name, not "openai"."""
    em = al.configure(tenant="acme", agent="planner", transport=al.MemoryTransport())
    guard = Guard(start=False)
    try:
        with FakeProvider() as backup:
            al.instrument(
                guard=guard,
                providers={"127.0.0.1": "vllm"},
                fallbacks={"spare": Fallback(base_url=backup.openai_base_url)},
            )
            oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
            oc.chat.completions.create(model="llama-3.1-70b", messages=MSGS)  # type: ignore[arg-type]
            guard.apply(command(Action.FAILOVER, CommandParams(fallback_provider="spare"), kind=ScopeKind.PROVIDER, provider="vllm"))  # fmt: skip
            oc.chat.completions.create(model="llama-3.1-70b", messages=MSGS)  # type: ignore[arg-type]
            assert (len(fake.requests), len(backup.requests)) == (1, 1)
        assert al.flush(5)
        usage = [e for e in em.transport.events if e["type"] == "usage"]  # type: ignore[attr-defined]
        assert [e["provider"] for e in usage] == ["vllm", "spare"]
    finally:
        al.uninstrument()
        al.shutdown(1)


def test_one_line_after_configure_obeys_the_configured_brokers_control_topic(
    topics: Any, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentledger.settings import get_settings

    monkeypatch.delenv("AGENTLEDGER_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("AGENTLEDGER_TOPIC_PREFIX", topics.prefix)
    get_settings.cache_clear()
    try:
        al.configure(tenant="acme", agent="support", bootstrap=topics.bootstrap, topic=topics.events)
        al.instrument()
        guard = al.hook.installed().guard  # type: ignore[union-attr]
        assert guard is not None and guard.wait_ready(30)
        produce(topics.bootstrap, topics.control, command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="support"))  # fmt: skip
        wait_for(guard, 1)
        with pytest.raises(AgentKilled):
            openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake").chat.completions.create(
                model="gpt-4o", messages=MSGS,  # type: ignore[arg-type]
            )  # fmt: skip
        assert fake.requests == []
    finally:
        al.uninstrument()
        al.shutdown(5)
        get_settings.cache_clear()


def test_the_same_call_over_the_hook_and_the_otel_bridge_is_one_event(fake: FakeProvider) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from agentledger.collectors.otel import AgentLedgerSpanProcessor

    em = al.configure(tenant="acme", agent="planner", transport=al.MemoryTransport())
    bridge = AgentLedgerSpanProcessor(em)
    tracer = TracerProvider()
    tracer.add_span_processor(bridge)
    try:
        al.instrument(enforce=False)
        oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
        # What an OpenTelemetry instrumentation of the same SDK call reports about it.
        with tracer.get_tracer("otel-instrumentation").start_as_current_span("chat gpt-4o") as span:
            answer = oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.response.model": "gpt-4o", "gen_ai.response.id": answer.id,
                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
            })  # fmt: skip
        bridge.force_flush()
        usage = [e for e in em.transport.events if e["type"] == "usage"]  # type: ignore[attr-defined]
        assert len(usage) == 2  # one per path; downstream dedupe keeps one per event id
        assert {e["event_id"] for e in usage} == {response_event_id(answer.id)}
    finally:
        bridge.shutdown()
        al.uninstrument()
        al.shutdown(1)
