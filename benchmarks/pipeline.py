"""The streams pipeline on a real broker: worker throughput against a plain consumer, the
enforcement latency from ``record_usage`` in one process to ``guard.check`` raising in another,
and the overshoot of a runaway agent against a hard budget.

* throughput: N events (mixed span/usage/tool/quality, envelopes of 200, 16 agents) are
  produced first; the anchor is a plain aiokafka consumer (``getmany`` + orjson + a sum per
  agent) of the same topic in the same run, and a second one that decodes through the
  contract (pydantic per event: what validation alone costs); the worker (``python -m agentledger worker``, one
  process, uvloop) is timed from its first to its last event (sustained rate);
* enforcement: process A (this one) records one usage through the collectors' ``Emitter``
  that crosses a hard per-agent budget (a fresh agent per trial); process B polls
  ``Guard.check`` and stamps the moment it raises. Same machine, same clock;
* overshoot: process B runs an agent calling at a fixed rate, checking its own Guard before
  each call; overshoot = calls (and USD) recorded after the breaching call.

The machine is a shared 2-core box (other work runs in parallel): figures are noisy.
Usage: .venv/bin/python benchmarks/pipeline.py [--quick] [--json PATH]
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


def _hex(i: int, n: int) -> str:
    return f"{i + 1:0{n}x}"[-n:]


def make_envelopes(n: int, size: int = 200, agents: int = 16) -> list[tuple[bytes, bytes]]:
    """Valid envelopes built as dicts (fast), distinct event ids, the newest event time = now."""
    now = datetime.now(UTC)
    ts = now.isoformat().replace("+00:00", "Z")
    out = []
    per_key: dict[int, list[dict[str, Any]]] = {}
    for i in range(n):
        a = i % agents
        common = {"event_id": f"b-{i:09d}", "ts": ts, "tenant": "bench-load", "agent": f"agent-{a}",
                  "agent_version": "v1", "workflow": "load", "trace_id": _hex(i // (20 * agents), 32),
                  "span_id": _hex(i, 16), "parent_span_id": _hex(i // (20 * agents) + 1, 16)}  # fmt: skip
        k = i % 10
        if k < 4:
            ev = {**common, "type": "usage", **CALL, "cache_read_tokens": 2000}
        elif k < 7:
            ev = {**common, "type": "span", "name": "chat", "kind": "llm", "start": ts, "end": ts,
                  "provider": "openai", "model": "gpt-4o"}  # fmt: skip
        elif k < 9:
            ev = {**common, "type": "tool_call", "tool": "search", "args_hash": _hex(i, 16)}
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


async def raw_consume(bootstrap: str, topic: str, n: int, validate: bool = False) -> float:
    """Anchor: a plain consumer decoding with orjson and summing tokens per agent; with
    ``validate``, decoding through the contract instead (``decode_envelope``: pydantic per
    event), the floor of any worker that checks what it counts."""
    from aiokafka import AIOKafkaConsumer

    from agentledger.wire import decode_envelope

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=8_000_000)  # fmt: skip
    await c.start()
    seen, per_agent = 0, {}
    try:
        t0 = None
        while seen < n:
            for msgs in (await c.getmany(timeout_ms=500, max_records=500)).values():
                t0 = t0 or time.perf_counter()
                for m in msgs:
                    if validate:
                        for e in decode_envelope(m.value).events:
                            seen += 1
                            per_agent[e.agent] = per_agent.get(e.agent, 0) + getattr(e, "input_tokens", 0)
                        continue
                    for ev in orjson.loads(m.value)["events"]:
                        seen += 1
                        per_agent[ev["agent"]] = per_agent.get(ev["agent"], 0) + ev.get("input_tokens", 0)
        return n / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await c.stop()


def start_worker(bootstrap: str, prefix: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=bootstrap, AGENTLEDGER_TOPIC_PREFIX=prefix,
               AGENTLEDGER_HOME=str(home))  # fmt: skip
    cmd = [sys.executable, "-m", "agentledger", "worker", "--datadir", str(home / "faust"), "--web-port", str(port),
           "--session-timeout", "6", *EXTRA_WORKER_ARGS]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=(home / "worker.log").open("wb"), stderr=subprocess.STDOUT)


def stats(port: int) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/stats/", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return {}


def worker_rate(port: int, n: int, timeout: float) -> float:
    """Sustained rate: from the first processed event to the last, polled every 50 ms."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = stats(port).get("counters", {}).get("events", 0)
        now = time.perf_counter()
        if seen > 0 and first is None:
            first = (now, seen)
        if seen >= n and first is not None:
            return (seen - first[1]) / (now - first[0]) if now > first[0] else float("nan")
        time.sleep(0.05)
    raise RuntimeError(f"worker processed {stats(port)} of {n} events in {timeout}s")


# -- process B: the Guard --------------------------------------------------------------------


def guard_process(bootstrap: str, prefix: str, conn: Any, runaway_rate: float) -> None:
    from agentledger.collectors.emitter import Emitter
    from agentledger.collectors.exceptions import AgentKilled
    from agentledger.collectors.guard import Guard

    guard = Guard(bootstrap=bootstrap, control_topic=prefix + specs.CONTROL.name)
    guard.wait_ready(30)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        if msg[0] == "watch":
            agent = msg[1]
            conn.send("armed")
            deadline = time.monotonic() + 10
            stamp = None
            while time.monotonic() < deadline:
                try:
                    guard.check("bench-enforce", agent, wait=False)
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


