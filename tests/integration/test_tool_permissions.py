"""Tool permissions on a real broker with the real API: a tool policy written through the API
reaches a running Guard (no restart); ``require_approval`` asks the API and waits for a human's
answer given through the API from another thread; each decision is a contract ``tool_call``
event carrying ``gen_ai.tool.call.decision``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import agentledger.collectors as al
from agentledger import topics as specs
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.collectors import Guard, MemoryTransport, ToolDenied
from agentledger.events import ToolCallEvent
from agentledger.settings import Settings

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    guard: Guard
    transport: MemoryTransport

    def call(self, method: str, path: str, body: Any = None, role: str = "acme_admin") -> httpx.Response:
        h = {"authorization": f"Bearer {self.keys[role]}", "content-type": "application/json"}
        return httpx.request(method, self.url + path, json=body, headers=h, timeout=10)

    def decisions(self) -> list[ToolCallEvent]:
        al.flush()
        return [
            ToolCallEvent.model_validate(e) for e in self.transport.events if e.get("type") == "tool_call"
        ]


@pytest.fixture
def stack(topics: Any, tmp_path: Path) -> Iterator[Stack]:
    home = tmp_path / "api"
    home.mkdir()
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=topics.bootstrap, topic_prefix=topics.prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
    )
    server = ApiServer(app)
    url = server.start()
    transport = MemoryTransport()
    al.configure(tenant="acme", agent="writer", transport=transport)
    guard = Guard(
        topics.bootstrap,
        topics.prefix + specs.CONTROL.name,
        tools_topic=topics.prefix + specs.TOOLS.name,
        fetch_max_wait_ms=20,
    )
    guard.tools.api_url, guard.tools.api_key = url, keys["acme_ingest"]
    assert guard.wait_ready(30)
    try:
        yield Stack(url, keys, guard, transport)
    finally:
        guard.close()
        al.shutdown()
        server.stop()


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.02)


def denied(guard: Guard, tool: str, **kw: Any) -> bool:
    try:
        guard.tool(tool, {"q": 1}, **kw)
    except ToolDenied:
        return True
    return False


def policy(pid: str, rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"policy_id": pid, "selector": {"tenant": "acme"}, "rules": rules, **extra}


def test_a_policy_change_reaches_a_running_guard_and_each_decision_is_an_event(stack: Stack) -> None:
    guard = stack.guard
    assert guard.tool("shell_exec", {"cmd": "ls"}) == "allow"  # no policy yet
    body = policy(
        "no-shell",
        [
            {"tool": "shell_*", "decision": "deny"},
            {"tool": "search", "decision": "allow", "max_calls_per_trace": 2},
        ],
    )
    assert stack.call("PUT", "/v1/tool-policies/no-shell", body).status_code == 200
    eventually(lambda: denied(guard, "shell_exec"))
    with pytest.raises(ToolDenied, match="shell_exec") as info:
        guard.tool("shell_exec", {"cmd": "rm -rf /"})
    assert info.value.policy_id == "no-shell"
    # at most two searches per trace: a third in the same trace is denied, another trace may
    assert [guard.tool("search", i, trace="t1") for i in range(2)] == ["allow", "allow"]
    assert denied(guard, "search", trace="t1") and not denied(guard, "search", trace="t2")
    # another tenant's key neither sees nor changes acme's policy
    assert stack.call("GET", "/v1/tool-policies", role="globex_read").json() == []
    assert stack.call("PUT", "/v1/tool-policies/no-shell", body, role="globex_admin").status_code == 403
    assert stack.call("GET", "/v1/tool-policies/no-shell", role="globex_read").status_code == 404
    assert stack.call("DELETE", "/v1/tool-policies/no-shell", role="globex_admin").status_code == 404
    assert [r["tool"] for r in stack.call("GET", "/v1/tool-policies/no-shell").json()["rules"]] == [
        "shell_*",
        "search",
    ]
    # a tool policy names one tenant: '*' (every tenant, for budget policies) is refused
    every = policy("everyone", [{"tool": "*", "decision": "deny"}]) | {"selector": {"tenant": "*"}}
    refused = stack.call("PUT", "/v1/tool-policies/everyone", every, role="admin")
    assert refused.status_code == 422 and "one tenant" in refused.text, refused.text
    assert stack.call("DELETE", "/v1/tool-policies/no-shell").status_code == 204
    eventually(lambda: not denied(guard, "shell_exec"))

    events = stack.decisions()
    decisions = [(e.tool, e.attributes["gen_ai.tool.call.decision"], e.status.value) for e in events]
    assert ("shell_exec", "deny", "error") in decisions and ("search", "allow", "ok") in decisions
    assert all(
        e.tenant == "acme" and e.attributes["agentledger.tool.policy_id"] == "no-shell" for e in events
    )
    assert "rm -rf" not in str(stack.transport.events)  # args are hashed, never sent


def answer_pending(stack: Stack, verb: str, seen: list[dict[str, Any]]) -> threading.Thread:
    """A human, from another thread: waits for a pending approval and answers it via the API."""

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = stack.call("GET", "/v1/approvals?state=pending", role="acme_read").json()
            if pending:
                seen.extend(pending)
                r = stack.call("POST", f"/v1/approvals/{pending[0]['approval_id']}/{verb}")
                assert r.status_code == 200, r.text
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_require_approval_waits_for_the_api_then_runs_or_is_denied(stack: Stack) -> None:
    body = policy("mail", [{"tool": "send_email", "decision": "require_approval"}], approval_timeout_s=30)
    assert stack.call("PUT", "/v1/tool-policies/mail", body).status_code == 200
    eventually(lambda: bool(stack.guard.tools.policies))

    seen: list[dict[str, Any]] = []
    human = answer_pending(stack, "approve", seen)
    assert stack.guard.tool("send_email", {"to": "x@example.com"}) == "allow"
    human.join()
    assert seen and seen[0]["request"]["tool"] == "send_email" and "example.com" not in str(seen)
    approved_id = seen[0]["approval_id"]
    got = stack.call("GET", "/v1/approvals", role="acme_read").json()
    assert [(a["approval_id"], a["state"]) for a in got] == [(approved_id, "approved")]
    # answering again the other way is a conflict; the same answer again is a retry
    assert stack.call("POST", f"/v1/approvals/{approved_id}/deny").status_code == 409
    assert stack.call("POST", f"/v1/approvals/{approved_id}/approve").status_code == 200

    seen.clear()
    human = answer_pending(stack, "deny", seen)
    with pytest.raises(ToolDenied, match="denied by"):
        stack.guard.tool("send_email", {"to": "y@example.com"})
    human.join()

    # nobody answers: the policy's default (deny) applies after the timeout
    with pytest.raises(ToolDenied, match="unanswered"):
        stack.guard.tool("send_email", {"to": "z@example.com"}, approval_timeout_s=0.5)

    events = stack.decisions()
    outcomes = [
        (e.attributes["gen_ai.tool.call.decision"], e.attributes.get("agentledger.tool.approval_id"))
        for e in events
    ]
    assert outcomes[0] == ("allow", approved_id)
    assert [d for d, _ in outcomes] == ["allow", "deny", "deny"] and all(a for _, a in outcomes)
