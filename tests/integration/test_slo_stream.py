"""Latency objectives on the real broker: the health worker (a real `agentledger health`
process) counts a synthetic LLM stream, and its burn-rate alert reaches a real webhook receiver
on 127.0.0.1 through the alert dispatcher.

The stream is stamped in event time over the last four hours and sent in one go: the engine
judges event time, so the workbook's 1 h / 5 min page rule is exercised as it would be live.
The `planner` agent's calls step from 200 ms to 3 s for 40 minutes, then recover; the `steady`
agent's stay around 200 ms (1 % over the threshold, exactly the error budget's pace).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from _health_harness import Tail, health_env, start_health, stop_health
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from slo_spans import llm_span

from agentledger import topics as specs
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.events import Action, AlertEvent, AlertState, ControlCommand, SpanEvent
from agentledger.settings import Settings
from agentledger.streams.alerts.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from agentledger.streams.alerts.dispatch import AlertDispatcher
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import encode_envelope

HMAC_SECRET = "whsec_slo_test_secret"
TARGET, THRESHOLD_MS = 0.99, 1000.0
EVERY_S = 2.0
BASE_S, SLOW_S, AFTER_S = 2 * 3600.0, 40 * 60.0, 80 * 60.0


class Webhook:
    """A webhook receiver that checks the HMAC signature like a real one."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.bad = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify(
                    HMAC_SECRET,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    self.headers.get(SIGNATURE_HEADER, ""),
                    body,
                    time.time(),
                )
                with outer.lock:
                    if ok:
                        outer.bodies.append(json.loads(body))
                    else:
                        outer.bad += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _spans(start: float) -> Iterator[tuple[str, SpanEvent]]:
    rng = random.Random(3)
    t, end = start, start + BASE_S + SLOW_S + AFTER_S
    while t < end:
        for agent in ("planner", "steady"):
            if agent == "planner":
                slow = start + BASE_S <= t < start + BASE_S + SLOW_S
                latency = 3000.0 if slow else 200.0
            else:
                latency = 1500.0 if rng.random() < 0.01 else 1000.0 * rng.lognormvariate(-1.6, 0.35)
            yield agent, llm_span(t, latency, agent=agent)
        t += EVERY_S