def enforce_trials(bootstrap: str, prefix: str, trials: int, conn: Any) -> list[float]:
    from agentledger.collectors.emitter import Emitter

    em = Emitter(tenant="bench-enforce", agent="a0", bootstrap=bootstrap, topic=prefix + specs.EVENTS.name)
    out = []
    for i in range(trials):
        agent = f"a{i + 1}"
        conn.send(("watch", agent))
        assert conn.recv() == "armed"
        with em.span("trial", agent=agent):
            t0 = time.time()
            em.record_usage(**CALL)  # $0.035 crosses the $0.01 hard limit
        stamp = conn.recv()
        if stamp is not None:
            out.append((stamp - t0) * 1000)
    em.shutdown(5)
    return out


def run(quick: bool, bootstrap: str) -> dict[str, Any]:
    n = 60_000 if quick else 400_000
    trials = 40 if quick else 220
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    home = Path(tempfile.mkdtemp(prefix="al-bench-"))
    asyncio.run(create_topics(bootstrap, prefix=prefix))
    policies = [
        Policy(policy_id="enforce", selector={"tenant": "bench-enforce", "per": "agent"},  # type: ignore[arg-type]
               window="calendar_day", limit=Decimal("0.01")),  # type: ignore[arg-type]
        Policy(policy_id="runaway", selector={"tenant": "bench-runaway", "per": "agent"},  # type: ignore[arg-type]
               window="calendar_day", limit=RUNAWAY_LIMIT),  # type: ignore[arg-type]
    ]  # fmt: skip
    asyncio.run(put_policies(bootstrap, prefix, policies))
    records = make_envelopes(n)
    events_topic = prefix + specs.EVENTS.name
    asyncio.run(produce(bootstrap, events_topic, records))
    raw_rate = asyncio.run(raw_consume(bootstrap, events_topic, n))
    validated_rate = asyncio.run(raw_consume(bootstrap, events_topic, n, validate=True))

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = start_worker(bootstrap, prefix, home, port)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    runaway_rate = 50.0
    guard = ctx.Process(target=guard_process, args=(bootstrap, prefix, child, runaway_rate), daemon=True)
    try:
        rate = worker_rate(port, n, timeout=300)
        guard.start()
        assert parent.recv() == "ready"
        lat = enforce_trials(bootstrap, prefix, trials, parent)
        parent.send(("runaway",))
        calls = parent.recv()
        parent.send(None)
    finally:
        worker.terminate()
        worker.wait(20)
        guard.join(10)
    crossing = int((RUNAWAY_LIMIT / CALL_USD).to_integral_value(rounding="ROUND_CEILING"))
    over_calls = max(0, calls - crossing)
    lat.sort()
    return {
        "events": n,
        "worker_events_per_s": round(rate),
        "raw_consume_events_per_s": round(raw_rate),
        "ratio_worker_vs_raw": round(rate / raw_rate, 3),
        "validated_consume_events_per_s": round(validated_rate),
        "ratio_worker_vs_validated": round(rate / validated_rate, 3),
        "enforce_trials": len(lat),
        "enforce_trials_missed": trials - len(lat),
        "enforce_p50_ms": round(statistics.median(lat), 1),
        "enforce_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "enforce_max_ms": round(lat[-1], 1),
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
    args = ap.parse_args()
    local = None
    bootstrap = os.environ.get("AGENTLEDGER_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from agentledger.localkafka import LocalKafka

        local = LocalKafka(Path(tempfile.mkdtemp(prefix="al-bench-kafka-")))
        bootstrap = local.up(nodes=1, timeout=120).bootstrap
    try:
        res = run(args.quick, bootstrap)
    finally:
        if local is not None:
            local.down()
    rows = [
        ("worker events/s", res["worker_events_per_s"], res["raw_consume_events_per_s"], res["ratio_worker_vs_raw"]),
        ("  vs validating", res["worker_events_per_s"], res["validated_consume_events_per_s"],
         res["ratio_worker_vs_validated"]),
        ("enforce p50 ms", res["enforce_p50_ms"], 250, round(res["enforce_p50_ms"] / 250, 3)),
        ("enforce p99 ms", res["enforce_p99_ms"], 250, round(res["enforce_p99_ms"] / 250, 3)),
        ("overshoot calls", res["overshoot_calls"], f"{res['runaway_rate_per_s']:g}/s x p99",
         round(res["runaway_rate_per_s"] * res["enforce_p99_ms"] / 1000, 1)),
    ]  # fmt: skip
    print(f"{'figure':<18}{'value':>12}  {'anchor':>18}  {'ratio':>8}")
    for name, value, anchor, ratio in rows:
        print(f"{name:<18}{value!s:>12}  {anchor!s:>18}  {ratio!s:>8}")
    print(f"overshoot USD {res['overshoot_usd']}; {res['enforce_trials']} trials; {res['machine']}; "
          f"load average {res['loadavg_1m_at_end']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
