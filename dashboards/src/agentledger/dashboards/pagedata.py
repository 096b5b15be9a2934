"""Each dashboard page assembled: its data from the warehouse's named queries (typed calls
through a ``WarehouseReader``) and the live views, drawn by ``figures`` into a ``Page``.

Shared by the API's ``/ui`` pages (which add routing and auth only) and ``agentledger
report``. A panel whose data is unavailable (no warehouse yet) is drawn empty with a note,
never a failed page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any, TypedDict
from urllib.parse import urlencode

import orjson

from agentledger.dashboards import figures, forecast
from agentledger.dashboards.pages import Cell, Control, Page, Table
from agentledger.errors import AgentLedgerError
from agentledger.events import Action, BudgetStatus, ControlCommand, ObjectivePolicy, ScopeKind
from agentledger.warehouse import queries as q
from agentledger.warehouse.reader import P, Query, Row, WarehouseReader

RANGES: dict[str, tuple[str, timedelta | None]] = {
    "run": ("whole run (all data)", None),
    "15m": ("last 15 min", timedelta(minutes=15)),
    "1h": ("last hour", timedelta(hours=1)),
    "24h": ("last 24 h", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "custom": ("custom (from / to)", None),
}
"""The time ranges every page offers (``run``, the default, is all the data)."""


@dataclass
class View:
    """What a page shows: a time range and filters, all from the URL (so a view can be
    shared). ``start``/``end`` (UTC) count for ``range=custom`` only; ``version`` is the
    agent version; ``user`` and ``conversation`` keep the traces whose events name them in
    their attributes (``user.id``, ``gen_ai.conversation.id``)."""

    range: str = "run"
    start: datetime | None = None
    end: datetime | None = None
    agent: str | None = None
    version: str | None = None
    model: str | None = None
    tenant: str | None = None  # asked for by an all-tenant key (a bound key's tenant is fixed)
    user: str | None = None
    conversation: str | None = None

    def window(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        """(start inclusive, end exclusive) on event time; (None, None) for the whole run."""
        if self.range == "custom":
            return self.start, self.end
        delta = RANGES.get(self.range, ("", None))[1]
        if delta is None:
            return None, None
        end = now or datetime.now(UTC)
        return end - delta, end

    def query(self, **extra: str | None) -> str:
        """The view as a URL query string (defaults left out), plus ``extra``."""
        values: dict[str, str | None] = {
            "range": None if self.range == "run" else self.range,
            "start": _iso(self.start) if self.range == "custom" else None,
            "end": _iso(self.end) if self.range == "custom" else None,
            "agent": self.agent,
            "version": self.version,
            "model": self.model,
            "tenant": self.tenant,
            "user": self.user,
            "conversation": self.conversation,
            **extra,
        }
        return urlencode({k: v for k, v in values.items() if v})


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


class Scope(TypedDict):
    """The view's window and filters, as keyword arguments of the named queries."""

    start: datetime | None
    end: datetime | None
    agent: str | None
    agent_version: str | None
    model: str | None
    user: str | None
    conversation: str | None


@dataclass
class Sources:
    """Where pages read from; ``tenant`` None means every tenant (all-tenant keys);
    ``admin`` when the key sees every tenant (the view form then offers a tenant);
    ``now`` fixes the clock of the relative ranges (tests)."""

    warehouse: WarehouseReader
    tenant: str | None = None
    budgets: Sequence[BudgetStatus] = ()
    commands_live: Sequence[ControlCommand] = ()
    notes: list[str] = field(default_factory=list)
    view: View = field(default_factory=View)
    admin: bool = False
    now: datetime | None = None
    objectives: Sequence[ObjectivePolicy] = ()
    """The objectives in force (the API's view of the objectives topic), for the SLO panel."""

    def scope(self, agent: bool = True) -> Scope:
        """The view's window and filters as named-query arguments (``agent=False`` when the
        page chooses its own agent)."""
        start, end = self.view.window(self.now)
        return {
            "start": start,
            "end": end,
            "agent": self.view.agent if agent else None,
            "agent_version": self.view.version,
            "model": self.view.model,
            "user": self.view.user,
            "conversation": self.view.conversation,
        }

    def rows(self, query: Query[P], /, *args: P.args, **kwargs: P.kwargs) -> list[Row]:
        """``query`` over the view's tenant (set here, never by the caller); a query that
        fails becomes a note on the page and no rows."""
        if "tenant" in kwargs:
            raise TypeError("Sources.rows sets the tenant itself")
        kwargs["tenant"] = self.tenant
        try:
            return self.warehouse.rows(query, *args, **kwargs)
        except AgentLedgerError as exc:
            note = f"{query.__name__}: {exc}"
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
    keep: dict[str, str | None] | None = None,
) -> Page:
    """Build a page with the view form on top; ``keep``: the page's own URL parameters
    (they ride along in the form, and the nav leaves them out)."""
    src.notes.clear()
    figs: list[Any] = build()
    page = Page(slug, title, figs, list(src.notes), links or [], controls(src, keep), query=src.view.query())
    _describe_view(src, page)
    return page


