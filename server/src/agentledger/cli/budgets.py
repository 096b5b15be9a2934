"""``agentledger budgets``: live spend against limit, per policy and scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import checked_bootstrap, settings

HEADER = ["policy", "scope", "window", "spend", "limit", "unit", "used %", "state", "exhausted at", "updated"]


def register(app: typer.Typer) -> None:
    app.command("budgets")(budgets)


def budgets(
    tenant: str = typer.Option(None, help="Only this tenant's scopes."),
    policy: str = typer.Option(None, help="Only this policy id."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File (csv/json go to stdout without it)."),
    timeout: float = typer.Option(10.0, help="Seconds to read the budgets topic to its end."),
) -> None:
    """Spend against limit for every policy and scope, as the worker last published it on the
    compacted budgets topic (USD at 6 decimals, or tokens)."""
    import asyncio

    from agentledger import topics
    from agentledger.api.kafka import read_compacted
    from agentledger.api.routers.budgets import scope_key_tenant
    from agentledger.cli._output import check_format, emit_rows
    from agentledger.events import BudgetStatus

    check_format(fmt, out)
    s = settings()
    boot = checked_bootstrap("budgets", s)
    found = asyncio.run(
        read_compacted(
            boot,
            topics.name(topics.BUDGETS, s.topic_prefix),
            BudgetStatus.model_validate_json,
            s.kafka_client_options(),
            timeout_s=timeout,
        )
    )
    chosen = [
        b
        for b in found.values()
        if (tenant is None or scope_key_tenant(b.scope_key) == tenant) and policy in (None, b.policy_id)
    ]
    chosen.sort(key=lambda b: (b.policy_id, b.scope_key))
    emit_rows([_row(b) for b in chosen], fmt, out, HEADER)


def _row(b: Any) -> dict[str, Any]:
    used = (b.spend / b.limit * 100).quantize(1) if b.limit else None
    values = [b.policy_id, b.scope_key, b.window.value, b.spend, b.limit, b.unit.value, used,
              b.state.value, b.projected_exhaustion, b.updated_at]  # fmt: skip
    return dict(zip(HEADER, values, strict=True))
