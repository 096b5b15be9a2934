"""The streams pipeline on a real broker: worker throughput against a plain consumer, the
enforcement latency from ``record_usage`` in one process to ``guard.check`` raising in another,
and the overshoot of a runaway agent against a hard budget.

* decode: the same envelopes decoded in this process through the pydantic contract alone
  (``decode_envelope_pydantic``) and through ``decode_envelope`` (msgspec fast path), per event;
  and the worker's own code on them, both stages in memory (``Processor.process``, CPU µs per
  event: ``core_us_per_event``; the rest of a worker's CPU per event is Faust's and Kafka's);
* throughput: N events (mixed span/usage/tool/quality, envelopes of 200, 16 agents) are
  produced first; the anchor is a plain aiokafka consumer (``getmany`` + orjson + a sum per
  agent) of the same topic in the same run, and a second one that validates each event with
  the pydantic contract (what validation alone costs: ``ratio_worker_vs_validated`` is against
  it), and a third that decodes with ``decode_envelope`` (the fast path). Then, for 1 and for
  ``--workers`` N processes (``python -m agentledger worker``, uvloop, on fresh topics of
  ``topics.PARTITIONS`` partitions), the workers are started and ready before the same events
  are produced, and timed from their first to their last event (sustained rate, summed over
  the processes); their CPU time (user + system) over that span gives events per worker CPU
  second;
* enforcement, against the N workers: process A (this one) records usage through the
  collectors' ``Emitter`` that crosses a hard budget; process B polls ``Guard.check`` and
  stamps the moment it raises. Same machine, same clock. Per-agent budget: one call crosses it
  (a fresh agent per trial). Per-tenant budget: two calls from two agents whose keys sit on
  different partitions (a fresh tenant per trial), the second crosses it; with a single-stage
  worker and N > 1 the tenant's spend is split between workers and the kill may never come:
  such trials are counted as missed (3 s each), not hidden. Each trial is then split into
  its hops by the record timestamps of the topics it crossed (``HOPS``, ``hop_breakdown``:
  read after the trials, nothing in the worker changes);
* overshoot: process B runs an agent calling at a fixed rate, checking its own Guard before
  each call; overshoot = calls (and USD) recorded after the breaching call.

The broker is a local single-node one the benchmark launches (``--nodes 3``: a 3-node cluster,
topics replicated 3 with min ISR 2, as ``agentledger topics create`` makes them there; the
enforcement target is then p99 <= 250 ms instead of 100), or the cluster at
``AGENTLEDGER_KAFKA_BOOTSTRAP``.

The machine is a shared 2-core box (other work runs in parallel): figures are noisy.
``--probe``: the workers run with ``AGENTLEDGER_WORKER_PROBE`` (their event-loop and consumer-thread
lag, run lengths, garbage collections; ``runtime.LoopProbe``), matched to each trial over 100 ms
and to the trials' windows.

Usage: .venv/bin/python benchmarks/pipeline.py [--quick] [--workers N] [--nodes N] [--trials N] [--probe] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from agentledger import topics as specs
from agentledger.admin import create_topics
from agentledger.events import Policy
from agentledger.streams.policytopic import put_policies

CALL = {"provider": "openai", "model": "gpt-4o", "input_tokens": 10_000, "output_tokens": 1_000}
CALL_USD = Decimal("0.035")  # gpt-4o: 10k in at $2.50/M + 1k out at $10/M
RUNAWAY_LIMIT = Decimal("1.00")
EXTRA_WORKER_ARGS: list[str] = os.environ.get("BENCH_WORKER_ARGS", "").split()
TRIAL_EMITTER: dict[str, Any] = {}
"""Options of the trials' Emitter (``--client-linger-ms``); empty: the collectors' defaults."""
PROBE: dict[str, bool] = {"on": False}
"""``--probe``: the workers run with ``AGENTLEDGER_WORKER_PROBE`` (event-loop lag, run lengths)."""
ENFORCE_TARGET_MS: dict[int | str, int] = {1: 100, 3: 250}
"""Issue #15's enforcement targets (p99) by brokers: the single-node broker, the 3-node cluster."""


def _hex(i: int, n: int) -> str:
    return f"{i + 1:0{n}x}"[-n:]