def _describe_view(src: Sources, page: Page) -> None:
    start, end = src.view.window(src.now)
    if start is not None or end is not None:
        page.notes.insert(0, f"from {_iso(start) or 'the start'} to {_iso(end) or 'now'} UTC")


def controls(src: Sources, keep: dict[str, str | None] | None = None) -> list[Control]:
    """The view form: range, from/to, then the filters the warehouse has columns for, each a
    list of the values seen (any tenant the caller may read)."""
    v = src.view
    seen = src.rows(q.agents)
    agents = sorted({str(r["agent"]) for r in seen if r.get("agent")})
    versions = sorted({str(x) for r in seen for x in (r.get("versions") or [])})
    models = sorted({str(r["model"]) for r in src.rows(q.costs, group_by=["model"]) if r.get("model")})

    def pick(name: str, label: str, value: str | None, values: list[str]) -> Control:
        if value and value not in values:
            values = [*values, value]
        return Control(name, label, value or "", [("", "all"), *((x, x) for x in values)])

    out = [
        Control("range", "time range", v.range, [(k, t) for k, (t, _) in RANGES.items()]),
        Control("start", "from (UTC)", _iso(v.start) or "", kind="datetime-local"),
        Control("end", "to (UTC)", _iso(v.end) or "", kind="datetime-local"),
    ]
    if src.admin:  # every tenant, whichever one the view narrows to
        try:
            everyone = src.warehouse.rows(q.agents)
        except AgentLedgerError:
            everyone = seen
        tenants = sorted({str(r["tenant"]) for r in everyone if r.get("tenant")})
        out.append(pick("tenant", "tenant", v.tenant, tenants))
    out += [
        pick("agent", "agent", v.agent, agents),
        pick("version", "version", v.version, versions),
        pick("model", "model", v.model, models),
        Control("user", "user", v.user or ""),
        Control("conversation", "conversation", v.conversation or ""),
    ]
    out += [Control(k, k, val, kind="hidden") for k, val in (keep or {}).items() if val]
    return out


def bucket_of(src: Sources, agent: str | None = None) -> str:
    """The time bucket that fits the data shown (every agent's, or one agent's), inside the
    view's range: a 100-second run in seconds, a week in hours."""
    scope = src.scope(agent=agent is None)
    seen = [r for r in src.rows(q.agents, **scope) if agent is None or r.get("agent") == agent]
    firsts = [t for t in (figures.when(r.get("first_ts")) for r in seen) if t is not None]
    lasts = [t for t in (figures.when(r.get("last_ts")) for r in seen) if t is not None]
    bucket: str = figures.bucket_for(min(firsts, default=None), max(lasts, default=None))
    return bucket


def overview(src: Sources) -> Page:
    def build() -> list[Any]:
        bucket = bucket_of(src)
        rows = src.rows(q.costs, group_by=["agent"], bucket=bucket, **src.scope())
        budgets = [b.model_dump(mode="json") for b in src.budgets]
        if budgets:
            tables.append(_forecast_table(src, budgets))
        return [
            figures.spend_by_agent_over_time(rows, bucket),
            figures.top_agents(rows),
            figures.budget_burn(budgets),
        ]

    tables: list[Table] = []
    page = _page("overview", "Overview", src, build)
    page.tables = tables
    return page


