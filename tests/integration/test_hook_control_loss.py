"""The hook when the control plane cannot be reached, through the real openai and anthropic
SDKs: with no broker at start, and with the broker lost after the Guard had read the control
topic. Fail-open (the default) lets calls run, counted and logged at most once a minute;
``AGENTLEDGER_GUARD_FAIL_OPEN=0`` raises ``ControlUnavailable`` before anything is sent."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider

from agentledger import collectors as al
from agentledger.admin import create_topics
from agentledger.collectors import ControlUnavailable, Guard
from agentledger.localkafka import LocalKafka, free_ports
from agentledger.settings import get_settings

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


@pytest.fixture
def no_broker() -> Iterator[str]:
    (port,) = free_ports(1)  # nothing listens here
    al.configure(tenant="acme", agent="planner", transport=al.MemoryTransport())
    yield f"127.0.0.1:{port}"
    al.uninstrument()
    al.shutdown(1)


def calls(fake: FakeProvider) -> list[str]:
    """One sync and one async openai call and one anthropic call; the answers' texts."""
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")

    async def async_call() -> str:
        async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as aoc:
            reply = await aoc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            return str(reply.choices[0].message.content)

    texts = [str(oc.chat.completions.create(model="gpt-4o", messages=MSGS).choices[0].message.content)]  # type: ignore[arg-type]
    texts.append(asyncio.run(async_call()))
    message = ac.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
    texts.append(message.content[0].text)  # type: ignore[union-attr]
    return texts


def refused(fake: FakeProvider) -> None:
    """Every shape of call raises ControlUnavailable and reaches no provider."""
    before = len(fake.requests)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    with pytest.raises(ControlUnavailable, match="fail closed"):
        oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    with pytest.raises(ControlUnavailable):
        list(oc.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))  # type: ignore[arg-type]

    async def async_call() -> None:
        async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as aoc:
            await aoc.responses.create(model="gpt-4o", input="2 + 2?")

    with pytest.raises(ControlUnavailable):
        asyncio.run(async_call())
    with pytest.raises(ControlUnavailable):
        ac.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
    with pytest.raises(ControlUnavailable):
        ac.messages.stream(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
    assert len(fake.requests) == before  # nothing was sent


def test_no_broker_at_start_fails_open_by_default_and_closed_when_set(
    fake: FakeProvider, no_broker: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "agentledger.collectors")
    open_guard = Guard(no_broker, "control", ready_timeout_s=0.3)
    try:
        al.instrument(guard=open_guard)
        assert calls(fake) + calls(fake) == ["4"] * 6  # every call ran ...
        assert open_guard.unready_checks == 6  # ... counted
        warned = [r for r in caplog.records if "failing open" in r.getMessage()]
        assert len(warned) == 1  # logged once, not per call
    finally:
        open_guard.close()
    monkeypatch.setenv("AGENTLEDGER_GUARD_FAIL_OPEN", "0")
    get_settings.cache_clear()
    try:
        closed_guard = Guard(no_broker, "control", ready_timeout_s=0.3)
    finally:
        monkeypatch.delenv("AGENTLEDGER_GUARD_FAIL_OPEN")
        get_settings.cache_clear()
    try:
        assert closed_guard.fail_open is False
        al.instrument(guard=closed_guard)
        refused(fake)
    finally:
        closed_guard.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[LocalKafka, str]]:
    """A broker this test may kill and restart (the session broker is shared)."""
    local = LocalKafka(tmp_path / "kafka")
    state = local.up(nodes=1, timeout=120)
    asyncio.run(create_topics(state.bootstrap, prefix="lost."))
    try:
        yield local, state.bootstrap
    finally:
        local.down()


def wait_until(what: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(what())


def test_a_broker_lost_later_fails_open_or_closed_and_the_guard_comes_back(
    fake: FakeProvider, own_broker: tuple[LocalKafka, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "agentledger.collectors")
    local, bootstrap = own_broker
    topic = "lost.agentledger.control.v1"
    al.configure(tenant="acme", agent="planner", transport=al.MemoryTransport())
    open_guard = Guard(bootstrap, topic, lost_after_s=2)
    closed_guard = Guard(bootstrap, topic, lost_after_s=2, fail_open=False)
    try:
        assert open_guard.wait_ready(30) and closed_guard.wait_ready(30)
        al.instrument(guard=closed_guard)
        assert calls(fake) == ["4"] * 3  # read the topic: calls are checked and run
        assert closed_guard.unready_checks == 0
        local.signal_node(1, signal.SIGKILL)
        assert wait_until(lambda: not closed_guard.ready and not open_guard.ready)
        assert (closed_guard.lost, open_guard.lost) == (1, 1)
        assert any("calls now fail closed" in r.getMessage() for r in caplog.records)
        refused(fake)
        al.instrument(guard=open_guard)
        assert calls(fake) == ["4"] * 3  # fail open: runs, counted
        assert open_guard.unready_checks == 3
        local.restart_node(1, timeout=90)
        assert wait_until(lambda: closed_guard.ready and open_guard.ready, timeout=90)
        al.instrument(guard=closed_guard)
        assert calls(fake) == ["4"] * 3  # back: checked again, nothing refused
        assert any("is back" in r.getMessage() for r in caplog.records)
    finally:
        al.uninstrument()
        al.shutdown(1)
        open_guard.close()
        closed_guard.close()


def test_a_control_topic_created_as_the_guard_starts_is_waited_for(kafka_bootstrap: str) -> None:
    """A topic created a moment ago may not be in the broker's metadata yet: not "missing"."""
    import threading

    prefix = f"late{time.monotonic_ns()}."
    guard = Guard(kafka_bootstrap, prefix + "agentledger.control.v1")
    creating = threading.Thread(target=lambda: asyncio.run(create_topics(kafka_bootstrap, prefix=prefix)))
    creating.start()
    try:
        assert guard.wait_ready(30), guard.problem
    finally:
        creating.join(60)
        guard.close()
