"""``agentledger health`` (the detectors worker) and ``agentledger alerts dispatch``."""

from __future__ import annotations

from pathlib import Path

import typer

from agentledger.cli._common import bootstrap, loglevel_option, require_topics, settings

alerts = typer.Typer(help="Alert delivery: Slack, PagerDuty, signed webhooks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("health")(health)
    app.add_typer(alerts, name="alerts")


def health(
    config: Path | None = typer.Option(
        None, "--config", help="Policy file (alerts/providers/quality/canary)."
    ),
    datadir: Path | None = typer.Option(None, "--datadir", help="Faust data dir (default under home)."),
    loglevel: str = loglevel_option(),
    progress: float = typer.Option(
        30.0, min=0.0, help="Print the group's committed records and lag this often (s); 0: never."
    ),
    start_from: str = typer.Option(
        "latest", "--from", help="First start of the group: `latest` or `earliest` (replay history)."
    ),
    state_flush: float = typer.Option(
        0.2,
        "--state-flush",
        min=0.01,
        help="Write changed detector state this often (s); records are acked after.",
    ),
    replication: int | None = typer.Option(
        None,
        "--replication",
        min=1,
        help="Replication of the state changelog Faust creates (3 on a 3-broker cluster).",
    ),
) -> None:
    """Run the health detectors (quality drift, canaries, provider failover) as a Faust worker.

    Run as many as there are partitions: each holds its partitions' detector state in a
    changelog-backed table, and provider circuits meet on the providers topic."""
    from faust.worker import Worker

    from agentledger import topics
    from agentledger.streams.health.app import build_health_app, preload_objectives
    from agentledger.streams.healthconfig import DETECTOR_SECTIONS, load_health_config

    if start_from not in ("latest", "earliest"):
        raise typer.BadParameter("--from must be `latest` or `earliest`")
    s = settings()
    cfg = load_health_config(config, DETECTOR_SECTIONS)  # no channel secrets needed here
    boot = bootstrap(s)
    require_topics(boot, "health", s)
    data = datadir or (s.home / "health")
    data.mkdir(parents=True, exist_ok=True)
    app = build_health_app(
        cfg,
        boot,
        s.topic_prefix,
        data,
        start_from,
        settings=s,
        state_flush_s=state_flush,
        replication=replication,
    )
    # objectives applied on the topic are in force before the first span is counted; in a
    # thread so this thread's event-loop state is untouched for Faust
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        engine = app.health_engine
        judged = pool.submit(
            asyncio.run, preload_objectives(engine, boot, s.topic_prefix, s.kafka_client_options())
        ).result(timeout=120)
    from agentledger.cli._progress import ProgressReporter, quiet_faust_terminal
    from agentledger.cli._ready import announce_when_consuming, plural, ready_line

    quiet_faust_terminal()
    read = [s.topic_prefix + t.name for t in (topics.EVENTS, topics.PRICED, topics.HEALTH_PROVIDERS)]
    group = f"{s.topic_prefix}agentledger-health"
    announce_when_consuming(
        app,
        read,
        lambda: [
            f"config {config or 'defaults'}",
            plural(judged, "objective", "objectives"),
            f"group {group}",
        ],
        lambda facts: ready_line("health", boot, s.topic_prefix, *facts),
    )
    if progress:
        ProgressReporter("health", boot, group, read, s.kafka_client_options(), progress).start()
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


@alerts.command("dispatch")
def dispatch(
    config: Path = typer.Option(..., "--config", help="Policy file with `alerts:` channels and routes."),
    state: Path | None = typer.Option(None, "--state", help="sqlite state (default under home)."),
    loglevel: str = loglevel_option(),
) -> None:
    """Deliver alert transitions (lifecycle, retries, no duplicates across restarts)."""
    import asyncio
    import logging
    import signal

    from agentledger import topics
    from agentledger.streams.alerts.dispatch import AlertDispatcher
    from agentledger.streams.healthconfig import load_health_config

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = settings()
    cfg = load_health_config(config, ("alerts",)).alerts
    path = state or Path(cfg.state_path or s.home / "alerts" / "dispatch.db")
    topic = s.topic_prefix + topics.ALERTS.name
    boot = bootstrap(s)
    require_topics(boot, "alerts", s)
    from agentledger.cli._ready import plural, ranges, ready_line, say

    def ready(parts: list[int]) -> None:
        channels = plural(len(cfg.channels), "channel", "channels")
        names = f" ({', '.join(c.name for c in cfg.channels)})" if cfg.channels else ""
        say(ready_line("alerts dispatch", boot, s.topic_prefix, f"{channels}{names}", f"state {path}",
                       f"partitions {ranges(parts)}"))  # fmt: skip

    disp = AlertDispatcher(cfg, boot, topic, path, kafka_options=s.kafka_client_options(), on_ready=ready)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await disp.run(stop)

    asyncio.run(main())