async def _publish(bootstrap: str, topic: str, start: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        batches: dict[str, list[SpanEvent]] = {"planner": [], "steady": []}

        async def flush(agent: str) -> None:
            key = f"acme/{agent}"
            await producer.send(topic, encode_envelope(key, batches[agent]), key=key.encode())
            batches[agent] = []

        for agent, ev in _spans(start):
            batches[agent].append(ev)
            if len(batches[agent]) >= 500:
                await flush(agent)
        for agent in list(batches):
            if batches[agent]:
                await flush(agent)
        await producer.flush()
    finally:
        await producer.stop()


async def _alerts(bootstrap: str, topic: str, want: int, timeout: float) -> list[AlertEvent]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[AlertEvent] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(specs.ALERTS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < want:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(AlertEvent.model_validate_json(r.value) for r in records if r.value)
        await asyncio.sleep(3)  # anything extra (a flood) would arrive now
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            out.extend(AlertEvent.model_validate_json(r.value) for r in records if r.value)
    finally:
        await consumer.stop()
    return out


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _alerts_doc(hook: Webhook) -> dict[str, Any]:
    return {
        "max_age_minutes": 24 * 60,  # the stream is stamped hours back; notify anyway
        "retry": {"base_s": 0.2, "max_s": 1.0, "timeout_s": 2.0},
        "channels": [
            {
                "name": "hook",
                "type": "webhook",
                "url": f"http://127.0.0.1:{hook.port}/hook",
                "secret": HMAC_SECRET,
            }
        ],
        "routes": [{"rule": "slo.*", "channels": ["hook"]}],
    }


OBJECTIVE = {
    "objective_id": "llm-latency",
    "kind": "latency",
    "target": TARGET,
    "threshold_ms": THRESHOLD_MS,
    "selector": {"tenant": "acme", "per": "agent"},
    "alerts": [{"name": "page", "burn_rate": 14.4, "long_window_s": 3600, "short_window_s": 300}],
}


def _check_page_and_resolve(alerts: list[AlertEvent], hook: Webhook, start: float, log: Path) -> None:
    slo = [a for a in alerts if a.rule == "slo.burn_rate"]
    assert [a.entity for a in slo] == ["llm-latency:acme/planner:page"] * 2, log.read_text()[-3000:]
    assert [a.state for a in slo] == [AlertState.ALERT, AlertState.RESOLVED]
    # The workbook's detection time: every call bad after the step, so the 1 h window reaches
    # 14.4 x the 1 % budget after 1 h x 14.4 x 1 % = 8.6 min (the 5 min window is full before).
    step, recovery = start + BASE_S, start + BASE_S + SLOW_S
    predicted = step + 3600 * 14.4 * (1 - TARGET)
    slack = 60 + 10 + EVERY_S  # one bucket, one evaluation interval, one call
    assert abs(slo[0].ts.timestamp() - predicted) <= slack, slo[0].ts.timestamp() - step
    # Resolved once the 5 min window dropped under the line and stayed there 5 minutes.
    under = recovery + 300 * (1 - 14.4 * (1 - TARGET))
    assert abs(slo[1].ts.timestamp() - (under + 300)) <= slack, slo[1].ts.timestamp() - recovery
    # The webhook got one trigger and one resolve, signed.
    assert hook.bad == 0
    assert [(b["resolved"], b["alert"]["entity"]) for b in hook.bodies] == [
        (False, "llm-latency:acme/planner:page"),
        (True, "llm-latency:acme/planner:page"),
    ]
    assert hook.bodies[0]["alert"]["figures"]["burn_rate_short"] >= 14.4


async def test_latency_step_pages_through_the_webhook_once_and_resolves_stable_agent_silent(
    topics: Any, tmp_path: Path
) -> None:
    hook = Webhook()
    alerts_doc, objective = _alerts_doc(hook), OBJECTIVE
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump({"policies": [], "objectives": [objective], "alerts": alerts_doc}))
    env = health_env(topics.bootstrap, topics.prefix, tmp_path / "home")
    start = time.time() - (BASE_S + SLOW_S + AFTER_S) - 60
    await _publish(topics.bootstrap, topics.prefix + specs.EVENTS.name, start)
    log = tmp_path / "health.log"
    proc = start_health(env, config, log, "--datadir", str(tmp_path / "faust"))
    disp = AlertDispatcher(
        parse_health_config({"alerts": alerts_doc}).alerts,
        topics.bootstrap,
        topics.prefix + specs.ALERTS.name,
        tmp_path / "dispatch.db",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(disp.run(stop))
    try:
        alerts = await _alerts(topics.bootstrap, topics.prefix + specs.ALERTS.name, 2, timeout=120)
        await _until(lambda: len(hook.bodies) >= 2, 30)
        await asyncio.sleep(2)  # a third delivery would arrive now
    finally:
        stop.set()
        await task
        stop_health(proc)
        hook.server.shutdown()
    _check_page_and_resolve(alerts, hook, start, log)


async def test_an_objective_put_through_the_api_while_health_runs_is_judged_and_deleted(
    topics: Any, tmp_path: Path
) -> None:
    """The same latency step, but the health worker starts with no objective at all: the
    objective is PUT through the API (tenant admin key) while it runs, and it pages and
    resolves as if it had been in the policy file; a DELETE stops judging it."""
    hook = Webhook()
    alerts_doc = _alerts_doc(hook)
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump({"policies": [], "alerts": alerts_doc}))  # no objectives
    home = tmp_path / "home"
    env = health_env(topics.bootstrap, topics.prefix, home)
    log = tmp_path / "health.log"
    proc = start_health(
        env, config, log, "--datadir", str(tmp_path / "faust"), "--loglevel", "info", "--progress", "0"
    )
    keys = standard_keys(tmp_path / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=topics.bootstrap, topic_prefix=topics.prefix, home=home),
        ApiSettings(keys_path=tmp_path / "keys.sqlite"),
    )
    disp = AlertDispatcher(
        parse_health_config({"alerts": alerts_doc}).alerts,
        topics.bootstrap,
        topics.prefix + specs.ALERTS.name,
        tmp_path / "dispatch.db",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(disp.run(stop))
    try:
        with ApiServer(app) as url:
            admin = {"authorization": f"Bearer {keys['acme_admin']}"}
            async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as api:
                await _until(lambda: "health ready:" in log.read_text(), 120)
                assert "0 objectives" in log.read_text()
                put = await api.put("/v1/objectives/llm-latency", json=OBJECTIVE)
                assert put.status_code == 200, put.text
                await _until(lambda: "objective llm-latency judged" in log.read_text(), 30)
                start = time.time() - (BASE_S + SLOW_S + AFTER_S) - 60
                await _publish(topics.bootstrap, topics.prefix + specs.EVENTS.name, start)
                alerts = await _alerts(topics.bootstrap, topics.prefix + specs.ALERTS.name, 2, timeout=120)
                await _until(lambda: len(hook.bodies) >= 2, 30)
                await asyncio.sleep(2)  # a third delivery would arrive now
                listed = (await api.get("/v1/objectives")).json()
                assert [o["objective_id"] for o in listed] == ["llm-latency"]
                assert (await api.delete("/v1/objectives/llm-latency")).status_code == 204
                await _until(lambda: "objective llm-latency not judged" in log.read_text(), 30)
                assert (await api.get("/v1/objectives/llm-latency")).status_code == 404
    finally:
        stop.set()
        await task
        stop_health(proc)
        hook.server.shutdown()
    _check_page_and_resolve(alerts, hook, start, log)


async def test_slow_but_successful_provider_fails_over_and_comes_back(topics: Any, tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    providers = {
        "fallbacks": {"openai": "anthropic"}, "window_s": 10, "min_volume": 10, "half_open_after_s": 3,
        "probe_volume": 3, "latency_objective": {"threshold_ms": 1000, "target": 0.9},
    }  # fmt: skip
    config.write_text(yaml.safe_dump({"providers": providers}))
    env = health_env(topics.bootstrap, topics.prefix, tmp_path / "home")
    proc = start_health(env, config, tmp_path / "health.log", "--datadir", str(tmp_path / "faust"))
    producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    slow_ids: set[str] = set()

    async def calls(latency_ms: float) -> None:
        now = time.time()
        batch: list[SpanEvent] = []
        for _ in range(5):
            batch.append(llm_span(now, latency_ms, agent_version=None))
        if latency_ms > 1000:
            slow_ids.update(e.event_id for e in batch)
        await producer.send_and_wait(
            topics.prefix + specs.EVENTS.name, encode_envelope("acme/planner", batch), key=b"acme/planner"
        )

    async def until_command(control: Tail, action: Action, latency_ms: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(ControlCommand.model_validate_json(v).action is action for v in await control.poll()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {action.value} in time; log: {(tmp_path / 'health.log').read_text()[-2000:]}"
                )
            await calls(latency_ms)
            await asyncio.sleep(0.3)

    try:
        async with Tail(
            topics.bootstrap, topics.prefix + specs.CONTROL.name, specs.CONTROL.partitions
        ) as control:
            await until_command(control, Action.FAILOVER, 3000.0, 120)  # includes the worker's start
            await until_command(control, Action.RESUME, 200.0, 30)
            async with Tail(
                topics.bootstrap, topics.prefix + specs.ALERTS.name, specs.ALERTS.partitions
            ) as alerts:
                deadline = time.monotonic() + 30
                while not any(
                    AlertEvent.model_validate_json(v).state is AlertState.RESOLVED
                    for v in await alerts.poll()
                ):
                    assert time.monotonic() < deadline, "circuit never closed"
                    await calls(200.0)
            cmds = [ControlCommand.model_validate_json(v) for v in control.values]
    finally:
        await producer.stop()
        stop_health(proc)
    assert [c.action for c in cmds][:2] == [Action.FAILOVER, Action.RESUME]
    failover = cmds[0]
    assert failover.scope.key == "provider/openai/*" and failover.params.fallback_provider == "anthropic"
    assert "latency objective broken" in failover.reason and "within 1000 ms" in failover.reason
    assert failover.cause_event_id in slow_ids  # the latest too-slow call names the cause
    circuit = [AlertEvent.model_validate_json(v) for v in alerts.values]
    opened = [a for a in circuit if a.rule == "provider.circuit" and a.state is AlertState.ALERT]
    assert opened and opened[0].figures["errors"] == 0 and opened[0].command_id == failover.command_id


# --- a provider objective judged by two health processes ----------------------------------

AGENTS4 = ("a0", "a1", "a3", "a4")  # one per partition of the events topic (checked below)
PROVIDER_OBJECTIVE = {
    "objective_id": "openai-latency",
    "kind": "latency",
    "target": TARGET,
    "threshold_ms": THRESHOLD_MS,
    "selector": {"provider": "openai", "per": "provider"},
    "alerts": [{"name": "page", "burn_rate": 14.4, "long_window_s": 3600, "short_window_s": 300}],
}


async def _events_partitions_per_member(bootstrap: str, group: str, topic: str) -> list[list[int]] | None:
    """The events partitions each member of the health group holds, once the group is Stable."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([group])
        _, _, state, _, _, members, *_ = resp.groups[0]
        if state != "Stable":
            return None
        held = []
        for member in members:
            assignment = ConsumerProtocolMemberAssignment.decode(member[-1])
            held.append(sorted(p for t, parts in assignment.assignment if t == topic for p in parts))
        return held
    except KafkaError:
        return None
    finally:
        await admin.close()


async def _publish_spread(bootstrap: str, topic: str, start: float) -> None:
    """Every agent's calls slow for SLOW_S after BASE_S, in time order, 25 calls a record per
    agent, the four agents' records interleaved (the partitions move on together)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        t, end = start, start + BASE_S + SLOW_S + AFTER_S
        batches: dict[str, list[SpanEvent]] = {a: [] for a in AGENTS4}
        while t < end:
            slow = start + BASE_S <= t < start + BASE_S + SLOW_S
            latency = 3000.0 if slow else 200.0
            for agent in AGENTS4:
                batches[agent].append(llm_span(t, latency, agent=agent))
            t += EVERY_S * 2
            if len(batches[AGENTS4[0]]) >= 25 or t >= end:
                for agent in AGENTS4:
                    key = f"acme/{agent}"
                    await producer.send(topic, encode_envelope(key, batches[agent]), key=key.encode())
                    batches[agent] = []
        await producer.flush()
    finally:
        await producer.stop()


async def test_two_health_processes_page_once_for_a_provider_whose_calls_span_both(
    topics: Any, tmp_path: Path
) -> None:
    """A provider objective whose calls come from agents on all four events partitions, two
    `agentledger health` processes each holding some of them: stage one counts, stage two adds,
    so the page fires once and resolves once (judged per process, each would page on its own)."""
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(specs.EVENTS.partitions))
    assert sorted(DefaultPartitioner()(f"acme/{a}".encode(), every, every) for a in AGENTS4) == every
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump({"policies": [], "objectives": [PROVIDER_OBJECTIVE]}))
    env = health_env(topics.bootstrap, topics.prefix, tmp_path / "home")
    logs = [tmp_path / f"health-{i}.log" for i in range(2)]
    procs = [
        start_health(env, config, log, "--datadir", str(tmp_path / f"faust-{i}"))
        for i, log in enumerate(logs)
    ]

    def tails() -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)

    try:
        deadline, group = time.monotonic() + 120, f"{topics.prefix}agentledger-health"
        events = topics.prefix + specs.EVENTS.name
        while (held := await _events_partitions_per_member(topics.bootstrap, group, events)) is None or len(
            held
        ) != 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), tails()
            await asyncio.sleep(0.5)
        # both processes read some of the four agents (each of them would page on its own)
        assert all(held) and sorted(p for h in held for p in h) == every, held
        start = time.time() - (BASE_S + SLOW_S + AFTER_S) - 60
        await _publish_spread(topics.bootstrap, events, start)
        alerts = await _alerts(topics.bootstrap, topics.prefix + specs.ALERTS.name, 2, timeout=120)
    finally:
        for p in procs:
            stop_health(p)
    slo = [a for a in alerts if a.rule == "slo.burn_rate"]
    assert [(a.entity, a.state) for a in slo] == [
        ("openai-latency:openai:page", AlertState.ALERT),
        ("openai-latency:openai:page", AlertState.RESOLVED),
    ], tails()
    # Not before the workbook's time, and within the slow spell. Not exactly on time: the hours of
    # history are read in one go, and one process's partitions may be read minutes of event time
    # behind the other's, so stage two's windows miss their latest calls for a while (docs/slo.md).
    step, recovery = start + BASE_S, start + BASE_S + SLOW_S
    predicted = step + 3600 * 14.4 * (1 - TARGET)
    fired = slo[0].ts.timestamp()
    assert predicted - (60 + 10 + 2 * EVERY_S) <= fired < recovery, (fired - step, predicted - step)