def _forecast_table(src: Sources, budgets: list[Row]) -> Table:
    """When each live budget runs out at its scope's spend rate of the last hour (event
    time), if before its window resets; a budget that would not run out is left out."""
    now = src.now or datetime.now(UTC)
    recent = src.rows(
        q.costs,
        group_by=["tenant", "agent", "agent_version", "workflow"],
        start=now - timedelta(hours=1),
        end=now,
    )
    table = Table(
        "Budget run-out forecast",
        ["forecast", "used", "last hour's rate", "window resets"],
        empty="no budget runs out before its window resets at the last hour's rate",
    )
    for f, sentence in forecast.forecasts(budgets, recent, now):
        unit = "$" if f.unit == "usd" else ""
        per = f"{unit}{f.rate_per_hour:,.2f}/h" if f.unit == "usd" else f"{f.rate_per_hour:,.0f} tokens/h"
        table.rows.append(
            [
                Cell(sentence, full=f"{f.policy_id} · {f.scope_key}", wrap=True),
                Cell(f"{unit}{f.spend:,.2f} of {unit}{f.limit:,.2f}", number=True),
                Cell(per, number=True),
                Cell(f.resets.astimezone(UTC).strftime("%b %d %H:%M UTC")),
            ]
        )
        table.bad.add(len(table.rows) - 1)
    return table


def agent(src: Sources, name: str | None = None, metric: str = "faithfulness") -> Page:
    def build() -> list[Any]:
        scope = src.scope(agent=False)
        ranked = src.rows(q.costs, group_by=["agent"], **scope)
        ranked.sort(key=lambda r: (-figures.num(r.get("cost_usd")), str(r.get("agent"))))
        links.extend(
            (str(r["agent"]), src.view.query(name=str(r["agent"]))) for r in ranked[:20] if r.get("agent")
        )
        chosen = name or src.view.agent or (str(ranked[0]["agent"]) if ranked else None)
        if chosen is None:
            return [figures.cost_and_tokens([]), figures.quality_with_drift([]), figures.versions_table([])]
        src.notes.append(f"agent: {chosen}")
        bucket = bucket_of(src, chosen)
        series = src.rows(q.costs, group_by=["agent"], bucket=bucket, **(scope | {"agent": chosen}))
        versions = src.rows(q.costs, group_by=["agent", "agent_version"], **(scope | {"agent": chosen}))
        alerts = src.rows(q.alerts, start=scope["start"], end=scope["end"])  # newest first
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
            for r in src.rows(
                q.quality_series,
                agent=chosen,
                metric=metric,
                bucket=bucket,
                start=scope["start"],
                end=scope["end"],
                user=scope["user"],
                conversation=scope["conversation"],
            )
            if src.view.version is None or r.get("agent_version") == src.view.version
        ]
        canaries = [
            a
            for a in alerts
            if str(a.get("rule")) == "canary.verdict" and entity_agent(a.get("entity")) == chosen
        ]
        tables.append(_canary_table(src, chosen, metric, scores, canaries))
        return [
            figures.cost_and_tokens(series, bucket),
            figures.quality_with_drift(scores, drift),
            figures.versions_table(versions),
            figures.slo_attainment(slo_rows(src, chosen), "no objective applies to this agent"),
        ]

    links: list[tuple[str, str]] = []  # filled by build: the other agents, costliest first
    tables: list[Table] = []
    page = _page("agent", "Agent", src, build, keep={"name": name, "metric": metric})
    page.links, page.tables = links, tables
    return page


