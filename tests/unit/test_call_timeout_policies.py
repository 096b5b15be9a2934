"""Which per-call timeout a policy sets for a call (``collectors.timeouts``, the Guard's copy of
the policies topic)."""

from __future__ import annotations

from typing import Any

from agentledger.collectors.timeouts import CallTimeouts
from agentledger.events import Policy


def raw(pid: str, **fields: Any) -> bytes:
    return Policy.model_validate({"policy_id": pid, **fields}).model_dump_json().encode()


def test_the_shortest_matching_policy_wins_and_a_tombstone_removes_it() -> None:
    t = CallTimeouts()
    assert t.for_call("acme", "writer") is None
    assert t.apply("tenant", raw("tenant", call_timeout_s=20, selector={"tenant": "acme"}))
    assert t.apply("gpt", raw("gpt", call_timeout_s=5, selector={"tenant": "acme", "model": "gpt-4o*"}))
    assert t.apply("other", raw("other", call_timeout_s=1, selector={"tenant": "globex"}))
    assert t.for_call("acme", "writer", provider="openai", model="gpt-4o-mini") == 5
    assert t.for_call("acme", "writer", provider="anthropic", model="claude-3") == 20
    assert t.for_call("acme", "writer") == 20  # a model pattern never matches an unknown model
    assert t.apply("gpt", None)
    assert t.for_call("acme", "writer", provider="openai", model="gpt-4o-mini") == 20


def test_budgets_disabled_policies_and_bad_records_set_no_timeout() -> None:
    t = CallTimeouts()
    assert t.apply("b", raw("b", window="24h", limit="5"))
    assert t.apply("d", raw("d", call_timeout_s=2, enabled=False))
    assert not t.apply("junk", b"{not json")
    assert len(t) == 0 and t.for_call("acme", "writer") is None
    assert t.apply("v", raw("v", call_timeout_s=3, selector={"agent": "writer", "agent_version": "v2"}))
    assert t.for_call("acme", "writer", agent_version="v2") == 3
    assert t.for_call("acme", "writer", agent_version="v1") is None
    assert t.apply("v", raw("v", call_timeout_s=3, enabled=False))  # disabled: removed
    assert t.for_call("acme", "writer", agent_version="v2") is None
