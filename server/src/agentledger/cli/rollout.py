"""``agentledger rollout start | status | pause | resume | promote | abort`` (the compacted
rollouts topic; the health worker's controller acts on it)."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from typing import Any

import typer

from agentledger.cli._common import checked_bootstrap, console, settings

rollout_app = typer.Typer(
    help="Progressive delivery: a new agent version from 5 % of tasks to all, gated by cost, errors and quality.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")


def _parse_rollout(value: bytes) -> Any:
    from agentledger.rollout import RolloutPolicy

    try:
        return RolloutPolicy.model_validate_json(value)
    except ValueError:
        return None  # not a rollout: the health worker ignores it too


async def _read(bootstrap: str, prefix: str, client: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(rollouts by tenant/agent, route commands by control key)."""
    from agentledger import topics
    from agentledger.compacted import latest, read_to_end
    from agentledger.events import Action, ControlCommand

    rollouts_topic, control_topic = prefix + topics.ROLLOUTS.name, prefix + topics.CONTROL.name
    records = await read_to_end(
        bootstrap, [rollouts_topic, control_topic], client,
        partitions={rollouts_topic: range(topics.ROLLOUTS.partitions), control_topic: range(topics.CONTROL.partitions)},
    )  # fmt: skip
    rollouts: dict[str, Any] = latest((r for r in records if r.topic == rollouts_topic), _parse_rollout)
    routes: dict[str, Any] = {}
    for r in records:
        if r.topic != control_topic or r.value is None:
            continue
        try:
            cmd = ControlCommand.model_validate_json(r.value)
        except ValueError:
            continue
        if cmd.action is Action.ROUTE:
            routes[f"{cmd.scope.tenant}/{cmd.scope.agent}"] = cmd
    return rollouts, routes


def _split(target: str) -> tuple[str, str]:
    tenant, sep, agent = target.partition("/")
    if not sep or not tenant or not agent:
        raise typer.BadParameter(f"expected TENANT/AGENT, got {target!r}")
    return tenant, agent


@rollout_app.command("start")
def start(
    target: str = typer.Argument(..., help="TENANT/AGENT, e.g. acme/writer."),
    baseline: str = typer.Option(..., help="The version serving today."),
    candidate: str = typer.Option(..., help="The new version."),
    steps: str = typer.Option("5,25,50,100", help="Traffic steps in %, rising to 100."),
    min_tasks: int = typer.Option(50, help="Candidate tasks finished at a step before it may advance."),
    min_s: float = typer.Option(60.0, help="Seconds at a step before it may advance."),
    rollout_id: str | None = typer.Option(None, help="Default: AGENT-CANDIDATE."),
) -> None:
    """Start sending a share of TENANT/AGENT's tasks to CANDIDATE.

    The health worker steps it up while no metric is worse, and rolls it back at any step
    when one is."""
    from agentledger import topics
    from agentledger.compacted import publish
    from agentledger.rollout import RolloutPolicy, RolloutStep
    from agentledger.wire import dump

    tenant, agent = _split(target)
    try:
        weights = [float(w) for w in steps.split(",")]
        policy = RolloutPolicy(
            rollout_id=rollout_id or f"{agent}-{candidate}", tenant=tenant, agent=agent, baseline=baseline,
            candidate=candidate, steps=[RolloutStep(weight_pct=w, min_tasks=min_tasks, min_s=min_s) for w in weights],
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc).splitlines()[-1] if str(exc) else repr(exc)) from None
    s = settings()
    asyncio.run(
        publish(checked_bootstrap("rollout", s), s.topic_prefix + topics.ROLLOUTS.name, [(policy.key, dump(policy))],
                s.kafka_client_options())
    )  # fmt: skip
    console.print(
        f"rollout {policy.rollout_id}: {target} {baseline} -> {candidate}, steps "
        + " -> ".join(f"{w:g}%" for w in weights)
    )


@rollout_app.command("status")
def status() -> None:
    """Every rollout and the step in force on the control topic."""
    from agentledger.cli._output import print_table

    s = settings()
    rollouts, routes = asyncio.run(
        _read(checked_bootstrap("rollout", s), s.topic_prefix, s.kafka_client_options())
    )
    rows = []
    for key, p in sorted(rollouts.items()):
        cmd = routes.get(key)
        versions = f"{p.baseline} -> {p.candidate}"
        if cmd is None or cmd.params.rollout_id != p.rollout_id:
            rows.append(
                [key, p.rollout_id, versions, "-", "-", "pending: the health worker has not announced it"]
            )
            continue
        share, step = f"{cmd.params.weight * 100:g}%", str(cmd.params.step + 1)
        rows.append([key, p.rollout_id, versions, share, step, cmd.reason])
    print_table(["agent", "rollout", "versions", "candidate share", "step", "last change"], rows)


def _request(target: str, request: str) -> None:
    from agentledger import topics
    from agentledger.compacted import publish
    from agentledger.rollout import RolloutRequest
    from agentledger.wire import dump

    tenant, agent = _split(target)
    s = settings()
    bootstrap = checked_bootstrap("rollout", s)
    rollouts, _ = asyncio.run(_read(bootstrap, s.topic_prefix, s.kafka_client_options()))
    policy = rollouts.get(f"{tenant}/{agent}")
    if policy is None:
        console.print(f"no rollout for {target}")
        raise typer.Exit(1)
    policy = policy.model_copy(
        update={"request": RolloutRequest(request), "request_id": uuid.uuid4().hex,
                "requested_by": f"cli:{getpass.getuser()}"[:128]}
    )  # fmt: skip
    asyncio.run(
        publish(
            bootstrap,
            s.topic_prefix + topics.ROLLOUTS.name,
            [(policy.key, dump(policy))],
            s.kafka_client_options(),
        )
    )
    console.print(f"asked the controller to {request if request != 'run' else 'resume'} {policy.rollout_id}")


@rollout_app.command("pause")
def pause(target: str = typer.Argument(..., help="TENANT/AGENT.")) -> None:
    """Hold the current step (the share stays as it is)."""
    _request(target, "pause")


@rollout_app.command("resume")
def resume(target: str = typer.Argument(..., help="TENANT/AGENT.")) -> None:
    """Go on from a pause."""
    _request(target, "run")


@rollout_app.command("promote")
def promote(target: str = typer.Argument(..., help="TENANT/AGENT.")) -> None:
    """Every task to the candidate now."""
    _request(target, "promote")


@rollout_app.command("abort")
def abort(target: str = typer.Argument(..., help="TENANT/AGENT.")) -> None:
    """Every task back to the baseline now."""
    _request(target, "abort")