def _canary_table(
    src: Sources, agent_name: str, metric: str, scores: list[Row], canaries: list[Row]
) -> Table:
    """Each version of the agent side by side: tasks (traces), cost per task and per
    successful task, mean quality, and the canary's latest verdict on it, when it came and
    why, with the rollback command it issued (from the canary alerts and commands)."""
    scope = src.scope(agent=False)
    tasks = [
        r
        for r in src.rows(
            q.cost_per_successful_task, start=scope["start"], end=scope["end"], agent=agent_name
        )
        if r.get("agent") == agent_name
    ]
    quality: dict[str, list[float]] = {}  # version -> [sum of scores, count]
    for r in scores:
        n = figures.num(r.get("n"))
        acc = quality.setdefault(str(r.get("agent_version")), [0.0, 0.0])
        acc[0] += figures.num(r.get("score")) * n
        acc[1] += n
    verdicts: dict[str, Row] = {}
    for a in canaries:  # newest first: the first seen is the latest verdict
        verdicts.setdefault(str(a.get("entity")).split("@", 1)[-1].split(":", 1)[0], a)
    rollbacks = src.rows(
        q.commands, action="rollback", agent=agent_name, start=scope["start"], end=scope["end"]
    )
    versions = sorted({str(r.get("agent_version")) for r in tasks} | set(verdicts))
    table = Table(
        f"Canary comparison: {agent_name}",
        [
            "version",
            "tasks",
            "cost per task",
            "cost per successful task",
            metric,
            "canary verdict",
            "when",
            "why",
        ],
        empty="no version of this agent in this view",
    )
    for version in versions:
        t = next((r for r in tasks if str(r.get("agent_version")) == version), {})
        n_tasks = int(figures.num(t.get("tasks")))
        per_task = figures.num(t.get("cost_usd")) / n_tasks if n_tasks else None
        q_sum, q_n = quality.get(version, [0.0, 0.0])
        v = verdicts.get(version, {})
        verdict = str(alert_figures(v).get("verdict") or "") if v else ""
        why = str(v.get("summary") or "")
        rollback = next(
            (c for c in rollbacks if str(v.get("command_id") or "") == str(c.get("command_id"))), None
        )
        if rollback is not None:
            why += f" · rollback issued {figures.label(rollback.get('ts'))[:19]}"
        if verdict == "rollback":
            table.bad.add(len(table.rows))
        table.rows.append(
            [
                Cell(version),
                Cell(str(n_tasks), number=True),
                Cell("" if per_task is None else f"${per_task:.5f}", number=True),
                Cell(
                    "" if t.get("cost_per_success_usd") is None else _money(t.get("cost_per_success_usd")),
                    number=True,
                ),
                Cell(f"{q_sum / q_n:.3f}" if q_n else "", number=True),
                Cell(verdict),
                Cell(figures.label(v.get("ts"))[:19] if v else ""),
                Cell(why, wrap=True),
            ]
        )
    return table


def _short(text: Any, max_len: int = 36) -> Cell:
    """A long id or scope key as ``head…tail``, whole on hover."""
    whole = str(text or "")
    if len(whole) <= max_len:
        return Cell(whole)
    head = (max_len - 1) * 2 // 3
    return Cell(whole[:head] + "…" + whole[len(whole) - (max_len - 1 - head) :], full=whole)


def _money(value: Any) -> str:
    return f"${figures.num(value):.5f}"


def _tokens(r: Row) -> str:
    """in/out tokens, with cached reads and reasoning apart: ``1200 in (300 cached) · 80 out (20 reasoning)``."""
    text = f"{int(figures.num(r.get('input_tokens')))} in"
    if figures.num(r.get("cache_read_tokens")):
        text += f" ({int(figures.num(r.get('cache_read_tokens')))} cached)"
    text += f" · {int(figures.num(r.get('output_tokens')))} out"
    if figures.num(r.get("reasoning_tokens")):
        text += f" ({int(figures.num(r.get('reasoning_tokens')))} reasoning)"
    return text


def _span_table(spans: list[Row]) -> Table:
    rows, bad = [], set()
    for i, s in enumerate(spans):
        name = figures.label(
            s.get("name") or (f"tool {s['tool']}" if s.get("tool") else s.get("kind")), "event"
        )
        status = str(s.get("status") or "")
        if status == "error":
            bad.add(i)
            status = f"error {s.get('error_type') or ''}".strip()
        model = "/".join(str(s[k]) for k in ("provider", "model") if s.get(k))
        agent_name = str(s.get("agent") or "")
        rows.append(
            [
                Cell(name, indent=int(s.get("depth") or 0)),
                Cell(agent_name, f"agent?{urlencode({'name': agent_name})}" if agent_name else None),
                Cell(model),
                Cell(_tokens(s) if figures.num(s.get("calls")) else ""),
                Cell(_money(s.get("direct_cost_usd")), number=True),
                Cell(_money(s.get("inclusive_cost_usd")), number=True),
                Cell(f"{figures.num(s.get('latency_ms')):.0f} ms", number=True),
                Cell(status),
            ]
        )
    cols = ["span", "agent", "model", "tokens", "direct", "inclusive", "latency", "status"]
    return Table("Span tree", cols, rows, bad=bad)


