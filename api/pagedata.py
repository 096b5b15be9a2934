"""Data for each dashboard page, from the warehouse's named queries and the live views.

Shared by the API's pages and ``agentledger report``. A panel whose data is unavailable
(no warehouse yet, a query missing) is drawn empty with a note, never a failed page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from agentledger.api.warehouse import Row, WarehouseReader
from agentledger.dashboards import figures
from agentledger.dashboards.pages import Page
from agentledger.errors import AgentLedgerError
from agentledger.events import Action, BudgetStatus, ControlCommand, ScopeKind


@dataclass
class Sources:
    """Where pages read from; ``tenant`` None means every tenant (all-tenant keys)."""

    warehouse: WarehouseReader
    tenant: str | None = None
    budgets: Sequence[BudgetStatus] = ()
    commands_live: Sequence[ControlCommand] = ()
    notes: list[str] = field(default_factory=list)

    def rows(self, query: str, **kwargs: Any) -> list[Row]:
        try:
            rows: list[Row] = self.warehouse.rows(query, tenant=self.tenant, **kwargs)
            return rows
        except AgentLedgerError as exc:
            note = f"{query}: {exc}"
            if note not in self.notes:
                self.notes.append(note)
            return []


def entity_agent(entity: Any) -> str | None:
    """The agent in an alert entity such as ``acme/planner@v2:faithfulness``."""
    text = str(entity or "")
    if "/" not in text:
        return None
    return text.split("/", 1)[1].split("@", 1)[0].split(":", 1)[0] or None


def alert_figures(alert: Row) -> dict[str, Any]:
    """An alert's ``figures`` (a JSON string in the warehouse, a dict on the topic)."""
    value = alert.get("figures")
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _page(
    slug: str,
    title: str,
    src: Sources,
    build: Callable[[], list[Any]],
    links: list[tuple[str, str]] | None = None,
) -> Page:
    src.notes.clear()
    figs: list[Any] = build()
    return Page(slug, title, figs, list(src.notes), links or [])


def bucket_of(src: Sources, agent: str | None = None) -> str:
    """The time bucket that fits the data shown (every agent's, or one agent's)."""
    seen = [r for r in src.rows("agents") if agent is None or r.get("agent") == agent]
    firsts = [t for t in (figures.when(r.get("first_ts")) for r in seen) if t is not None]
    lasts = [t for t in (figures.when(r.get("last_ts")) for r in seen) if t is not None]
    bucket: str = figures.bucket_for(min(firsts, default=None), max(lasts, default=None))
    return bucket


def overview(src: Sources) -> Page:
    def build() -> list[Any]:
        bucket = bucket_of(src)
        rows = src.rows("costs", group_by=["agent"], bucket=bucket)
        budgets = [b.model_dump(mode="json") for b in src.budgets]
        return [
            figures.spend_by_agent_over_time(rows, bucket),
            figures.top_agents(rows),
            figures.budget_burn(budgets),
        ]

    return _page("overview", "Overview", src, build)


def agent(src: Sources, name: str | None = None, metric: str = "faithfulness") -> Page:
    def build() -> list[Any]:
        ranked = src.rows("costs", group_by=["agent"])
        ranked.sort(key=lambda r: (-figures.num(r.get("cost_usd")), str(r.get("agent"))))
        links.extend(
            (str(r["agent"]), urlencode({"name": r["agent"]})) for r in ranked[:20] if r.get("agent")
        )
        chosen = name or (str(ranked[0]["agent"]) if ranked else None)
        if chosen is None:
            return [figures.cost_and_tokens([]), figures.quality_with_drift([]), figures.versions_table([])]
        src.notes.append(f"agent: {chosen}")
        bucket = bucket_of(src, chosen)
        series = [r for r in src.rows("costs", group_by=["agent"], bucket=bucket) if r.get("agent") == chosen]
        versions = [
            r for r in src.rows("costs", group_by=["agent", "agent_version"]) if r.get("agent") == chosen
        ]
        alerts = src.rows("alerts")  # newest first
        verdicts: dict[str, str] = {}
        for a in alerts:
            if "canary" in str(a.get("rule")) and entity_agent(a.get("entity")) == chosen:
                version = str(a.get("entity")).split("@", 1)[-1].split(":", 1)[0]
                verdicts.setdefault(version, str(alert_figures(a).get("verdict") or a.get("summary")))
        for v in versions:
            v.setdefault("verdict", verdicts.get(str(v.get("agent_version"))))
        drift = [
            a
            for a in alerts
            if "drift" in str(a.get("rule"))
            and entity_agent(a.get("entity")) == chosen
            and a.get("state") in ("warn", "alert")
        ]
        scores = [
            {**r, "metric": metric}
            for r in src.rows("quality_series", agent=chosen, metric=metric, bucket=bucket)
        ]
        return [
            figures.cost_and_tokens(series, bucket),
            figures.quality_with_drift(scores, drift),
            figures.versions_table(versions),
        ]

    links: list[tuple[str, str]] = []  # filled by build: the other agents, costliest first
    page = _page("agent", "Agent", src, build)
    page.links = links
    return page


