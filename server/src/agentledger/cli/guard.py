"""``agentledger guard``: what the enforcement hooks see on the control topic."""

from __future__ import annotations

import typer

from agentledger.cli._common import checked_bootstrap, console, err, settings

guard_app = typer.Typer(help="What agents' Guards see on the control topic.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(guard_app, name="guard")


def _guard(timeout: float):  # type: ignore[no-untyped-def]
    from agentledger.collectors import Guard

    guard = Guard(checked_bootstrap("guard", settings()))
    if not guard.wait_ready(timeout):
        guard.close()
        err.print(f"error: could not read {guard.topic} within {timeout:.0f}s: is the broker healthy?")
        raise typer.Exit(69)
    return guard


@guard_app.command("status")
def status(timeout: float = typer.Option(15.0, help="Seconds to wait for the control topic.")) -> None:
    """List the command in force per scope, lane and authority (kills, throttles, failovers,
    rollbacks, downgrades, resumes): a scope may hold one from each authority (budget, health,
    manual), and the Guard combines them."""
    from datetime import UTC, datetime

    from agentledger.events import parse_control_key

    guard = _guard(timeout)
    try:
        commands = guard.commands
    finally:
        guard.close()
    from agentledger.cli._output import print_table

    now = datetime.now(UTC)
    rows = []
    for key, cmd in sorted(commands.items(), key=lambda kv: (kv[1].scope.key, kv[0])):
        parsed = parse_control_key(key)
        lane, authority = (parsed[0], parsed[1]) if parsed else (cmd.in_lane, cmd.decided_by)
        state = "active" if cmd.active(now) and cmd.action.value != "resume" else "ended"
        rows.append([cmd.scope.key, lane.value, authority.value, cmd.action.value, state, cmd.ts,
                     cmd.issued_by, cmd.reason[:80]])  # fmt: skip
    print_table(["scope", "lane", "authority", "action", "state", "since", "issued by", "reason"], rows)


@guard_app.command("check")
def check(
    tenant: str = typer.Option(..., help="Tenant to check."),
    agent: str = typer.Option(..., help="Agent to check."),
    workflow: str | None = typer.Option(None),
    trace_id: str | None = typer.Option(None),
    agent_version: str | None = typer.Option(None),
    timeout: float = typer.Option(15.0, help="Seconds to wait for the control topic."),
) -> None:
    """Would ``guard.check`` let this agent run now? Exit 0 if yes, 3 if killed, 4 if throttled."""
    from agentledger.collectors import AgentKilled, Throttled

    guard = _guard(timeout)
    try:
        guard.check(tenant=tenant, agent=agent, workflow=workflow, trace_id=trace_id,
                    agent_version=agent_version, wait=False)  # fmt: skip
    except AgentKilled as exc:
        console.print(f"killed ({type(exc).__name__}): {exc}")
        raise typer.Exit(3) from None
    except Throttled as exc:
        console.print(f"throttled: {exc}")
        raise typer.Exit(4) from None
    finally:
        guard.close()
    console.print("ok: nothing applies")
