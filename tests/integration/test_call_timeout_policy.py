"""A policy's ``call_timeout_s`` reaches a running agent through the policies topic (no restart):
a hooked openai call to a provider answering in 2 s times out with the SDK's own error and is
recorded as an error span; deleting the policy restores the ``configure()`` default. Real
broker, real openai SDK, the local provider on 127.0.0.1, a real Guard."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import MSGS
from test_hook_timeout import events_of

from agentledger import collectors as al
from agentledger import topics as topic_specs
from agentledger.collectors.guard import Guard
from agentledger.events import Policy, SpanEvent
from agentledger.streams.policytopic import delete_policy, put_policies

pytestmark = pytest.mark.integration

TIMEOUT = Policy.model_validate(
    {
        "policy_id": "writer-openai-timeout",
        "call_timeout_s": 0.5,
        "selector": {"tenant": "acme", "agent": "writer", "provider": "openai"},
    }
)


def wait_for(guard: Guard, want: float | None) -> None:
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        if guard.call_timeout("acme", "writer", provider="openai", model="gpt-4o") == want:
            return
        time.sleep(0.05)
    raise AssertionError(f"the Guard never saw call timeout {want}")


def test_a_call_timeout_policy_applies_live_and_its_deletion_restores_the_default(topics: Any) -> None:
    guard = Guard(topics.bootstrap, topics.control, tools_topic=topics.prefix + topic_specs.TOOLS.name,
                  policies_topic=topics.policies)  # fmt: skip
    assert guard.wait_ready(30)
    al.configure(
        tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5, call_timeout_s=10
    )
    al.instrument(guard=guard)
    try:
        with FakeProvider(delay_s=2) as fake:
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)

            def ask() -> Any:
                with al.span("ask", kind="agent", agent="writer"):
                    return client.chat.completions.create(model="gpt-4o", messages=MSGS)

            assert ask().choices  # the default (10 s) lets it answer
            asyncio.run(put_policies(topics.bootstrap, topics.prefix, [TIMEOUT]))
            wait_for(guard, 0.5)
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):  # the SDK's own error, as without us
                ask()
            assert time.monotonic() - started < 1.8  # it did not wait for the 2 s answer
            with al.span("ask", kind="agent", agent="reader"):  # another agent: the default
                assert client.chat.completions.create(model="gpt-4o", messages=MSGS).choices
            asyncio.run(delete_policy(topics.bootstrap, topics.prefix, TIMEOUT.policy_id))
            wait_for(guard, None)
            assert ask().choices  # back to the default
        assert al.flush(10)
    finally:
        al.uninstrument()
        al.shutdown(5)
        guard.close()
    events = events_of(topics.bootstrap, topics.events, expect=8)
    errors = [
        e for e in events if isinstance(e, SpanEvent) and e.kind.value == "llm" and e.status.value == "error"
    ]
    assert len(errors) == 1, events
    assert errors[0].agent == "writer" and errors[0].error_type == "APITimeoutError"
    assert errors[0].attributes["agentledger.error.cause"] == "timeout"
    assert errors[0].attributes["agentledger.call_timeout_s"] == 0.5
