"""``agentledger sink``: land priced events, commands and alerts in Parquet."""

from __future__ import annotations

import typer

from agentledger.cli._common import bootstrap, console, loglevel_option, require_topics, settings


def register(app: typer.Typer) -> None:
    app.command("sink")(sink)


def sink(
    root: str = typer.Option(None, help="Warehouse root: a path or a URI (default: settings)."),
    batch_rows: int = typer.Option(250_000, min=1, help="Flush a partition's buffer at this many rows."),
    batch_seconds: float = typer.Option(30.0, min=0.0, help="...or when it is this old."),
    max_seconds: float = typer.Option(None, help="Stop after this many seconds."),
    once: bool = typer.Option(False, "--once", help="Stop when caught up (nothing new for --idle)."),
    idle: float = typer.Option(3.0, help="With --once: seconds without records that mean caught up."),
    group: str = typer.Option(
        "agentledger-warehouse",
        help="Kafka consumer group, after the topic prefix (like the workers' groups).",
    ),
    progress: float = typer.Option(
        30.0, min=0.0, help="Print the group's committed records and lag this often (s); 0: never."
    ),
    loglevel: str = loglevel_option(),
) -> None:
    """Consume the priced events, control commands and alerts; write Parquet durably."""
    import logging

    from agentledger import topics
    from agentledger.cli._ready import assigned_partitions, ready_line, say
    from agentledger.warehouse.sink import SinkConfig, run_sink

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = settings()
    boot = bootstrap(s)
    require_topics(boot, "sink", s)
    read = [s.topic_prefix + t.name for t in (topics.PRICED, topics.CONTROL, topics.ALERTS)]
    group_id = s.topic_prefix + group  # two prefixed deployments on one cluster: two groups
    warehouse = root or s.warehouse_root
    facts = [f"group {group_id}", f"root {warehouse}"]
    config = SinkConfig(
        bootstrap=boot,
        root=warehouse,
        prefix=s.topic_prefix,
        group_id=group_id,
        batch_rows=batch_rows,
        batch_seconds=batch_seconds,
        client_options=s.kafka_client_options(),
        on_ready=lambda tps: say(
            ready_line("sink", boot, s.topic_prefix, *facts, assigned_partitions(tps, read))
        ),
    )
    from agentledger.cli._progress import ProgressReporter

    reporter = None
    if progress and not once:
        reporter = ProgressReporter("sink", boot, group_id, read, s.kafka_client_options(), progress)
        reporter.start()
    stats = run_sink(config, max_seconds=max_seconds, idle_seconds=idle if once else None)
    console.print(
        f"sink: {stats.records} records, {stats.rows} rows in {stats.files} files, "
        f"{stats.rejected} rejected to the DLQ, {stats.seconds:.1f}s"
    )
