"""``agentledger demo``: the whole product on a local broker in one or two minutes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agentledger.cli._common import console, settings


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    short: bool = typer.Option(False, "--short", help="A ~1 minute run (the test uses it)."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep everything running after the summary (Ctrl-C stops)."
    ),
    json_out: Path = typer.Option(None, "--json", help="Also write the outcome as JSON here."),
) -> None:
    """Start broker, worker, health worker, sink, alert dispatcher and API; run a multi-agent
    workload where a loop is killed, a budget throttles then kills, a canary is rolled back
    and a provider fails over and back; print a summary and write report.html."""
    from agentledger.demo.run import Demo, summary

    run = Demo(settings(), console, short=short)
    try:
        outcome = run.run()
        summary(console, outcome)
        console.print(f"[bold]report:[/] {outcome.report}")
        print(f"dashboards: {outcome.dashboard_url}")  # plain print: a console would wrap the link
        console.print(
            "  (a one-time sign-in link, valid for 30 minutes"
            + (")" if keep else "; the dashboards are up while --keep runs)")
        )
        if json_out:
            json_out.write_text(json.dumps(outcome.to_json(), indent=2, default=str))
        if keep:
            console.print("everything keeps running; Ctrl-C stops it")
            import time

            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\nstopping ...")
    finally:
        run.stop()
