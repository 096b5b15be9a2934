"""Command lanes on a real broker, with the real writers: the budget worker (`agentledger
worker`), the health worker (`agentledger health`) and the API, all publishing about the same
agents, and a real Guard following the control topic.

- A budget kill stays in force while the health worker rolls the same agent back (canary) and
  throttles then resumes it (drift); when the budget lifts its kill, the rollback still routes.
- A human's kill from the API is never lifted by a worker (the budget lifting its own kill, the
  drift recovering); the human's resume lifts every authority's hold.
- Records from before lanes (bare scope key, ``downgrade:<scope>``) are obeyed until their
  authority writes its new key, which supersedes them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from _streams_harness import Worker, produce, start_worker

from agentledger import topics as specs
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.collectors import AgentKilled, BudgetKilled, Guard, ManualKill, Throttled
from agentledger.events import (
    BUDGET_ISSUER,
    Action,
    CommandParams,
    ControlCommand,
    Policy,
    PricedEvent,
    QualityEvent,
    Scope,
    ScopeKind,
    UsageEvent,
)
from agentledger.settings import Settings
from agentledger.wire import dump, encode_envelope

HEALTH = {
    "providers": {"fallbacks": {}},
    "canary": {"task_idle_s": 1, "min_tasks": 30, "promote_min_tasks": 150, "eval_interval_s": 1},
    "quality": {"defaults": {"action": "throttle", "throttle_rate_per_s": 0.5}},
}


@dataclass
class Topics:
    bootstrap: str
    prefix: str

    def __getattr__(self, name: str) -> str:
        return self.prefix + getattr(specs, name.upper()).name


@dataclass
class Stack:
    topics: Topics
    budget: Worker
    health: subprocess.Popen[bytes]
    api_url: str
    keys: dict[str, str]
    guard: Guard

    def call(self, method: str, path: str, body: Any = None, role: str = "acme_admin") -> httpx.Response:
        h = {"authorization": f"Bearer {self.keys[role]}", "content-type": "application/json"}
        content = orjson.dumps(body) if body is not None else None
        return httpx.request(method, self.api_url + path, content=content, headers=h, timeout=30)


def _topics(bootstrap: str) -> Topics:
    from agentledger.admin import create_topics

    prefix = f"l{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(bootstrap, prefix=prefix))
    return Topics(bootstrap, prefix)


def _guard(t: Topics) -> Guard:
    guard = Guard(t.bootstrap, t.control, fetch_max_wait_ms=20)
    assert guard.wait_ready(30)
    return guard


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    t = _topics(kafka_bootstrap)
    tmp = tmp_path_factory.mktemp("lanes")
    budget = start_worker(t, tmp / "budget")
    config = tmp / "health.yaml"
    config.write_text(yaml.safe_dump(HEALTH))
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=t.bootstrap, AGENTLEDGER_TOPIC_PREFIX=t.prefix,
               AGENTLEDGER_HOME=str(tmp / "health-home"))  # fmt: skip
    log = (tmp / "health.log").open("wb")
    health = subprocess.Popen(
        [sys.executable, "-m", "agentledger", "health", "--config", str(config), "--datadir",
         str(tmp / "health-faust"), "--from", "earliest"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    home = tmp / "api"
    home.mkdir()
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=t.bootstrap, topic_prefix=t.prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
    )
    server = ApiServer(app)
    url = server.start()
    guard = _guard(t)
    try:
        yield Stack(t, budget, health, url, keys, guard)
    finally:
        guard.close()
        server.stop()
        health.terminate()
        try:
            health.wait(20)
        except subprocess.TimeoutExpired:
            health.kill()
        budget.kill()
        log.close()


def until(what: Callable[[], Any], timeout: float = 90.0, why: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not seen within {timeout}s: {why}")


def verdict(guard: Guard, agent: str) -> str:
    """What the Guard says about one call of ``acme/<agent>``: its exception class, or ok."""
    try:
        guard.check(tenant="acme", agent=agent, wait=False)
    except (AgentKilled, Throttled) as exc:
        return type(exc).__name__
    return "ok"


def held(guard: Guard, key: str) -> ControlCommand | None:
    return guard.commands.get(key)


# -- what the writers are fed ----------------------------------------------------------------


def usage(agent: str, n: int) -> bytes:
    """``n`` calls of gpt-4o, 10k in + 1k out: $0.035 each."""
    now = datetime.now(UTC)
    events = [UsageEvent(event_id=f"u-{uuid.uuid4().hex[:20]}", ts=now, tenant="acme", agent=agent,
                         trace_id=uuid.uuid4().hex, span_id=f"{i + 1:016x}", provider="openai", model="gpt-4o",
                         input_tokens=10_000, output_tokens=1_000) for i in range(n)]  # fmt: skip
    return encode_envelope(f"acme/{agent}", events)


def quality(agent: str, scores: list[float]) -> list[tuple[bytes | None, bytes | None]]:
    """Quality scores of ``acme/<agent>``@v1, in order, in envelopes of 100."""
    now = datetime.now(UTC)
    events = [QualityEvent(event_id=f"q-{uuid.uuid4().hex[:20]}", span_id=f"{i + 1:016x}", ts=now, tenant="acme",
                           agent=agent, agent_version="v1", trace_id=uuid.uuid4().hex, metric="helpfulness",
                           score=s) for i, s in enumerate(scores)]  # fmt: skip
    key = f"acme/{agent}"
    return [(key.encode(), encode_envelope(key, events[i : i + 100])) for i in range(0, len(events), 100)]


def canary(agent: str) -> list[tuple[bytes | None, bytes | None]]:
    """200 finished tasks per version; v2 costs twice what v1 does: the canary is rolled back."""
    import random

    rng = random.Random(agent)
    now = datetime.now(UTC)
    out: list[tuple[bytes | None, bytes | None]] = []
    for version, cost, ts in (("v1", 0.01, now - timedelta(seconds=60)), ("v2", 0.02, now)):
        batch = []
        for _ in range(200):
            u = UsageEvent(event_id=f"c-{uuid.uuid4().hex[:20]}", ts=ts, tenant="acme", agent=agent,
                           agent_version=version, trace_id=uuid.uuid4().hex, span_id="1" * 16, provider="openai",
                           model="gpt-4o", input_tokens=1000, output_tokens=100)  # fmt: skip
            c = Decimal(str(round(max(0.0, rng.gauss(cost, cost * 0.2)), 8)))
            batch.append(PricedEvent(event=u, cost_usd=c, priced=True, price_source="test"))
        key = f"acme/{agent}"
        out.append((key.encode(), encode_envelope(key, batch)))
    return out


def put_policy(s: Stack, policy_id: str, agent: str) -> None:
    body = {"policy_id": policy_id, "selector": {"tenant": "acme", "agent": agent, "per": "agent"},
            "window": "calendar_day", "limit": "0.05", "hard_action": "kill"}  # fmt: skip
    r = s.call("PUT", f"/v1/policies/{policy_id}", body)
    assert r.status_code in (200, 201, 202), r.text


def key(lane: str, authority: str, agent: str) -> str:
    return f"{lane}.{authority}:agent/acme/{agent}"


# -- 1. a budget kill outlives the health worker's rollback and drift resume -----------------


def test_a_budget_kill_holds_through_a_canary_rollback_and_a_drift_recovery(stack: Stack) -> None:
    s, g = stack, stack.guard
    put_policy(s, "writer-cap", "writer")
    time.sleep(1.0)  # the worker reads the policy before the spend
    produce(s.topics.bootstrap, s.topics.events, [(b"acme/writer", usage("writer", 2))])  # $0.07 > $0.05
    until(lambda: verdict(g, "writer") == "BudgetKilled", why="the budget kill")

    produce(s.topics.bootstrap, s.topics.priced, canary("writer"))
    until(lambda: g.version("writer", "acme") == "v1", why="the canary rollback")
    assert held(g, key("routing", "health", "writer")) is not None
    with pytest.raises(BudgetKilled):  # before lanes the rollback replaced the kill here
        g.check(tenant="acme", agent="writer")

    produce(s.topics.bootstrap, s.topics.events, quality("writer", [0.8] * 300 + [0.4] * 300 + [0.8] * 300))

    def drift_over() -> bool:
        cmd = held(g, key("admission", "health", "writer"))
        return cmd is not None and cmd.action is Action.RESUME

    until(drift_over, why="the drift throttle, then its resume")
    with pytest.raises(BudgetKilled):  # before lanes the drift's resume lifted the budget's kill
        g.check(tenant="acme", agent="writer")
    assert g.version("writer", "acme") == "v1"

    assert s.call("DELETE", "/v1/policies/writer-cap").status_code == 204  # the budget lifts its kill
    until(lambda: verdict(g, "writer") == "ok", why="the budget's resume")
    lifted = held(g, key("admission", "budget", "writer"))
    assert lifted is not None and lifted.action is Action.RESUME and lifted.issued_by == BUDGET_ISSUER
    assert g.version("writer", "acme") == "v1"  # the rollback still routes

    listing = s.call("GET", "/v1/control", role="acme_read").json()
    mine = {(c["lane"], c["authority"], c["action"]) for c in listing if c["scope"].get("agent") == "writer"}
    assert mine == {("admission", "budget", "resume"), ("routing", "health", "rollback"),
                    ("admission", "health", "resume")}  # fmt: skip
    assert {c["control_key"] for c in listing if c["scope"].get("agent") == "writer"} == {
        key("admission", "budget", "writer"), key("routing", "health", "writer"), key("admission", "health", "writer")
    }  # fmt: skip

    # a human ends the rollback: a resume that names the routing lane, on the health worker's key too
    scope = {"kind": "agent", "tenant": "acme", "agent": "writer"}
    r = s.call(
        "POST", "/v1/control", {"scope": scope, "action": "resume", "lane": "routing", "reason": "v2 fixed"}
    )
    assert r.status_code == 202, r.text
    until(lambda: g.version("writer", "acme") is None, why="the human's routing resume")
    assert verdict(g, "writer") == "ok"


# -- 2. a human's kill is lifted by a human only ----------------------------------------------


def test_a_manual_kill_is_never_lifted_by_a_worker(stack: Stack) -> None:
    s, g = stack, stack.guard
    scope = {"kind": "agent", "tenant": "acme", "agent": "editor"}
    r = s.call(
        "POST",
        "/v1/control",
        {"scope": scope, "action": "kill", "reason": "on-call: stop it", "params": {"kill_reason": "manual"}},
    )
    assert r.status_code == 202, r.text
    until(lambda: verdict(g, "editor") == "ManualKill", why="the manual kill")

    put_policy(s, "editor-cap", "editor")
    time.sleep(1.0)
    produce(s.topics.bootstrap, s.topics.events, [(b"acme/editor", usage("editor", 2))])
    until(lambda: held(g, key("admission", "budget", "editor")) is not None, why="the budget's own kill")
    assert s.call("DELETE", "/v1/policies/editor-cap").status_code == 204  # the budget lifts its own

    def budget_lifted() -> bool:
        cmd = held(g, key("admission", "budget", "editor"))
        return cmd is not None and cmd.action is Action.RESUME

    until(budget_lifted, why="the budget's resume")
    assert verdict(g, "editor") == "ManualKill"

    produce(s.topics.bootstrap, s.topics.events, quality("editor", [0.8] * 300 + [0.4] * 300 + [0.8] * 300))

    def drift_over() -> bool:
        cmd = held(g, key("admission", "health", "editor"))
        return cmd is not None and cmd.action is Action.RESUME

    until(drift_over, why="the drift throttle, then its resume")
    assert verdict(g, "editor") == "ManualKill"
    with pytest.raises(ManualKill, match="on-call"):
        g.check(tenant="acme", agent="editor")

    r = s.call("POST", "/v1/control", {"scope": scope, "action": "resume", "reason": "fixed"})
    assert r.status_code == 202, r.text
    until(lambda: verdict(g, "editor") == "ok", why="the human's resume")


def test_a_human_resume_lifts_every_authority_that_holds_the_lane(stack: Stack) -> None:
    s, g = stack, stack.guard
    put_policy(s, "critic-cap", "critic")
    time.sleep(1.0)
    produce(s.topics.bootstrap, s.topics.events, [(b"acme/critic", usage("critic", 2))])
    until(lambda: verdict(g, "critic") == "BudgetKilled", why="the budget kill")
    scope = {"kind": "agent", "tenant": "acme", "agent": "critic"}
    r = s.call("POST", "/v1/control", {"scope": scope, "action": "resume", "reason": "let it finish"})
    assert r.status_code == 202, r.text
    until(lambda: verdict(g, "critic") == "ok", why="the human's resume on the budget's key")
    on_budget_key = held(g, key("admission", "budget", "critic"))
    assert on_budget_key is not None and on_budget_key.issued_by.startswith("key:")
    assert on_budget_key.command_id == r.json()["command_id"]
    s.call("DELETE", "/v1/policies/critic-cap")
    wrong = s.call(
        "POST", "/v1/control", {"scope": scope, "action": "kill", "lane": "routing", "reason": "x"}
    )
    assert wrong.status_code == 422 and "admission lane" in wrong.text


# -- 3. records from before lanes ------------------------------------------------------------


def test_old_records_are_obeyed_until_their_authority_writes_its_new_key(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    t = _topics(kafka_bootstrap)
    now = datetime.now(UTC) - timedelta(seconds=5)
    scope = Scope(kind=ScopeKind.AGENT, tenant="acme", agent="old")
    kill = ControlCommand(command_id="old-kill-0001", ts=now, scope=scope, action=Action.KILL,
                          reason="budget old-cap: over", policy_id="old-cap",
                          params=CommandParams(kill_reason="budget"), issued_by=BUDGET_ISSUER)  # fmt: skip
    down = ControlCommand(command_id="old-down-0001", ts=now, scope=scope, action=Action.DOWNGRADE,
                          reason="operator", params=CommandParams(model="gpt-4o-mini"), issued_by="api")  # fmt: skip
    policy = Policy.model_validate({"policy_id": "old-cap", "selector": {"tenant": "acme", "agent": "old",
                                    "per": "agent"}, "window": "calendar_day", "limit": "100"})  # fmt: skip
    produce(
        t.bootstrap, t.control, [(b"agent/acme/old", dump(kill)), (b"downgrade:agent/acme/old", dump(down))]
    )
    produce(t.bootstrap, t.policies, [(b"old-cap", dump(policy))])
    guard = _guard(t)
    try:
        with pytest.raises(BudgetKilled):  # the old kill is obeyed as the budget's admission record
            guard.check(tenant="acme", agent="old")
        assert guard.downgrade("gpt-4o", "acme", "old") == "gpt-4o-mini"
        assert set(guard.commands) == {key("admission", "budget", "old"), key("downgrade", "manual", "old")}
        # the upgraded budget worker adopts its old kill, finds the scope under its limit, and
        # lifts it on its new key: that record supersedes the old one in every reader
        worker = start_worker(t, tmp_path / "budget")
        try:
            until(lambda: verdict(guard, "old") == "ok", why="the budget's resume on its new key")
        finally:
            worker.kill()
        lifted = guard.commands[key("admission", "budget", "old")]
        assert lifted.action is Action.RESUME and lifted.ts > kill.ts
        assert guard.downgrade("gpt-4o", "acme", "old") == "gpt-4o-mini"  # a human's: nobody else lifts it
    finally:
        guard.close()
    # a Guard started afresh reads the same state from the topic
    again = _guard(t)
    try:
        assert verdict(again, "old") == "ok" and again.downgrade("gpt-4o", "acme", "old") == "gpt-4o-mini"
    finally:
        again.close()
