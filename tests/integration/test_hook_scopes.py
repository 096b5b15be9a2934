"""Kills on an end user and on a conversation, published on the real control topic, obeyed by
hooked openai and anthropic calls: only that user's (or conversation's) calls stop, whether
the user is named by ``al.span`` or by the request's own field; the others are sent and
recorded with their user and conversation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import MSGS, command, produce, usage_events, wait_for

from agentledger import collectors as al
from agentledger.collectors import AgentKilled, Guard
from agentledger.events import Action, ScopeKind


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
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


def test_a_kill_on_one_user_stops_only_that_users_calls(
    topics: Any, fake: FakeProvider, configured: Any, guard: Guard
) -> None:
    user_kill = command(Action.KILL, kind=ScopeKind.USER, tenant="acme", user="mallory")
    conv_kill = command(Action.KILL, kind=ScopeKind.CONVERSATION, tenant="acme", conversation="conv_bad")
    produce(topics.bootstrap, topics.control, user_kill, conv_kill)
    wait_for(guard, 2)
    al.instrument(guard=guard)
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    with al.span("support", kind="agent", agent="support", user="mallory"):
        with pytest.raises(AgentKilled) as info:
            oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert info.value.command_id == user_kill.command_id
    with al.span("support", kind="agent", agent="support"):
        with pytest.raises(AgentKilled):  # the request's own field names the user
            oc.chat.completions.create(model="gpt-4o", messages=MSGS, user="mallory")  # type: ignore[arg-type]
        with pytest.raises(AgentKilled):
            ac.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS,  # type: ignore[arg-type]
                               metadata={"user_id": "mallory"})  # fmt: skip
        with pytest.raises(AgentKilled) as info:
            oc.responses.create(model="gpt-4o", input="2 + 2?", conversation="conv_bad")
        assert info.value.command_id == conv_kill.command_id
        assert len(fake.requests) == 0  # nothing of theirs was sent
        oc.chat.completions.create(model="gpt-4o", messages=MSGS, user="alice")  # type: ignore[arg-type]
        ac.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS,  # type: ignore[arg-type]
                           metadata={"user_id": "alice"})  # fmt: skip
        oc.responses.create(model="gpt-4o", input="2 + 2?", conversation="conv_ok")
    with al.span("support", kind="agent", agent="support", user="bob", conversation="conv_ok"):
        oc.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert len(fake.requests) == 4
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=4)
    seen = sorted(
        (e.attributes.get("user.id", ""), e.attributes.get("gen_ai.conversation.id", "")) for e in events
    )
    assert seen == [("", "conv_ok"), ("alice", ""), ("alice", ""), ("bob", "conv_ok")]