def _commands_table(commands: list[Row], title: str = "Commands on this trace") -> Table:
    rows = [
        [
            Cell(figures.label(c.get("ts"))[:19]),
            Cell(str(c.get("action") or "")),
            _short(c.get("scope_key")),
            Cell(str(c.get("issued_by") or "")),
            Cell(str(c.get("reason") or ""), wrap=True),
        ]
        for c in commands
    ]
    return Table(title, ["time", "action", "scope", "issued by", "reason"], rows)


def trace(src: Sources, trace_id: str | None = None) -> Page:
    def build() -> list[Any]:
        top = src.rows(q.top_traces, limit=10, **src.scope())
        links.extend(
            (
                f"{str(t['trace_id'])[:8]}… ${figures.num(t.get('cost_usd')):.4f}",
                src.view.query(trace_id=str(t["trace_id"])),
            )
            for t in top
        )
        chosen = trace_id or (str(top[0]["trace_id"]) if top else None)
        if chosen is None:
            return [figures.trace_waterfall([])]
        src.notes.append(f"trace: {chosen}")
        spans = src.rows(q.trace_spans, trace_id=chosen)
        tables.append(_span_table(spans))
        tables.append(_commands_table(src.rows(q.commands, trace_id=chosen)))
        return [figures.trace_waterfall(spans)]

    links: list[tuple[str, str]] = []  # filled by build: the costliest traces
    tables: list[Table] = []
    page = _page("trace", "Trace", src, build, keep={"trace_id": trace_id})
    page.links, page.tables = links, tables
    return page


TRACE_SORTS = ("cost", "duration", "errors", "agent", "start")


def traces(
    src: Sources,
    search: str | None = None,
    status: str | None = None,
    min_cost_usd: Decimal | None = None,
    sort: str = "cost",
) -> Page:
    """Every trace of the view, searchable (id, agent, status, kill reason) and sortable."""

    def build() -> list[Any]:
        rows = src.rows(
            q.traces,
            search=search,
            status=status,
            min_cost_usd=min_cost_usd,
            sort=sort,
            limit=200,
            **src.scope(),
        )
        keep = {
            "q": search,
            "status": status,
            "min_cost": None if min_cost_usd is None else str(min_cost_usd),
        }
        sorts = {
            "cost": "cost",
            "duration": "duration",
            "errors": "errors",
            "agent": "agent",
            "start": "start",
        }
        table = Table(
            f"{len(rows)} traces, by {sort}",
            [
                "trace",
                "start",
                "agent",
                "agents",
                "cost",
                "duration",
                "calls",
                "tokens",
                "errors",
                "status",
                "user",
                "conversation",
            ],
            sort_links={k: "traces?" + src.view.query(**keep, sort=v) for k, v in sorts.items()},
        )
        for i, r in enumerate(rows):
            tid = str(r.get("trace_id"))
            state = str(r.get("status") or "")
            if state != "ok":
                table.bad.add(i)
            if r.get("kill_reason"):
                state += f" ({r['kill_reason']})"
            table.rows.append(
                [
                    Cell(tid[:12] + "…", "trace?" + src.view.query(trace_id=tid)),
                    Cell(figures.label(r.get("start"))[:19]),
                    _short(r.get("root_agent"), 24),
                    _short(", ".join(str(a) for a in r.get("agents") or []), 32),
                    Cell(_money(r.get("cost_usd")), number=True),
                    Cell(f"{figures.num(r.get('duration_ms')):.0f} ms", number=True),
                    Cell(str(r.get("calls") or 0), number=True),
                    Cell(str(r.get("tokens") or 0), number=True),
                    Cell(str(r.get("errors") or 0), number=True),
                    Cell(state),
                    _short(", ".join(str(u) for u in r.get("users") or []), 24),
                    _short(", ".join(str(c) for c in r.get("conversations") or []), 24),
                ]
            )
        tables.append(table)
        return []

    tables: list[Table] = []
    page = _page("traces", "Traces", src, build)
    page.controls[3:3] = [
        Control("q", "search (id, agent, user, conversation, status)", search or ""),
        Control(
            "status", "status", status or "", [("", "any"), *((s, s) for s in ("ok", "error", "killed"))]
        ),
        Control("min_cost", "min cost $", "" if min_cost_usd is None else str(min_cost_usd)),
        Control("sort", "sort", sort, [(s, s) for s in TRACE_SORTS]),
    ]
    page.tables = tables
    return page


