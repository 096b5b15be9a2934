"""Shared by the streams integration tests: a worker subprocess, produce/consume helpers and a
seeded event generator with its own ground truth (priced by genai_prices.calc_price)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from genai_prices import Usage, calc_price

from agentledger.events import SpanEvent, SpanKind, SpanStatus, ToolCallEvent, UsageEvent
from agentledger.pricing import QUANTUM
from agentledger.wire import AnyEvent, encode_envelope

MODELS = [
    ("openai", "openai", "gpt-4o"),
    ("openai", "openai", "gpt-4o-mini"),
    ("anthropic", "anthropic", "claude-3-5-haiku-latest"),
    ("openai", "openai", "o3"),
    ("gcp.gemini", "google", "gemini-2.5-pro"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url("/stats/"), timeout=5).json())

    def rollup(self, scope: str) -> dict[str, dict[str, Any]]:
        return dict(httpx.get(self.url("/rollups/"), params={"scope": scope}, timeout=5).json()["windows"])

    def trace(self, tenant: str, trace_id: str) -> dict[str, dict[str, Any]]:
        r = httpx.get(self.url("/trace/"), params={"tenant": tenant, "trace_id": trace_id}, timeout=5)
        return dict(r.json()["spans"])

    def wait_events(self, n: int, timeout: float = 60.0, key: str = "events") -> dict[str, Any]:
        """Until the counter reaches ``n`` and stage two has applied every scope-deltas record
        stage one sent (one worker process: both stages are here)."""
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker died:\n{self.log.read_text()[-3000:]}"
            stats = self.stats()
            c = stats["counters"]
            if c.get(key, 0) >= n and c.get("deltas_in", 0) >= c.get("deltas_out", 0):
                return stats
            time.sleep(0.2)
        raise AssertionError(f"worker saw {stats.get('counters')} after {timeout}s, wanted {key}>={n}")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_worker(topics: Any, tmp: Path, *args: str, timeout: float = 60.0) -> Worker:
    """``python -m agentledger worker`` on the test's topics; returns once it is ready."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"worker-{port}.log"
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix,
               AGENTLEDGER_HOME=str(tmp))  # fmt: skip
    cmd = [sys.executable, "-m", "agentledger", "worker", "--datadir", str(tmp / "faust"), "--web-port", str(port),
           "--commit-interval", "0.5", "--session-timeout", "6", *args]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    w = Worker(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if w.stats()["ready"]:
                return w
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    w.kill(signal.SIGKILL)
    raise AssertionError(f"worker not ready in {timeout}s:\n{log.read_text()[-3000:]}")


# -- Kafka helpers ------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        try:
            now_ms = int(time.time() * 1000)
            for key, value in records:
                await p.send(topic, value=value, key=key, timestamp_ms=now_ms)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


def envelopes(events: list[AnyEvent], size: int = 50) -> list[tuple[bytes | None, bytes | None]]:
    """Events -> envelope records, one key per tenant/agent, in order."""
    by_key: dict[str, list[AnyEvent]] = defaultdict(list)
    out: list[tuple[bytes | None, bytes | None]] = []
    order: list[str] = []
    for ev in events:
        if ev.key not in by_key:
            order.append(ev.key)
        by_key[ev.key].append(ev)
    for key in order:
        evs = by_key[key]
        for i in range(0, len(evs), size):
            out.append((key.encode(), encode_envelope(key, evs[i : i + size])))
    return out


def consume(bootstrap: str, topic: str, timeout: float = 3.0, until: int | None = None) -> list[Any]:
    """Every record on a topic (all partitions) read from the beginning until quiet or ``until``."""

    async def run() -> list[Any]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await c.start()
        out: list[Any] = []
        try:
            parts = c.partitions_for_topic(topic) or set()
            if not parts:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in parts]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (until is None or len(out) < until):
                for msgs in (await c.getmany(timeout_ms=300)).values():
                    out.extend(msgs)
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


# -- seeded generator with ground truth -----------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n - 1)) + rng.choice("123456789abcdef")


def truth_cost(u: UsageEvent, provider_id: str) -> Decimal:
    kw = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
          "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens}  # fmt: skip
    calc = calc_price(Usage(**kw), u.model, provider_id=provider_id, genai_request_timestamp=u.ts)
    return calc.total_price.quantize(QUANTUM)