def make_envelopes(n: int, size: int = 200, agents: int = 16) -> list[tuple[bytes, bytes]]:
    """Valid envelopes built as dicts (fast), distinct event ids, the newest event time = now.
    Events are spelled as the collectors send them (``model_dump(mode="json", exclude_none=True)``:
    every field but the null ones, defaults included), so the worker may forward them as sent."""
    now = datetime.now(UTC)
    ts = now.isoformat().replace("+00:00", "Z")
    out = []
    per_key: dict[int, list[dict[str, Any]]] = {}
    for i in range(n):
        a = i % agents
        common = {"v": 1, "event_id": f"b-{i:09d}", "ts": ts, "tenant": "bench-load", "agent": f"agent-{a}",
                  "agent_version": "v1", "workflow": "load", "trace_id": _hex(i // (20 * agents), 32),
                  "span_id": _hex(i, 16), "parent_span_id": _hex(i // (20 * agents) + 1, 16), "attributes": {}}  # fmt: skip
        k = i % 10
        if k < 4:
            ev = {**common, "type": "usage", **CALL, "cache_read_tokens": 2000, "cache_write_tokens": 0,
                  "reasoning_tokens": 0}  # fmt: skip
        elif k < 7:
            ev = {**common, "type": "span", "name": "chat", "kind": "llm", "start": ts, "end": ts,
                  "status": "ok", "provider": "openai", "model": "gpt-4o"}  # fmt: skip
        elif k < 9:
            ev = {**common, "type": "tool_call", "tool": "search", "args_hash": _hex(i, 16), "status": "ok"}
        else:
            ev = {**common, "type": "quality", "metric": "faithfulness", "score": 0.9}
        batch = per_key.setdefault(a, [])
        batch.append(ev)
        if len(batch) == size:
            key = f"bench-load/agent-{a}"
            out.append((key.encode(), orjson.dumps({"v": 1, "key": key, "events": batch})))
            per_key[a] = []
    for a, batch in per_key.items():
        if batch:
            key = f"bench-load/agent-{a}"
            out.append((key.encode(), orjson.dumps({"v": 1, "key": key, "events": batch})))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=8_000_000)
    await p.start()
    try:
        now_ms = int(time.time() * 1000)
        for key, value in records:
            await p.send(topic, value=value, key=key, timestamp_ms=now_ms)
        await p.flush()
    finally:
        await p.stop()


async def raw_consume(bootstrap: str, topic: str, n: int, validate: str = "") -> tuple[float, float]:
    """Anchor: a plain consumer decoding with orjson and summing tokens per agent; with
    ``validate="pydantic"``, validating each event with the pydantic contract instead (the
    floor of any worker that checks what it counts, as the contract alone does it); with
    ``validate="fast"``, through ``decode_envelope`` (msgspec first). Returns events per
    second (wall) and per CPU second of this process, from the first fetched record."""
    from aiokafka import AIOKafkaConsumer

    from agentledger.wire import decode_envelope, decode_envelope_pydantic

    decode = decode_envelope if validate == "fast" else decode_envelope_pydantic

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=8_000_000)  # fmt: skip
    await c.start()
    seen, per_agent = 0, {}
    try:
        t0, cpu0 = None, 0.0
        while seen < n:
            for msgs in (await c.getmany(timeout_ms=500, max_records=500)).values():
                if t0 is None:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                for m in msgs:
                    if validate:
                        for e in decode(m.value).events:
                            seen += 1
                            per_agent[e.agent] = per_agent.get(e.agent, 0) + getattr(e, "input_tokens", 0)
                        continue
                    for ev in orjson.loads(m.value)["events"]:
                        seen += 1
                        per_agent[ev["agent"]] = per_agent.get(ev["agent"], 0) + ev.get("input_tokens", 0)
        wall, cpu = time.perf_counter() - (t0 or 0.0), time.process_time() - cpu0
        return n / wall, n / cpu if cpu > 0 else float("nan")
    finally:
        await c.stop()


def start_worker(
    bootstrap: str, prefix: str, home: Path, port: int, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=bootstrap, AGENTLEDGER_TOPIC_PREFIX=prefix,
               AGENTLEDGER_HOME=str(home))  # fmt: skip
    if PROBE["on"]:
        env["AGENTLEDGER_WORKER_PROBE"] = str(home / "probe.json")
    cmd = [sys.executable, "-m", "agentledger", "worker", "--datadir", str(home / "faust"), "--web-port", str(port),
           "--session-timeout", "6", *extra, *EXTRA_WORKER_ARGS]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=(home / "worker.log").open("wb"), stderr=subprocess.STDOUT)


def stats(port: int) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/stats/", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return {}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wait_ready(ports: list[int], timeout: float) -> None:
    """Every worker ready (tables recovered), and still so 3 s later (the group settled)."""
    deadline = time.monotonic() + timeout
    settled = None
    while time.monotonic() < deadline:
        if all(stats(p).get("ready") for p in ports):
            settled = settled or time.monotonic()
            if time.monotonic() - settled >= 3:
                return
        else:
            settled = None
        time.sleep(0.2)
    raise RuntimeError(f"workers not ready in {timeout}s: {[stats(p) for p in ports]}")