def _circuits(commands: Sequence[ControlCommand], tenant: str | None = None) -> dict[str, str]:
    """provider/model -> circuit state as the view's Guards see it, from the live failover and
    resume commands: open while the global circuit, or (in one tenant's view) that tenant's
    own failover, is open. A tenant's resume ends only its own failover, as in the Guard; an
    all-tenant view shows the global circuits only."""
    latest: dict[tuple[str | None, str], bool] = {}  # (tenant or None, provider/model) -> open
    for c in sorted(commands, key=lambda c: c.ts):
        s = c.scope
        if s.kind is ScopeKind.PROVIDER and s.tenant in (None, tenant):
            latest[(s.tenant, f"{s.provider}/{s.model or '*'}")] = c.action is Action.FAILOVER
    out: dict[str, str] = {}
    for (_, key), is_open in latest.items():
        out[key] = "open" if is_open or out.get(key) == "open" else "closed"
    return out


def slo_rows(src: Sources, agent_name: str) -> list[Row]:
    """Daily attainment and error budget left of each objective kept per agent that selects
    ``agent_name`` (the ``slo_attainment`` named query), over the view's range; a note per
    objective with the whole range's figures. An objective that selects by provider, model,
    version or workflow is named in a note and not drawn (the query counts per agent)."""
    scope = src.scope(agent=False)
    out: list[Row] = []
    for obj in sorted(src.objectives, key=lambda o: o.objective_id):
        sel = obj.selector
        if (
            not obj.enabled
            or sel.per not in ("agent", "agent_version")
            or not fnmatchcase(agent_name, sel.agent)
        ):
            continue
        if src.tenant is not None and not fnmatchcase(src.tenant, sel.tenant):
            continue
        if any(v != "*" for v in (sel.agent_version, sel.workflow, sel.provider, sel.model)):
            src.notes.append(
                f"objective {obj.objective_id}: selects by version, workflow, provider or model; not drawn"
            )
            continue
        days = [
            {**r, "objective": obj.objective_id, "target": obj.target}
            for r in src.rows(
                q.slo_attainment,
                obj.target,
                obj.threshold_ms,
                start=scope["start"],
                end=scope["end"],
                agent=agent_name,
            )
            if fnmatchcase(str(r.get("tenant")), sel.tenant)
        ]
        calls = sum(figures.num(r.get("calls")) for r in days)
        if calls:
            good = sum(figures.num(r.get("good")) for r in days)
            left = 1 - (calls - good) / (calls * (1 - obj.target))
            bound = f" within {obj.threshold_ms:g} ms" if obj.threshold_ms else " not in error"
            src.notes.append(
                f"objective {obj.objective_id} ({obj.target:.4g}{bound}): {good / calls:.2%} good "
                f"over {calls:.0f} calls in range, {left:.0%} of the error budget left"
            )
        out.extend(days)
    return out


def providers(src: Sources) -> Page:
    """Calls per provider/model from the warehouse; error rate and circuit state from the
    latest ``provider.circuit`` alert of each (the health worker's figures), then the live
    failover/resume commands."""

    def build() -> list[Any]:
        scope = src.scope()
        rows = src.rows(q.provider_health, **scope)
        if not rows:
            rows = [r for r in src.rows(q.costs, group_by=["provider", "model"], **scope) if r.get("calls")]
        health: dict[str, dict[str, Any]] = {}
        for a in src.rows(q.alerts, rule="provider.circuit", start=scope["start"], end=scope["end"]):
            health.setdefault(str(a.get("entity")), alert_figures(a))
        circuits = _circuits(src.commands_live, src.tenant)
        for r in rows:
            key = f"{r.get('provider')}/{r.get('model')}"
            seen = health.get(key, {})
            r.setdefault("error_rate", seen.get("error_rate"))
            r.setdefault(
                "circuit", circuits.get(key) or seen.get("circuit") or circuits.get(f"{r.get('provider')}/*")
            )
        bucket = bucket_of(src)
        latency = src.rows(q.latency_percentiles, start=scope["start"], end=scope["end"], bucket=bucket)
        return [figures.provider_health(rows), figures.latency_percentiles(latency, bucket)]

    return _page("providers", "Providers", src, build)


