"""``agentledger policies apply FILE.yaml | list | delete ID`` (the compacted policies topic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from agentledger.cli._common import checked_bootstrap, console, settings
from agentledger.events import Policy

policies_app = typer.Typer(
    help="Budgets, trace deadlines, call timeouts: apply, list and delete policies.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(policies_app, name="policies")


@policies_app.command("apply")
def apply(
    file: Path = typer.Argument(..., help="YAML with a `policies:` list (other keys ignored)."),
) -> None:
    """Create or replace every policy in FILE (the worker picks them up within a second)."""
    from agentledger.streams.policyfile import load_policy_file
    from agentledger.streams.policytopic import put_policies

    policies, _ = load_policy_file(file)
    s = settings()
    asyncio.run(
        put_policies(checked_bootstrap("policies", s), s.topic_prefix, policies, **s.kafka_client_options())
    )
    for p in policies:
        console.print(f"applied  {p.policy_id:<24} {_what(p)}")
    if not policies:
        console.print("no policies in the file")


def _what(p: Policy) -> str:
    """What a policy sets: its budget, trace deadline, call timeout."""
    parts = [f"{p.selector.per.value:<13} {p.limit} {p.unit.value} / {p.window.value}"] if p.is_budget else []
    if p.deadline_s is not None:
        parts.append(f"trace deadline {p.deadline_s:g} s")
    if p.call_timeout_s is not None:
        parts.append(f"call timeout {p.call_timeout_s:g} s")
    return "; ".join(parts)


@policies_app.command("list")
def list_() -> None:
    """Print the current policies."""
    from agentledger.streams.policytopic import read_policies

    s = settings()
    found = asyncio.run(
        read_policies(checked_bootstrap("policies", s), s.topic_prefix, **s.kafka_client_options())
    )
    from agentledger.cli._output import print_table

    rows = []
    for pid, p in sorted(found.items()):
        sel = p.selector
        what = " ".join(f"{k}={v}" for k, v in (("tenant", sel.tenant), ("agent", sel.agent),
                        ("version", sel.agent_version), ("workflow", sel.workflow)) if v not in (None, "*"))  # fmt: skip
        soft = ", ".join(f"{t.at:g}: {t.action}" for t in p.thresholds) or "-"
        timing = " ".join(f"{k}={v:g}s" for k, v in (("deadline", p.deadline_s), ("call_timeout", p.call_timeout_s))
                          if v is not None)  # fmt: skip
        rows.append([pid, sel.per.value, what or "*", p.limit if p.is_budget else "-", p.unit.value, p.window.value,
                     soft, str(p.hard_action), timing or "-", "yes" if p.enabled else "no"])  # fmt: skip
    print_table(
        ["policy", "per", "selector", "limit", "unit", "window", "soft", "hard", "timing", "enabled"], rows
    )


@policies_app.command("delete")
def delete(policy_id: str = typer.Argument(...)) -> None:
    """Delete a policy (tombstone); the worker resumes what it enforced."""
    from agentledger.streams.policytopic import delete_policy

    s = settings()
    asyncio.run(
        delete_policy(checked_bootstrap("policies", s), s.topic_prefix, policy_id, **s.kafka_client_options())
    )
    console.print(f"deleted  {policy_id}")