def worker_rate(ports: list[int], pids: list[int], n: int, timeout: float) -> tuple[float, float]:
    """Sustained rate over all workers, from the first processed event to the last, polled
    every 50 ms, and the events per CPU second the workers spent over the same span."""
    first: tuple[float, int, float] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = sum(stats(p).get("counters", {}).get("events", 0) for p in ports)
        now = time.perf_counter()
        if seen > 0 and first is None:
            first = (now, seen, cpu_s(pids))
        if seen >= n and first is not None:
            if now <= first[0]:
                return float("nan"), float("nan")
            cpu = cpu_s(pids) - first[2]
            return (seen - first[1]) / (now - first[0]), (seen - first[1]) / cpu if cpu > 0 else float("nan")
        time.sleep(0.05)
    raise RuntimeError(f"workers processed {[stats(p) for p in ports]} of {n} events in {timeout}s")


def decode_cost_us(records: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """CPU microseconds per event to decode the same envelopes in this process (best of 3;
    CPU time, not wall time: on a shared machine the wall clock mostly measures the others)."""
    from agentledger.wire import decode_envelope, decode_envelope_pydantic

    n = sum(len(decode_envelope(v).events) for _, v in records)
    out = {}
    for name, fn in (("pydantic", decode_envelope_pydantic), ("fast", decode_envelope)):
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            for _, value in records:
                fn(value)
            best = min(best, time.process_time() - t0)
        out[name] = round(best / n * 1e6, 2)
    return out


def core_cost_us(records: list[tuple[bytes, bytes]], policies: list[Policy]) -> float:
    """CPU microseconds per event of the worker's own code, both stages in memory
    (``Processor.process``: decode, dedupe, price, priced bytes, deltas, rollups, budgets, loop
    detection; no Faust, no Kafka), best of 3 on fresh processors. What is left of the worker's
    CPU per event is Faust's and the Kafka client's."""
    from agentledger.streams.worker.processor import MemoryStore, Processor
    from agentledger.wire import dump

    n = sum(len(orjson.loads(v)["events"]) for _, v in records)
    best = float("inf")
    for _ in range(3):
        proc = Processor(MemoryStore())
        for pol in policies:
            proc.observe_policy(pol.policy_id, dump(pol))
        now = time.time()
        t0 = time.process_time()
        for offset, (key, value) in enumerate(records):
            proc.process(value, key, 0, offset, now)
        best = min(best, time.process_time() - t0)
    return round(best / n * 1e6, 2)


def keys_on_partitions(tenant: str, count: int, partitions: int) -> list[str]:
    """``count`` agent names of ``tenant`` whose keys the producer sends to distinct partitions
    (aiokafka's default partitioner: murmur2 of the key, as the ``Emitter`` uses)."""
    from aiokafka.partitioner import murmur2

    agents: dict[int, str] = {}
    i = 0
    while len(agents) < min(count, partitions):
        agent = f"t{i}"
        agents.setdefault((murmur2(f"{tenant}/{agent}".encode()) & 0x7FFFFFFF) % partitions, agent)
        i += 1
    return list(agents.values())


# -- process B: the Guard --------------------------------------------------------------------


def guard_process(bootstrap: str, prefix: str, conn: Any, runaway_rate: float) -> None:
    from agentledger.collectors.emitter import Emitter
    from agentledger.collectors.exceptions import AgentKilled
    from agentledger.collectors.guard import Guard

    guard = Guard(
        bootstrap=bootstrap,
        control_topic=prefix + specs.CONTROL.name,
        tools_topic=prefix + specs.TOOLS.name,
        policies_topic=prefix + specs.POLICIES.name,
    )
    guard.wait_ready(30)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        if msg[0] == "watch":
            _, tenant, agent, wait_s = msg
            conn.send("armed")
            deadline = time.monotonic() + wait_s
            stamp = None
            while time.monotonic() < deadline:
                try:
                    guard.check(tenant, agent, wait=False)
                except AgentKilled:
                    stamp = time.time()
                    break
                time.sleep(0.0002)
            conn.send(stamp)
        elif msg[0] == "runaway":
            em = Emitter(tenant="bench-runaway", agent="runaway", bootstrap=bootstrap,
                         topic=prefix + specs.EVENTS.name)  # fmt: skip
            calls = 0
            interval = 1.0 / runaway_rate
            nxt = time.perf_counter()
            try:
                while calls < 10_000:
                    guard.check("bench-runaway", "runaway", wait=False)
                    em.record_usage(**CALL)
                    calls += 1
                    nxt += interval
                    time.sleep(max(0.0, nxt - time.perf_counter()))
            except AgentKilled:
                pass
            em.flush(5)
            conn.send(calls)
    guard.close()


Mark = tuple[str, str, str, float, float]
"""A trial: (budget scope key, tenant, agent of the crossing call, client send time, Guard time)."""


def enforce_trials(
    bootstrap: str, prefix: str, trials: int, conn: Any, marks: list[Mark] | None = None
) -> list[float]:
    """Per-agent budget: one call of a fresh agent crosses it."""
    from agentledger.collectors.emitter import Emitter

    em = Emitter(
        tenant="bench-enforce",
        agent="a0",
        bootstrap=bootstrap,
        topic=prefix + specs.EVENTS.name,
        **TRIAL_EMITTER,
    )
    out = []
    for i in range(trials):
        agent = f"a{i + 1}"
        conn.send(("watch", "bench-enforce", agent, 10.0))
        assert conn.recv() == "armed"
        with em.span("trial", agent=agent):
            t0 = time.time()
            em.record_usage(**CALL)  # $0.035 crosses the $0.01 hard limit
        stamp = conn.recv()
        if stamp is not None:
            out.append((stamp - t0) * 1000)
            if marks is not None:
                marks.append((f"agent/bench-enforce/{agent}", "bench-enforce", agent, t0, stamp))
    em.shutdown(5)
    return out


def enforce_tenant_trials(
    bootstrap: str, prefix: str, trials: int, conn: Any, marks: list[Mark] | None = None
) -> tuple[list[float], int]:
    """Per-tenant budget ($0.05) spread over partitions: a fresh tenant per trial, one call
    ($0.035) from an agent on one partition, 200 ms later one from an agent on another, which
    crosses the budget. Returns the latencies and whether the two agents' partitions differ."""
    from agentledger.collectors.emitter import Emitter

    out = []
    for i in range(trials):
        tenant = f"bench-tenant-{i}"
        first, second = keys_on_partitions(tenant, 2, specs.EVENTS.partitions)
        em = Emitter(
            tenant=tenant, agent=first, bootstrap=bootstrap, topic=prefix + specs.EVENTS.name, **TRIAL_EMITTER
        )
        em.record_usage(**CALL)
        em.flush(5)
        time.sleep(0.2)
        conn.send(("watch", tenant, first, 3.0))
        assert conn.recv() == "armed"
        with em.span("trial", agent=second):
            t0 = time.time()
            em.record_usage(**CALL)
        stamp = conn.recv()
        em.shutdown(5)
        if stamp is not None:
            out.append((stamp - t0) * 1000)
            if marks is not None:
                marks.append((f"tenant/{tenant}", tenant, second, t0, stamp))
    return out, trials - len(out)


HOPS = ("client", "stage_one", "stage_two", "guard")
"""Where an enforcement's time goes, from record timestamps (one clock, one machine):
``client`` the call to the events record's append on the broker (the Emitter's batching and
its produce request: the benchmark's events topic stamps records with ``LogAppendTime``, which
the worker never reads), ``stage_one`` to the send of the scope-deltas record carrying the
budget's scope (its CreateTime: the worker's fetch, Faust's delivery, stage one),
``stage_two`` to the send of the command on the control topic (the deltas record's produce
request, the fetch, stage two), ``guard`` to the Guard raising (the command's produce request,
the Guard's fetch, its table)."""


async def stamp_on_append(bootstrap: str, topic: str) -> None:
    """Have the broker stamp ``topic``'s records with their append time (the client hop's end)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cfg = {"cleanup.policy": "delete", **specs.EVENTS.config, "message.timestamp.type": "LogAppendTime"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=cfg)])
    finally:
        await admin.close()


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        meta = await c._client.fetch_all_metadata()
        parts = [TopicPartition(topic, p) for p in meta.partitions_for_topic(topic) or ()]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        ends = await c.end_offsets(parts)
        out: list[Any] = []
        while [tp for tp in parts if await c.position(tp) < ends[tp]]:
            for recs in (await c.getmany(timeout_ms=500)).values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


async def hop_breakdown(
    bootstrap: str, prefix: str, marks: list[Mark], by_scope: dict[str, dict[str, float]] | None = None
) -> list[dict[str, float]]:
    """Each trial's time per hop (ms), matched through the topics: the crossing call's events
    record, the scope-deltas record of that origin holding the budget's scope, the first
    command on that scope. Reads only: nothing in the worker changes."""
    events = await _read_all(bootstrap, prefix + specs.EVENTS.name)
    deltas = await _read_all(bootstrap, prefix + specs.SCOPE_DELTAS.name)
    control = await _read_all(bootstrap, prefix + specs.CONTROL.name)
    usage_at: dict[tuple[str, str], tuple[int, int, int]] = {}
    for r in events:
        try:
            evs = orjson.loads(r.value).get("events", [])
        except orjson.JSONDecodeError:
            continue
        for ev in evs:
            if ev.get("type") == "usage":
                usage_at.setdefault((ev.get("tenant"), ev.get("agent")), (r.partition, r.offset, r.timestamp))
    delta_at: dict[tuple[int, int, str], int] = {}
    for r in deltas:
        doc = orjson.loads(r.value)
        if doc.get("o"):
            for k in doc["r"]:
                delta_at.setdefault((doc["o"][0], doc["o"][1], k), r.timestamp)
    command_at: dict[str, int] = {}
    for r in control:
        if r.key is not None and r.value is not None:
            command_at.setdefault(r.key.decode().rpartition(":")[2], r.timestamp)
    out = []
    for scope, tenant, agent, t0, stamp in marks:
        ev = usage_at.get((tenant, agent))
        cmd = command_at.get(scope)
        if ev is None or cmd is None or (ev[0], ev[1], scope) not in delta_at:
            continue
        t_ev, t_delta = ev[2] / 1000, delta_at[(ev[0], ev[1], scope)] / 1000
        t_cmd = cmd / 1000
        stamps = [t0, t_ev, t_delta, t_cmd, stamp]
        out.append({h: round((stamps[i + 1] - stamps[i]) * 1000, 1) for i, h in enumerate(HOPS)})
        if by_scope is not None:
            by_scope[scope] = out[-1]
    return out


def hop_summary(hops: list[dict[str, float]]) -> dict[str, Any]:
    """Per hop p50 / p95 / p99 / max, and which hop the slowest trials lost their time in."""
    out: dict[str, Any] = {}
    for h in HOPS:
        v = sorted(x[h] for x in hops)
        if v:
            out[h] = {"p50": round(statistics.median(v), 1), "p95": pct(v, 0.95), "p99": p99(v), "max": v[-1]}
    slow = sorted(hops, key=lambda x: -sum(x.values()))[: max(1, len(hops) // 20)]
    out["slowest"] = slow
    out["matched"] = len(hops)
    out["trials"] = hops
    return out


def probe_summary(paths: list[Path], marks: list[Mark], hops: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The workers' probes (``--probe``): per measured run, the bucket counts summed over the
    workers and the largest value; per trial over 100 ms, the longest loop lag and step, and
    the slowest arrivals, any worker, between its call and the Guard raising."""
    docs = [json.loads(p.read_text()) for p in paths if p.exists()]
    if not docs:
        return {}
    buckets = docs[0]["buckets_ms"]
    hist: dict[str, list[int]] = {}
    top: dict[str, float] = {}
    for d in docs:
        for k, v in d["hist"].items():
            hist[k] = [a + b for a, b in zip(hist.get(k, [0] * len(v)), v, strict=True)]
        for k, v in d["max_ms"].items():
            top[k] = max(top.get(k, 0.0), v)
    spikes = sorted((at, what, ms) for d in docs for at, what, ms in d["spikes"])
    lags = [lag for d in docs for lag in late_wakeups(d["spikes"])]
    slow = []
    for scope, _, _, t0, stamp in marks:
        if (stamp - t0) * 1000 <= 100:
            continue
        h = hops.get(scope, {})
        during: dict[str, float] = {}
        for at, what, ms in spikes:
            if t0 <= at <= stamp + 0.001:
                during[what] = max(during.get(what, 0.0), ms)
        slow.append({"scope": scope, "ms": round((stamp - t0) * 1000, 1), "hops": h, "max_during": during})
    # the histograms include the throughput run; during the trials, from the spikes (> 10 ms)
    trials: dict[str, dict[str, float]] = {}
    if marks:
        start, end = min(m[3] for m in marks), max(m[4] for m in marks)
        for at, what, ms in spikes:
            if start <= at <= end:
                t = trials.setdefault(what, {"over_10": 0, "over_50": 0, "over_100": 0, "max": 0.0})
                for cut in (10, 50, 100):
                    t[f"over_{cut}"] += ms > cut
                t["max"] = max(t["max"], ms)
        trials["_window_s"] = {"s": round(end - start, 1), "start": start, "end": end}
        trials["_late_wakeups_over_20ms"] = why_late([x for x in lags if start <= x[0] <= end and x[2] > 20])
    return {"buckets_ms": buckets, "hist": hist, "max_ms": top, "during_trials": trials, "slow_trials": slow}


def late_wakeups(spikes: list[list[Any]]) -> list[tuple[float, str, float, float, float]]:
    """(time, loop, lag, the thread's CPU meanwhile, the process's) of each late wake-up of a
    probe's lag task (its CPU figures follow it among the next few spikes of its thread)."""
    out = []
    for i, (at, what, ms) in enumerate(spikes):
        if what not in ("loop_lag", "consumer_thread_lag"):
            continue
        cpu = {w: v for _, w, v in spikes[i + 1 : i + 8] if w.startswith(what + "_")}
        if f"{what}_thread_cpu" in cpu and f"{what}_process_cpu" in cpu:
            out.append((at, what, ms, cpu[f"{what}_thread_cpu"], cpu[f"{what}_process_cpu"]))
    return out


def why_late(lags: list[tuple[float, str, float, float, float]]) -> dict[str, Any]:
    """Late wake-ups by cause: ``waited_for_cpu`` (the process ran under 30 % of the lag: the
    machine's other work had the cores), ``loop_ran`` (the thread itself ran over 70 % of it: a
    callback or a garbage collection held the loop), ``other_thread`` (the rest: the process ran,
    mostly in its other thread, which holds the GIL)."""
    out: dict[str, Any] = {"waited_for_cpu": 0, "loop_ran": 0, "other_thread": 0, "n": len(lags)}
    for _, _, ms, thread_ms, process_ms in lags:
        if process_ms < 0.3 * ms:
            out["waited_for_cpu"] += 1
        elif thread_ms > 0.7 * ms:
            out["loop_ran"] += 1
        else:
            out["other_thread"] += 1
    return out


def pct(lat: list[float], q: float) -> float | None:
    lat = sorted(lat)
    return round(lat[min(len(lat) - 1, int(len(lat) * q))], 1) if lat else None


def p99(lat: list[float]) -> float | None:
    return pct(lat, 0.99)


def run(
    quick: bool, bootstrap: str, workers: int = 2, trials: int | None = None, nodes: int | str = 1
) -> dict[str, Any]:
    n = 60_000 if quick else 400_000
    trials = trials or (40 if quick else 220)
    tenant_trials = max(10, trials // 4) if quick else 60
    home = Path(tempfile.mkdtemp(prefix="al-bench-"))
    policies = [
        Policy(policy_id="enforce", selector={"tenant": "bench-enforce", "per": "agent"},  # type: ignore[arg-type]
               window="calendar_day", limit=Decimal("0.01")),  # type: ignore[arg-type]
        Policy(policy_id="enforce-tenant", selector={"tenant": "bench-tenant-*", "per": "tenant"},  # type: ignore[arg-type]
               window="calendar_day", limit=Decimal("0.05")),  # type: ignore[arg-type]
        Policy(policy_id="runaway", selector={"tenant": "bench-runaway", "per": "agent"},  # type: ignore[arg-type]
               window="calendar_day", limit=RUNAWAY_LIMIT),  # type: ignore[arg-type]
    ]  # fmt: skip
    records = make_envelopes(n)
    decode_us = decode_cost_us(records[: max(1, len(records) // 10)])
    core_us = core_cost_us(records[: max(1, len(records) // 10)], policies)

    anchor_prefix = f"bench{uuid.uuid4().hex[:6]}."
    asyncio.run(create_topics(bootstrap, prefix=anchor_prefix))
    asyncio.run(produce(bootstrap, anchor_prefix + specs.EVENTS.name, records))
    topic = anchor_prefix + specs.EVENTS.name
    raw_rate, _ = asyncio.run(raw_consume(bootstrap, topic, n))
    validated_rate, validated_cpu = asyncio.run(raw_consume(bootstrap, topic, n, validate="pydantic"))
    fast_rate, fast_cpu = asyncio.run(raw_consume(bootstrap, topic, n, validate="fast"))

    by_count: dict[str, dict[str, float]] = {}
    # on a cluster (min ISR 2) the workers' changelogs are replicated as the topics are
    extra = ("--replication", str(min(3, nodes))) if isinstance(nodes, int) and nodes > 1 else ()
    procs: list[subprocess.Popen[bytes]] = []
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    runaway_rate = 50.0
    guard = None
    try:
        for count in sorted({1, workers}):
            for p in procs:
                p.terminate()
                p.wait(20)
            prefix = f"bench{uuid.uuid4().hex[:6]}."
            asyncio.run(create_topics(bootstrap, prefix=prefix))
            asyncio.run(stamp_on_append(bootstrap, prefix + specs.EVENTS.name))
            asyncio.run(put_policies(bootstrap, prefix, policies))
            ports = [free_port() for _ in range(count)]
            procs = [
                start_worker(bootstrap, prefix, home / f"{count}w-{i}", port, extra)
                for i, port in enumerate(ports)
            ]
            wait_ready(ports, timeout=120)
            asyncio.run(produce(bootstrap, prefix + specs.EVENTS.name, records))
            rate, per_cpu = worker_rate(ports, [p.pid for p in procs], n, timeout=300)
            by_count[str(count)] = {"events_per_s": round(rate), "events_per_worker_cpu_s": round(per_cpu)}
        guard = ctx.Process(target=guard_process, args=(bootstrap, prefix, child, runaway_rate), daemon=True)
        guard.start()
        assert parent.recv() == "ready"
        marks: list[Mark] = []
        tenant_marks: list[Mark] = []
        lat = enforce_trials(bootstrap, prefix, trials, parent, marks)
        tenant_lat, tenant_missed = enforce_tenant_trials(
            bootstrap, prefix, tenant_trials, parent, tenant_marks
        )
        parent.send(("runaway",))
        calls = parent.recv()
        parent.send(None)
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        if guard is not None:
            guard.join(10)
    probe_paths = [home / f"{workers}w-{i}" / "probe.json" for i in range(workers)]
    by_scope: dict[str, dict[str, float]] = {}
    hops = hop_summary(asyncio.run(hop_breakdown(bootstrap, prefix, marks, by_scope)))
    tenant_hops = hop_summary(asyncio.run(hop_breakdown(bootstrap, prefix, tenant_marks, by_scope)))
    probes: dict[str, Any] = {}
    if PROBE["on"]:
        probes = {
            "agent": probe_summary(probe_paths, marks, by_scope),
            "tenant": probe_summary(probe_paths, tenant_marks, by_scope),
        }
    crossing = int((RUNAWAY_LIMIT / CALL_USD).to_integral_value(rounding="ROUND_CEILING"))
    over_calls = max(0, calls - crossing)
    lat.sort()
    one = by_count["1"]
    return {
        "events": n,
        "decode_us_per_event_pydantic": decode_us["pydantic"],
        "decode_us_per_event_fast": decode_us["fast"],
        "core_us_per_event": core_us,
        "worker_events_per_s": one["events_per_s"],
        **{f"worker_events_per_s_{k}w": v["events_per_s"] for k, v in by_count.items()},
        "events_per_worker_cpu_s": one["events_per_worker_cpu_s"],
        **{f"events_per_worker_cpu_s_{k}w": v["events_per_worker_cpu_s"] for k, v in by_count.items()},
        "workers": workers,
        "nodes": nodes,
        "enforce_target_p99_ms": ENFORCE_TARGET_MS.get(nodes, 100),
        "partitions": specs.EVENTS.partitions,
        "raw_consume_events_per_s": round(raw_rate),
        "ratio_worker_vs_raw": round(one["events_per_s"] / raw_rate, 3),
        "validated_consume_events_per_s": round(validated_rate),
        "ratio_worker_vs_validated": round(one["events_per_s"] / validated_rate, 3),
        "fast_validated_consume_events_per_s": round(fast_rate),
        "validated_consume_events_per_cpu_s": round(validated_cpu),
        "fast_validated_consume_events_per_cpu_s": round(fast_cpu),
        "ratio_worker_cpu_vs_validated_cpu": round(one["events_per_worker_cpu_s"] / validated_cpu, 3),
        "enforce_workers": workers,
        "enforce_trials": len(lat),
        "enforce_trials_missed": trials - len(lat),
        "enforce_p50_ms": round(statistics.median(lat), 1),
        "enforce_p95_ms": pct(lat, 0.95),
        "enforce_p99_ms": p99(lat),
        "enforce_max_ms": round(lat[-1], 1),
        "enforce_tenant_trials": len(tenant_lat),
        "enforce_tenant_trials_missed": tenant_missed,
        "enforce_tenant_p50_ms": round(statistics.median(tenant_lat), 1) if tenant_lat else None,
        "enforce_tenant_p95_ms": pct(tenant_lat, 0.95),
        "enforce_tenant_p99_ms": p99(tenant_lat),
        "enforce_client_linger_ms": TRIAL_EMITTER.get("linger_ms", "default"),
        "enforce_hops_ms": hops,
        "worker_probe": probes,
        "enforce_tenant_hops_ms": tenant_hops,
        "runaway_rate_per_s": runaway_rate,
        "runaway_calls": calls,
        "overshoot_calls": over_calls,
        "overshoot_usd": str(over_calls * CALL_USD),
        "uvloop": True,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": f"{os.cpu_count()} cores, shared with other work (noisy)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the second throughput run and "
                    "for enforcement (default 2; 1 runs one set)")  # fmt: skip
    ap.add_argument("--trials", type=int, help="agent-budget enforcement trials (default 40 quick, 220 full; "
                    "tenant trials: a quarter, at least 10, when quick)")  # fmt: skip
    ap.add_argument("--nodes", type=int, default=1, help="brokers of the local cluster the benchmark "
                    "launches (default 1; 3 for the 3-node figure); not with AGENTLEDGER_KAFKA_BOOTSTRAP")  # fmt: skip
    ap.add_argument("--client-linger-ms", type=float, help="the trials' Emitter linger (default: the "
                    "collectors' 20 ms); to see what the client's batching adds to enforcement")  # fmt: skip
    ap.add_argument("--probe", action="store_true", help="the workers measure their event-loop lag and "
                    "run lengths (AGENTLEDGER_WORKER_PROBE; measurement only, costs some worker CPU)")  # fmt: skip
    args = ap.parse_args()
    PROBE["on"] = args.probe
    if args.client_linger_ms is not None:
        TRIAL_EMITTER["linger_ms"] = args.client_linger_ms
    local = None
    bootstrap = os.environ.get("AGENTLEDGER_KAFKA_BOOTSTRAP")
    nodes: int | str = "external"
    if bootstrap and args.nodes != 1:
        ap.error("--nodes launches a local cluster: unset AGENTLEDGER_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from agentledger.localkafka import LocalKafka

        nodes = max(1, args.nodes)
        local = LocalKafka(Path(tempfile.mkdtemp(prefix="al-bench-kafka-")))
        bootstrap = local.up(nodes=nodes, timeout=120 if nodes == 1 else 180).bootstrap
    try:
        res = run(args.quick, bootstrap, max(1, args.workers), args.trials, nodes)
    finally:
        if local is not None:
            local.down()
    w = res["workers"]
    tenant_p99 = res["enforce_tenant_p99_ms"]
    target = res["enforce_target_p99_ms"]
    rows = [
        ("decode us/event", res["decode_us_per_event_fast"], res["decode_us_per_event_pydantic"],
         round(res["decode_us_per_event_fast"] / res["decode_us_per_event_pydantic"], 3)),
        ("core us/event", res["core_us_per_event"], res["decode_us_per_event_pydantic"],
         round(res["core_us_per_event"] / res["decode_us_per_event_pydantic"], 3)),
        ("worker events/s", res["worker_events_per_s"], res["raw_consume_events_per_s"], res["ratio_worker_vs_raw"]),
        ("  vs validating", res["worker_events_per_s"], res["validated_consume_events_per_s"],
         res["ratio_worker_vs_validated"]),
        (f"  {w} workers", res[f"worker_events_per_s_{w}w"], res["worker_events_per_s"],
         round(res[f"worker_events_per_s_{w}w"] / res["worker_events_per_s"], 3)),
        ("events/worker-CPU-s", res["events_per_worker_cpu_s"], res["validated_consume_events_per_cpu_s"],
         res["ratio_worker_cpu_vs_validated_cpu"]),
        ("enforce p50 ms", res["enforce_p50_ms"], target, round(res["enforce_p50_ms"] / target, 3)),
        ("enforce p95 ms", res["enforce_p95_ms"], target, round((res["enforce_p95_ms"] or 0) / target, 3)),
        ("enforce p99 ms", res["enforce_p99_ms"], target, round((res["enforce_p99_ms"] or 0) / target, 3)),
        ("tenant p99 ms", tenant_p99, target, round(tenant_p99 / target, 3) if tenant_p99 is not None else "-"),
        ("overshoot calls", res["overshoot_calls"], f"{res['runaway_rate_per_s']:g}/s x p99",
         round(res["runaway_rate_per_s"] * res["enforce_p99_ms"] / 1000, 1)),
    ]  # fmt: skip
    print(f"{'figure':<18}{'value':>12}  {'anchor':>18}  {'ratio':>8}")
    for name, value, anchor, ratio in rows:
        print(f"{name:<18}{value!s:>12}  {anchor!s:>18}  {ratio!s:>8}")
    print(f"overshoot USD {res['overshoot_usd']}; {res['enforce_trials']} agent trials, "
          f"{res['enforce_tenant_trials']} tenant trials ({res['enforce_tenant_trials_missed']} missed) "
          f"on {res['enforce_workers']} workers, {res['nodes']} broker node(s); {res['machine']}; load average {res['loadavg_1m_at_end']}")  # fmt: skip
    for name, key in (("agent", "enforce_hops_ms"), ("tenant", "enforce_tenant_hops_ms")):
        h = res[key]
        print(f"{name} hops ms (p50 / p95 / p99 / max): "
              + "; ".join(f"{k} {h[k]['p50']} / {h[k]['p95']} / {h[k]['p99']} / {h[k]['max']}"
                          for k in HOPS if k in h))  # fmt: skip
        print(f"  {h.get('matched', 0)} trials matched; slowest: {h['slowest']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    for kind, pr in res["worker_probe"].items():
        if not pr:
            continue
        if kind == "agent":
            print("worker probe, ms (counts per bucket upper bound, summed over workers; max):")
            for k, v in sorted(pr["hist"].items()):  # the whole run, throughput included
                cells = " ".join(
                    f"<={b}:{c}" for b, c in zip([*pr["buckets_ms"], "inf"], v, strict=True) if c
                )
                print(f"  {k:<34} {cells}  max {pr['max_ms'].get(k)}")
        for t in pr["slow_trials"]:
            print(f"  slow {kind} trial {t['ms']} ms hops {t['hops']} during: {t['max_during']}")
        print(f"  during the {kind} trials (spikes over 10 / 50 / 100 ms; max):")
        for k, v in sorted(pr["during_trials"].items()):
            print(f"  {k:<34} {v}")


if __name__ == "__main__":
    main()
