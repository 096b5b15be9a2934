"""``agentledger worker``: the streams worker (pricing, rollups, budgets, enforcement)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from agentledger.streams.worker.app import WorkerConfig, WorkerHandle

from agentledger.cli._common import bootstrap, loglevel_option, require_topics, settings


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    config: Path = typer.Option(
        None, "--config", help="The policies YAML: its `loops:` section tunes loop detection."
    ),
    prices: Path = typer.Option(
        None, "--prices", help="Price overrides file (YAML/JSON): see docs/streams.md."
    ),
    datadir: Path = typer.Option(None, help="Faust data directory (default: $AGENTLEDGER_HOME/worker)."),
    web_port: int = typer.Option(None, help="Serve /rollups/, /trace/, /stats/ on this port."),
    commit_interval: float = typer.Option(
        1.0, min=0.1, help="Offset commit interval in seconds (the crash overcount bound)."
    ),
    state_flush: float = typer.Option(
        0.2,
        min=0.01,
        help="Write changed rollups to the changelog this often (seconds); records are "
        "committed after their flush, so this adds to the crash overcount bound.",
    ),
    session_timeout: float = typer.Option(
        10.0, min=3.0, help="Kafka group session timeout (restart takeover time)."
    ),
    replication: int = typer.Option(
        None, min=1, help="Replication of the table changelog (3 on a 3-broker cluster)."
    ),
    dedupe_size: int = typer.Option(500_000, min=1, help="event_ids remembered for dedupe."),
    max_record_bytes: int = typer.Option(
        512 * 1024,
        min=24 * 1024,
        help="Largest record the worker writes (keep it under the broker's max.message.bytes); "
        "an event whose priced form is larger goes to the DLQ.",
    ),
    allowed_lateness: float = typer.Option(
        600.0,
        min=0.0,
        help="Seconds an event may be stamped before its arrival and still count at its own time.",
    ),
    max_skew: float = typer.Option(
        300.0,
        min=0.0,
        help="Seconds an event may be stamped after its arrival and still count at its own time.",
    ),
    uvloop: bool = typer.Option(True, help="Run on uvloop."),
    loglevel: str = loglevel_option(),
    progress: float = typer.Option(
        30.0, min=0.0, help="Print the group's committed records and lag this often (s); 0: never."
    ),
) -> None:
    """Run the Faust worker until Ctrl-C / SIGTERM."""
    from agentledger import topics
    from agentledger.streams.policyfile import LoopSettings, load_policy_file
    from agentledger.streams.worker.app import WorkerConfig, run_worker

    s = settings()
    loops = load_policy_file(config)[1] if config else LoopSettings()
    boot = bootstrap(s)
    require_topics(boot, "worker", s)
    cfg = WorkerConfig(
        bootstrap=boot,
        prefix=s.topic_prefix,
        datadir=datadir or s.home / "worker",
        web_port=web_port,
        commit_interval_s=commit_interval,
        state_flush_s=state_flush,
        session_timeout_s=session_timeout,
        prices_path=prices,
        loops=loops,
        dedupe_size=dedupe_size,
        max_record_bytes=max_record_bytes,
        allowed_lateness_s=allowed_lateness,
        max_skew_s=max_skew,
        replication=replication,
        client_options=s.kafka_client_options(),
    )
    from agentledger.cli._progress import ProgressReporter, quiet_faust_terminal

    quiet_faust_terminal()
    if progress:
        group = cfg.prefix + cfg.app_id
        ProgressReporter(
            "worker",
            boot,
            group,
            [cfg.topic(topics.EVENTS), cfg.topic(topics.SCOPE_DELTAS)],
            cfg.client_options,
            progress,
        ).start()
    stats = f"stats on http://127.0.0.1:{web_port}/stats/" if web_port else None
    run_worker(cfg, use_uvloop=uvloop, loglevel=loglevel, on_created=lambda h: _announce(h, cfg, stats))


def _announce(handle: WorkerHandle, cfg: WorkerConfig, stats: str | None) -> None:
    """``worker ready: …`` once the worker holds its partitions and has read the policies,
    commands and budgets topics to their end."""
    import time
    from datetime import UTC, datetime

    from agentledger import topics
    from agentledger.cli._ready import announce_when_consuming, plural, ready_line
    from agentledger.events import Action

    def facts() -> list[str]:
        now = datetime.fromtimestamp(time.time(), UTC)
        proc = handle.processor
        in_force = [
            c for c in proc.enforcer.current.values() if c.action is not Action.RESUME and c.active(now)
        ]
        return [
            plural(len(proc.engine.policies), "policy", "policies"),
            plural(len(in_force), "command in force", "commands in force"),
        ]

    def line(parts: list[str]) -> str:
        return ready_line("worker", cfg.bootstrap, cfg.prefix, *parts, *([stats] if stats else []))

    events = cfg.topic(topics.EVENTS)
    announce_when_consuming(handle.app, [events], facts, line, after=handle.ready)
