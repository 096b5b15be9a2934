"""The pipeline on the 3-node cluster: worker + sink as supervised processes, agents emitting
through the real client, and the ground truth of what they recorded."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from agentledger import topics
from agentledger.admin import create_topics
from agentledger.collectors import Emitter
from agentledger.demo.supervisor import Child, ProcessGroup
from agentledger.localkafka import free_ports
from agentledger.pricing import PriceBook
from agentledger.warehouse import queries
from agentledger.warehouse.catalog import Catalog

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-haiku-4-5")]


@dataclass
class Truth:
    """What the agents recorded (event ids) and what it costs, priced the way the worker does."""

    ids: set[str] = field(default_factory=set)
    cost: Decimal = Decimal(0)
    max_record_us: float = 0.0


class Pipeline:
    def __init__(self, bootstrap: str, prefix: str, tmp: Path) -> None:
        self.bootstrap, self.prefix, self.tmp = bootstrap, prefix, tmp
        self.warehouse = tmp / "warehouse"
        self.web_port = free_ports(1)[0]
        env = {**os.environ, "AGENTLEDGER_KAFKA_BOOTSTRAP": bootstrap, "AGENTLEDGER_TOPIC_PREFIX": prefix,
               "AGENTLEDGER_HOME": str(tmp / "home"), "AGENTLEDGER_WAREHOUSE_URI": str(self.warehouse)}  # fmt: skip
        self.group = ProcessGroup(tmp / "logs", env)
        self.children: dict[str, Child] = {}
        self.book = PriceBook.load()
        asyncio.run(create_topics(bootstrap, prefix=prefix))

    # -- processes ------------------------------------------------------------------------------

    def start(self, name: str, wait: bool = True) -> None:
        args = {
            "worker": ["worker", "--datadir", str(self.tmp / "worker"), "--web-port", str(self.web_port),
                       "--commit-interval", "0.5", "--session-timeout", "10",
                       "--replication", "3"],  # the cluster requires 2 in-sync replicas
            "sink": ["sink", "--batch-seconds", "1"],
        }[name]  # fmt: skip
        self.children[name] = self.group.start(name, args)
        if name == "worker" and wait:
            self.wait(lambda: self.worker_stats().get("ready") is True, 120, "worker ready")
        if name == "sink" and wait:
            # its start-up check must see the cluster up: on a loaded machine a sink started
            # unawaited was still importing when a test killed every broker, and exited
            log = self.children[name].log
            self.wait(lambda: "sink ready:" in log.read_text(errors="replace"), 120, "sink ready")

    def kill(self, name: str) -> None:
        child = self.children[name]
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(10)
        self.group.children.remove(child)

    def stop(self) -> None:
        self.group.stop()

    def worker_stats(self) -> dict:  # type: ignore[type-arg]
        try:
            return dict(httpx.get(f"http://127.0.0.1:{self.web_port}/stats/", timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return {}

    def rollup_usd(self, scope: str, window: str = "calendar_day") -> Decimal:
        body = httpx.get(
            f"http://127.0.0.1:{self.web_port}/rollups/", params={"scope": scope}, timeout=5
        ).json()
        return Decimal(str(body["windows"][window]["cost_usd"]))

    @staticmethod
    def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

    # -- agents --------------------------------------------------------------------------------

    def emitter(self, tenant: str, agent: str, **kw: object) -> Emitter:
        return Emitter(tenant=tenant, agent=agent, bootstrap=self.bootstrap,
                       topic=self.prefix + topics.EVENTS.name, **kw)  # type: ignore[arg-type]  # fmt: skip

    def run_agents(self, seconds: float, rate_per_s: float, truth: Truth, *, seed: int = 1,
                   during: Callable[[float], None] | None = None, **emitter_kw: object) -> dict[str, int]:  # fmt: skip
        """Record usage from 4 agents at ``rate_per_s`` for ``seconds``; ``during(t)`` runs each tick."""
        from agentledger.events import UsageEvent

        rng = random.Random(seed)
        ems = [self.emitter(t, a, **emitter_kw) for t in ("acme", "globex") for a in ("planner", "writer")]
        start = time.monotonic()
        n = 0
        while (t := time.monotonic() - start) < seconds:
            if during is not None:
                during(t)
            em = ems[n % len(ems)]
            provider, model = MODELS[n % len(MODELS)]
            inp = rng.randint(100, 4000)
            out = rng.randint(10, 900)
            cached = rng.randint(0, inp // 2)
            t0 = time.perf_counter()
            event_id = em.record_usage(provider, model, inp, out, cache_read_tokens=cached)
            truth.max_record_us = max(truth.max_record_us, (time.perf_counter() - t0) * 1e6)
            truth.ids.add(event_id)
            from datetime import UTC, datetime

            ev = UsageEvent(event_id=event_id, ts=datetime.now(UTC), tenant=em.tenant, agent=em.agent,
                            trace_id="1" * 32, span_id="1" * 16, provider=provider, model=model,
                            input_tokens=inp, output_tokens=out, cache_read_tokens=cached)  # fmt: skip
            truth.cost += self.book.price(ev)[0]
            n += 1
            time.sleep(max(0.0, n / rate_per_s - (time.monotonic() - start)))
        stats = {"sent": 0, "dropped": 0, "failed": 0, "queued": 0}
        for em in ems:
            em.flush(120)
            for k, v in em.stats().items():
                stats[k] = stats.get(k, 0) + int(v)
            em.shutdown(5)
        return stats

    # -- the warehouse --------------------------------------------------------------------------

    def warehouse_ids(self) -> tuple[set[str], int, Decimal]:
        """(distinct event ids, raw rows incl. duplicates, total cost after dedupe)."""
        cat = Catalog(str(self.warehouse))
        try:
            ids = {r["event_id"] for r in cat.query("SELECT event_id FROM events")}
            raw = int(cat.query("SELECT count(*) AS n FROM raw_events")[0]["n"])
            cost = sum((Decimal(r["cost_usd"] or 0) for r in queries.costs(cat, group_by=())), Decimal(0))
            return ids, raw, cost
        finally:
            cat.close()

    def wait_warehouse(self, ids: set[str], timeout: float = 180, supervise: bool = False) -> int:
        """Wait until every id is in the warehouse. With ``supervise``, act like a liveness probe:
        restart a worker whose event counter has not moved for 20 s (faust-streaming 0.15.3
        sometimes stops fetching after a restart; docs/scaling.md). Returns the restarts."""
        deadline = time.monotonic() + timeout
        restarts, last, moved_at = 0, -1, time.monotonic()
        while time.monotonic() < deadline:
            if ids <= self.warehouse_ids()[0]:
                return restarts
            if supervise:
                events = int(self.worker_stats().get("counters", {}).get("events", -1))
                if events != last:
                    last, moved_at = events, time.monotonic()
                elif time.monotonic() - moved_at > 20:
                    self.kill("worker")
                    self.start("worker", wait=False)
                    restarts, last, moved_at = restarts + 1, -1, time.monotonic()
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {len(ids)} events in the warehouse")
