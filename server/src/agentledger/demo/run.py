"""Run the demo: broker, topics, every layer as a supervised process, the workload, a summary.

Each run gets its own topic prefix and state folder, so a second run starts clean (the
compacted control topic of the first run would otherwise kill the second run's agents).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentledger import topics
from agentledger.demo.config import DemoTiming, demo_config, write_config
from agentledger.demo.receiver import AlertReceiver
from agentledger.demo.supervisor import ProcessGroup
from agentledger.demo.workload import DemoWorkload, Observation, WorkloadResult
from agentledger.localkafka import LocalKafka, free_ports
from agentledger.settings import Settings

STORY_STYLE = {
    "hook": "green",
    "loop": "magenta",
    "budget": "yellow",
    "canary": "cyan",
    "failover": "blue",
    "error": "red",
}


@dataclass
class DemoOutcome:
    """What happened, for the summary and for the test that runs the demo."""

    run_dir: Path
    workload: WorkloadResult
    commands: list[dict[str, Any]] = field(default_factory=list)
    alerts_received: dict[str, int] = field(default_factory=dict)
    alert_payloads: int = 0
    warehouse_events: int = 0
    spend: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    dashboard_url: str = ""

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {
            "run_dir": str(self.run_dir),
            "tasks": w.tasks, "llm_calls": w.llm_calls, "llm_failures": w.llm_failures,
            "throttled": w.throttled, "killed_steps": w.killed_steps,
            "loop_calls_before_kill": w.loop_calls_before_kill,
            "sent": w.sent, "dropped": w.dropped, "failed": w.failed,
            "observations": [o.__dict__ for o in w.observations],
            "framework": w.framework.__dict__ if w.framework is not None else None,
            "commands": self.commands, "alerts_received": self.alerts_received,
            "warehouse_events": self.warehouse_events, "spend": self.spend,
            "report": str(self.report) if self.report else None, "dashboard_url": self.dashboard_url,
        }  # fmt: skip


class Demo:
    def __init__(self, settings: Settings, console: Console, short: bool = False) -> None:
        self.settings = settings
        self.console = console
        self.timing = DemoTiming.for_mode(short)
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = settings.home / "demo" / self.run_id
        self.prefix = f"demo-{self.run_id}."
        self.warehouse = self.run_dir / "warehouse"
        self.group: ProcessGroup | None = None
        self.receiver: AlertReceiver | None = None
        self._started = time.monotonic()

    def step(self, text: str) -> None:
        self.console.print(f"[bold green]▸[/] {text}")

    # -- set up ------------------------------------------------------------------------------

    def broker(self) -> str:
        if self.settings.kafka_bootstrap:
            self.step(f"using your Kafka at {self.settings.kafka_bootstrap}")
            return self.settings.kafka_bootstrap
        local = LocalKafka(self.settings.home / "kafka", self.settings.kafka_version)
        state, alive = local.status()
        if state is not None and alive and len(alive) == len(state.nodes):
            self.step(f"local Kafka already running at {state.bootstrap}")
            return state.bootstrap
        self.step(f"starting a local Kafka {self.settings.kafka_version} broker (KRaft) ...")
        state = local.up(nodes=1, timeout=120)
        self.step(f"Kafka ready at {state.bootstrap} in {state.startup_s:.1f}s")
        return state.bootstrap

    def env(self, bootstrap: str) -> dict[str, str]:
        return {
            **os.environ,
            "AGENTLEDGER_KAFKA_BOOTSTRAP": bootstrap,
            "AGENTLEDGER_TOPIC_PREFIX": self.prefix,
            "AGENTLEDGER_HOME": str(self.run_dir / "home"),
            "AGENTLEDGER_WAREHOUSE_URI": str(self.warehouse),
            "PYTHONUNBUFFERED": "1",
        }

    def cli(self, env: dict[str, str], *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "agentledger", *args], env=env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(
                f"`agentledger {' '.join(args)}` failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}"
            )
        return out.stdout

    def start(self) -> tuple[str, dict[str, str], int, str]:
        from agentledger.admin import create_topics

        bootstrap = self.broker()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(create_topics(bootstrap, prefix=self.prefix, settings=self.settings))
        self.step(f"topics created under the prefix {self.prefix!r}; run folder {self.run_dir}")
        self.receiver = AlertReceiver().start()
        api_port, worker_port = free_ports(2)
        config = write_config(
            self.run_dir / "agentledger.yaml",
            demo_config(self.receiver.url, f"http://127.0.0.1:{api_port}/ui", self.timing),
        )
        env = self.env(bootstrap)
        key = (
            self.cli(env, "keys", "create", "demo-admin", "--scope", "admin")
            .strip()
            .splitlines()[-1]
            .split()[-1]
        )
        self.group = ProcessGroup(self.run_dir / "logs", env)
        data = self.run_dir / "data"
        self.group.start("worker", ["worker", "--config", str(config), "--datadir", str(data / "worker"),
                                    "--web-port", str(worker_port), "--commit-interval", "0.5"])  # fmt: skip
        self.group.start("health", ["health", "--config", str(config), "--datadir", str(data / "health")])
        self.group.start("sink", ["sink", "--batch-seconds", "2"])
        self.group.start(
            "alerts", ["alerts", "dispatch", "--config", str(config), "--state", str(data / "alerts.sqlite")]
        )
        self.group.start("api", ["api", "serve", "--port", str(api_port)])
        self.step(
            "started worker, health, sink, alerts dispatcher and API (logs in "
            + str(self.run_dir / "logs")
            + ")"
        )
        self.cli(env, "policies", "apply", str(config))
        self.step(
            f"policies applied: globex/writer ${self.timing.budget_usd:.2f}/hour (alert 50%, throttle 80%, "
            "kill 100%), acme/summarizer "
            f"${self.timing.framework_budget_usd:.2f}/hour (kill), $50/day per agent, $2,000/month per tenant"
        )
        self.wait_ready(bootstrap, worker_port, api_port)
        return bootstrap, env, api_port, key

    def wait_ready(self, bootstrap: str, worker_port: int, api_port: int, timeout: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        pending = {"worker", "health", "api"}
        while pending and time.monotonic() < deadline:
            assert self.group is not None
            if self.group.dead():
                raise RuntimeError("a process died while starting:\n" + self.group.describe_dead())
            if "worker" in pending:
                try:
                    if httpx.get(f"http://127.0.0.1:{worker_port}/stats/", timeout=2).json().get("ready"):
                        pending.discard("worker")
                except (httpx.HTTPError, ValueError):
                    pass
            if "api" in pending:
                try:
                    if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200:
                        pending.discard("api")
                except httpx.HTTPError:
                    pass
            if "health" in pending and asyncio.run(
                _group_stable(bootstrap, f"{self.prefix}agentledger-health")
            ):
                pending.discard("health")
            time.sleep(0.3)
        if pending:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
        self.step(f"every process is ready ({time.monotonic() - self._started:.0f}s since start)")

    # -- run -----------------------------------------------------------------------------------

    def say(self, obs: Observation) -> None:
        style = STORY_STYLE.get(obs.story, "white")
        self.console.print(
            f"  [dim][{int(obs.at_s) // 60:02d}:{obs.at_s % 60:04.1f}][/] [{style}]{obs.story:<8}[/] {obs.text}"
        )

    def run(self) -> DemoOutcome:
        bootstrap, env, api_port, key = self.start()
        t = self.timing
        self.step(
            f"workload: planner → researcher → writer for acme and globex, and acme's summarizer "
            f"(a Pydantic AI agent, al.instrument()), {t.duration_s:.0f}s on the clock below"
        )
        workload = DemoWorkload(
            bootstrap, self.prefix + topics.EVENTS.name, self.prefix + topics.CONTROL.name, t, self.say
        )
        result = workload.run()
        self.step(f"workload done: {result.tasks} tasks, {result.sent} events sent, {result.dropped} dropped")
        outcome = DemoOutcome(self.run_dir, result, dashboard_url=self.dashboard_link(env, api_port, key))
        self.collect(outcome, result)
        outcome.report = self.run_dir / "report.html"
        self.cli(env, "report", "--out", str(outcome.report), "--root", str(self.warehouse))
        (self.run_dir / "outcome.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
        return outcome

    def dashboard_link(self, env: dict[str, str], api_port: int, key: str) -> str:
        """A one-time sign-in link (30 minutes) for the demo's admin key: the key itself is
        never printed nor written to outcome.json."""
        from agentledger.api.keys import split_token

        parts = split_token(key)
        if parts is None:
            raise RuntimeError("`agentledger keys create` printed no key")
        out = self.cli(env, "ui", "link", parts[0], "--ttl", "1800", "--url", f"http://127.0.0.1:{api_port}")
        return out.strip().splitlines()[-1]

    def collect(self, outcome: DemoOutcome, result: WorkloadResult) -> None:
        from agentledger.warehouse import queries
        from agentledger.warehouse.catalog import Catalog

        deadline = time.monotonic() + 60
        cat = Catalog(str(self.warehouse))
        while time.monotonic() < deadline and queries.event_count(cat) < result.sent:
            time.sleep(1)  # the sink flushes every 2 s
        time.sleep(3)  # let the last commands and alerts land too
        outcome.warehouse_events = queries.event_count(cat)
        outcome.spend = queries.costs(cat, group_by=("tenant", "agent"))
        outcome.commands = queries.command_latency(cat)
        assert self.receiver is not None
        outcome.alerts_received = self.receiver.by_channel()
        outcome.alert_payloads = len(self.receiver.received)

    def stop(self) -> None:
        if self.group is not None:
            for line in self.group.stop():
                self.console.print(f"  [dim]{line}[/]")
        if self.receiver is not None:
            self.receiver.stop()


async def _group_stable(bootstrap: str, group: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
        for resp in described:
            for g in getattr(resp, "groups", []):
                if g[1] == group and g[2] == "Stable":
                    return True
        return False
    except Exception:  # noqa: BLE001 - "not yet" is the only answer that matters here
        return False
    finally:
        await admin.close()


def summary(console: Console, outcome: DemoOutcome) -> None:
    spend = Table(title="spend per tenant and agent (warehouse, deduplicated)")
    for col in ("tenant", "agent", "calls", "cost (USD)"):
        spend.add_column(col, justify="right" if col in ("calls", "cost (USD)") else "left")
    for row in outcome.spend:
        spend.add_row(str(row["tenant"]), str(row["agent"]), str(row["calls"]), f"{row['cost_usd']:.4f}")
    console.print(spend)
    cmds = Table(title="commands issued (latency: from the event that caused it to the command)")
    for col in ("action", "scope", "reason", "latency (ms)"):
        cmds.add_column(col)
    for c in outcome.commands:
        lat = "" if c.get("latency_ms") is None else f"{c['latency_ms']:.0f}"
        cmds.add_row(str(c["action"]), str(c["scope_key"]), str(c.get("reason") or "")[:60], lat)
    console.print(cmds)
    w = outcome.workload
    facts = Table(title="what the agents saw", show_header=False)
    facts.add_row("tasks run", str(w.tasks))
    facts.add_row("LLM calls (failed during the outage)", f"{w.llm_calls} ({w.llm_failures})")
    facts.add_row("steps throttled / refused by a kill", f"{w.throttled} / {w.killed_steps}")
    facts.add_row("runaway loop killed after", f"{w.loop_calls_before_kill} identical calls")
    fw = w.framework
    if fw is not None:
        facts.add_row(
            "acme/summarizer (Pydantic AI): runs / answered / refused by its kill",
            f"{fw.runs} / {fw.answered} / {fw.refused} ({fw.served} requests served, "
            f"{fw.served - (fw.served_at_kill or fw.served)} after the kill)",
        )
    facts.add_row("events sent / dropped by the client", f"{w.sent} / {w.dropped}")
    facts.add_row("events in the warehouse", str(outcome.warehouse_events))
    facts.add_row(
        "alerts delivered to the local receiver",
        ", ".join(f"{k}: {v}" for k, v in sorted(outcome.alerts_received.items())) or "none",
    )
    console.print(facts)