def timeline(src: Sources) -> Page:
    """Decisions: commands and alerts on one timeline and in one table, each with its scope,
    reason, latency from its cause and a link to the trace that caused it."""

    def build() -> list[Any]:
        scope = src.scope()
        start, end, agent_name = scope["start"], scope["end"], scope["agent"]
        rows = src.rows(
            q.decisions,
            start=start,
            end=end,
            agent=agent_name,
            user=scope["user"],
            conversation=scope["conversation"],
        )
        commands = [r | {"action": r.get("what")} for r in rows if r.get("kind") == "command"]
        alerts = [
            r
            | {
                "state": r.get("what"),
                "rule": r.get("scope_kind"),
                "summary": r.get("reason"),
                "entity": r.get("scope_key"),
            }
            for r in rows
            if r.get("kind") == "alert"
        ]
        if not rows and start is None and agent_name is None and not (scope["user"] or scope["conversation"]):
            commands = [
                {
                    "ts": c.ts.isoformat(),
                    "kind": "command",
                    "what": c.action.value,
                    "action": c.action.value,
                    "scope_key": c.scope.key,
                    "reason": c.reason,
                    "issued_by": c.issued_by,
                    "trace_id": c.scope.trace_id,
                }
                for c in src.commands_live
            ]
            rows = commands
        table = Table(
            "Decisions", ["time", "kind", "what", "scope", "latency from cause", "trace", "by", "reason"]
        )
        for i, r in enumerate(rows):
            if r.get("what") in ("kill", "alert", "failover"):
                table.bad.add(i)
            tid = r.get("trace_id")
            latency = r.get("latency_ms")
            table.rows.append(
                [
                    Cell(figures.label(r.get("ts"))[:19]),
                    Cell(str(r.get("kind") or "")),
                    Cell(str(r.get("what") or "")),
                    _short(r.get("scope_key")),
                    Cell("" if latency is None else f"{figures.num(latency):.0f} ms", number=True),
                    Cell(str(tid)[:12] + "…", "trace?" + src.view.query(trace_id=str(tid)))
                    if tid
                    else Cell(""),
                    Cell(str(r.get("issued_by") or r.get("policy_id") or "")),
                    Cell(str(r.get("reason") or ""), wrap=True),
                ]
            )
        tables.append(table)
        return [figures.alerts_commands_timeline(alerts, commands)]

    tables: list[Table] = []
    page = _page("timeline", "Decisions", src, build)
    page.tables = tables
    return page


def agent_chain(src: Sources) -> Page:
    """Agents calling agents across the view's traces (from the span tree): a Sankey weighted
    by inclusive cost, and the same edges as a table whose agents open their pages."""

    def build() -> list[Any]:
        scope = src.scope()
        edges = src.rows(
            q.agent_calls,
            start=scope["start"],
            end=scope["end"],
            agent=scope["agent"],
            user=scope["user"],
            conversation=scope["conversation"],
        )
        if src.view.version or src.view.model:
            src.notes.append("the agent chain reads whole span trees: version and model filters do not apply")
        table = Table("Calls between agents", ["caller", "callee", "calls", "traces", "inclusive cost"])
        seen: list[str] = []
        for e in edges:
            caller, callee = str(e.get("caller")), str(e.get("callee"))
            seen += [n for n in (caller, callee) if n not in seen]
            table.rows.append(
                [
                    Cell(caller, "agent?" + src.view.query(name=caller)),
                    Cell(callee, "agent?" + src.view.query(name=callee)),
                    Cell(str(e.get("calls") or 0), number=True),
                    Cell(str(e.get("traces") or 0), number=True),
                    Cell(_money(e.get("cost_usd")), number=True),
                ]
            )
        links.extend((n, src.view.query(name=n)) for n in seen)
        tables.append(table)
        fig = figures.agent_chain(edges)
        # the Sankey's nodes, in its order, each to its agent's page
        nodes.extend("agent?" + src.view.query(name=n) for n in figures.chain_nodes(edges))
        return [fig]

    links: list[tuple[str, str]] = []
    tables: list[Table] = []
    nodes: list[str] = []
    page = _page("agents", "Agent chain", src, build)
    page.node_links = {0: nodes} if nodes else {}
    page.tables = tables
    page.links = [(label, q) for label, q in links]
    page.link_slug = "agent"
    return page


def all_pages(src: Sources) -> list[Page]:
    return [
        overview(src),
        agent(src),
        trace(src),
        traces(src),
        agent_chain(src),
        providers(src),
        timeline(src),
    ]