@dataclass
class Truth:
    events: list[AnyEvent] = field(default_factory=list)
    cost: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    usage_cost: dict[str, Decimal] = field(default_factory=dict)  # event_id -> cost
    roots: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, trace) -> root span

    def add_usage(self, u: UsageEvent, cost: Decimal) -> None:
        self.usage_cost[u.event_id] = cost
        keys = [f"tenant/{u.tenant}", f"agent/{u.tenant}/{u.agent}", f"trace/{u.tenant}/{u.trace_id}",
                f"provider/{u.provider}/{u.model}"]  # fmt: skip
        if "user.id" in u.attributes:
            keys.append(f"user/{u.tenant}/{u.attributes['user.id']}")
        if "gen_ai.conversation.id" in u.attributes:
            keys.append(f"conversation/{u.tenant}/{u.attributes['gen_ai.conversation.id']}")
        if u.agent_version:
            keys.append(f"agent_version/{u.tenant}/{u.agent}/{u.agent_version}")
        if u.workflow:
            keys.append(f"workflow/{u.tenant}/{u.workflow}")
        for k in keys:
            self.cost[k] += cost
            self.tokens[k] += u.input_tokens + u.output_tokens
            self.calls[k] += 1


def generate(seed: int, traces: int = 40, t0: datetime | None = None, people: bool = False) -> Truth:
    """Several tenants, agents, versions, workflows and models; cached tokens; nested spans
    (agent root span -> llm child spans carrying usage, tool calls). With ``people``: end users
    and conversations on the events, and traces whose calls come from two agents (their
    events are keyed, so partitioned, apart)."""
    rng = random.Random(seed)
    t0 = t0 or datetime.now(UTC) - timedelta(seconds=30)
    truth = Truth()
    n = 0
    for _ in range(traces):
        tenant = rng.choice(["acme", "globex", "initech"])
        agent = rng.choice(["planner", "coder", "critic"])
        version = rng.choice(["v1", "v2", None])
        workflow = rng.choice(["research", "support", None])
        trace, root = _hex(rng, 32), _hex(rng, 16)
        truth.roots[(tenant, trace)] = root
        common = {"tenant": tenant, "agent": agent, "agent_version": version, "workflow": workflow,
                  "trace_id": trace}  # fmt: skip
        who: dict[str, str] = {}
        helper = agent
        if people:
            who["user.id"] = rng.choice(["u-ann", "u-bob", "u-cyd", "u-dee"])
            if rng.random() < 0.7:
                who["gen_ai.conversation.id"] = f"conv-{rng.randint(1, 6)}"
            helper = rng.choice(["planner", "coder", "critic"])
        for _ in range(rng.randint(1, 6)):
            n += 1
            if people:
                common["agent"] = rng.choice([agent, helper])
            ts = t0 + timedelta(milliseconds=37 * n)
            span = _hex(rng, 16)
            provider, pid, model = rng.choice(MODELS)
            inp = rng.randint(50, 20_000)
            cread = rng.choice([0, inp // 3, inp // 2])
            cwrite = rng.choice([0, 0, (inp - cread) // 4]) if provider == "anthropic" else 0
            out = rng.randint(1, 3000)
            truth.events.append(SpanEvent(event_id=f"sp-{seed}-{n:07d}", ts=ts, span_id=span, parent_span_id=root,
                                          name=f"chat {model}", kind=SpanKind.LLM, start=ts - timedelta(seconds=1),
                                          end=ts, status=SpanStatus.OK, provider=provider, model=model, **common))  # fmt: skip
            u = UsageEvent(event_id=f"us-{seed}-{n:07d}", ts=ts, span_id=span, parent_span_id=root, provider=provider,
                           model=model, input_tokens=inp, output_tokens=out, cache_read_tokens=cread,
                           cache_write_tokens=cwrite, attributes=dict(who), **common)  # fmt: skip
            truth.events.append(u)
            truth.add_usage(u, truth_cost(u, pid))
            if rng.random() < 0.5:
                truth.events.append(ToolCallEvent(event_id=f"tc-{seed}-{n:07d}", ts=ts, span_id=_hex(rng, 16),
                                                  parent_span_id=root, tool="search", args_hash=_hex(rng, 16),
                                                  **common))  # fmt: skip
        common["agent"] = agent
        n += 1
        end = t0 + timedelta(milliseconds=37 * n)
        truth.events.append(SpanEvent(event_id=f"ag-{seed}-{n:07d}", ts=end, span_id=root, name=f"{agent} run",
                                      kind=SpanKind.AGENT, start=t0, end=end, status=SpanStatus.OK, **common))  # fmt: skip
    return truth