def trace(src: Sources, trace_id: str | None = None) -> Page:
    def build() -> list[Any]:
        top = src.rows("top_traces", limit=10)
        links.extend(
            (
                f"{str(t['trace_id'])[:8]}… ${figures.num(t.get('cost_usd')):.4f}",
                urlencode({"trace_id": t["trace_id"]}),
            )
            for t in top
        )
        chosen = trace_id or (str(top[0]["trace_id"]) if top else None)
        if chosen is None:
            return [figures.trace_waterfall([])]
        src.notes.append(f"trace: {chosen}")
        return [figures.trace_waterfall(src.rows("trace_tree", trace_id=chosen))]

    links: list[tuple[str, str]] = []  # filled by build: the costliest traces
    page = _page("trace", "Trace", src, build)
    page.links = links
    return page


def _circuits(commands: Sequence[ControlCommand]) -> dict[str, str]:
    """provider/model -> circuit state, from the live failover/resume commands."""
    out: dict[str, str] = {}
    for c in sorted(commands, key=lambda c: c.ts):
        if c.scope.kind is ScopeKind.PROVIDER:
            state = "open" if c.action is Action.FAILOVER else "closed"
            out[f"{c.scope.provider}/{c.scope.model or '*'}"] = state
    return out


def providers(src: Sources) -> Page:
    """Calls per provider/model from the warehouse; error rate and circuit state from the
    latest ``provider.circuit`` alert of each (the health worker's figures), then the live
    failover/resume commands."""

    def build() -> list[Any]:
        rows = src.rows("provider_health") if src.warehouse.has("provider_health") else []
        if not rows:
            rows = [r for r in src.rows("costs", group_by=["provider", "model"]) if r.get("calls")]
        health: dict[str, dict[str, Any]] = {}
        for a in src.rows("alerts", rule="provider.circuit"):  # newest first
            health.setdefault(str(a.get("entity")), alert_figures(a))
        circuits = _circuits(src.commands_live)
        for r in rows:
            key = f"{r.get('provider')}/{r.get('model')}"
            seen = health.get(key, {})
            r.setdefault("error_rate", seen.get("error_rate"))
            r.setdefault(
                "circuit", circuits.get(key) or seen.get("circuit") or circuits.get(f"{r.get('provider')}/*")
            )
        return [figures.provider_health(rows)]

    return _page("providers", "Providers", src, build)


def timeline(src: Sources) -> Page:
    def build() -> list[Any]:
        commands = src.rows("commands")
        if not commands:
            commands = [
                {
                    "ts": c.ts.isoformat(),
                    "action": c.action.value,
                    "scope_key": c.scope.key,
                    "reason": c.reason,
                    "issued_by": c.issued_by,
                }
                for c in src.commands_live
            ]
        return [figures.alerts_commands_timeline(src.rows("alerts"), commands)]

    return _page("timeline", "Alerts & commands", src, build)


def all_pages(src: Sources) -> list[Page]:
    return [overview(src), agent(src), trace(src), providers(src), timeline(src)]
