"""Pure figure functions: rows (plain dicts, as the API's queries return them) -> plotly
Figure. No SQL, no HTTP, no clock: the same rows always give the same figure."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go

Row = Mapping[str, Any]

STATE_COLOURS = {
    "ok": "#2e7d32",
    "warn": "#f9a825",
    "throttled": "#ef6c00",
    "killed": "#c62828",
    "closed": "#2e7d32",
    "half_open": "#f9a825",
    "half-open": "#f9a825",
    "open": "#c62828",
    "alert": "#c62828",
    "resolved": "#2e7d32",
}


def num(value: Any) -> float:
    """A number from a row value (Decimal strings for money, None as 0)."""
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def label(value: Any, default: str = "?", max_len: int | None = None) -> str:
    """User-supplied text (names, reasons, summaries) as plotly must receive it. plotly.js reads
    a subset of HTML in every label, legend, hover text and table cell (``<a href>`` becomes a
    live link), so ``&``, ``<`` and ``>`` are escaped; plotly turns the entities back into the
    plain characters on screen. Every string that comes from data goes through here once.
    ``max_len`` keeps an axis label short (head…tail), cut before escaping."""
    text = default if value is None or value == "" else str(value)
    if max_len is not None and len(text) > max_len:
        head = (max_len - 1) * 2 // 3
        text = text[:head] + "…" + text[len(text) - (max_len - 1 - head) :]
    return html.escape(text, quote=False)


def axis_labels(full: Sequence[str], shortened: Sequence[str]) -> list[str]:
    """Shortened axis labels, except where two would read the same: a bar chart draws equal
    categories on top of each other, so those keep their whole text."""
    seen: dict[str, int] = defaultdict(int)
    for text in shortened:
        seen[text] += 1
    return [s if seen[s] == 1 else f for f, s in zip(full, shortened, strict=True)]


# Time buckets by the span shown: (bucket, longest span in seconds it is used for). Each keeps
# the number of bars between a handful and a few hundred.
BUCKET_SPANS: tuple[tuple[str, float], ...] = (
    ("second", 5 * 60),
    ("minute", 6 * 3600),
    ("hour", 14 * 86400),
    ("day", 180 * 86400),
)


def bucket_for(first: Any, last: Any) -> str:
    """The time bucket for data from ``first`` to ``last``: a 100-second run in seconds, two
    days in hours, a quarter in days (never one lone bar for a short run)."""
    a, b = when(first), when(last)
    if a is None or b is None:
        return "hour"
    span = abs((b - a).total_seconds())
    return next((unit for unit, longest in BUCKET_SPANS if span <= longest), "week")


def _short_time(value: Any) -> str:
    t = when(value)
    return label(value) if t is None else t.astimezone(UTC).strftime("%b %d %H:%M UTC")


def when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def x_time(value: Any) -> Any:
    """A time for plotly's x axis: naive UTC (plotly.js does not read ``+00:00`` offsets)."""
    t = when(value)
    return value if t is None else t.astimezone(UTC).replace(tzinfo=None)


def _layout(fig: go.Figure, title: str, **extra: Any) -> go.Figure:
    # Phone-friendly: small margins, legend under the plot, height that fits a screen.
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}},
        "margin": {"l": 40, "r": 28, "t": 40, "b": 40},  # r: room for the last date tick
        "height": 340,
        "legend": {"orientation": "h", "y": -0.2},
        "template": "plotly_white",
    }
    fig.update_layout(**{**layout, **extra})
    return fig


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def spend_by_agent_over_time(rows: Iterable[Row], bucket: str = "hour") -> go.Figure:
    """Stacked bars of cost per time ``bucket``, one colour per agent. Rows: bucket, agent, cost_usd."""
    series: dict[str, dict[Any, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        series[label(r.get("agent"))][x_time(r.get("bucket"))] += num(r.get("cost_usd"))
    fig = go.Figure()
    for agent in sorted(series):
        points = sorted(series[agent].items(), key=lambda kv: str(kv[0]))
        fig.add_bar(name=agent, x=[k for k, _ in points], y=[v for _, v in points])
    if not series:
        _empty(fig, "no spend in this range")
    return _layout(fig, f"Spend by agent per {bucket} (USD)", barmode="stack")


def top_agents(rows: Iterable[Row], limit: int = 10) -> go.Figure:
    """Horizontal bars of the costliest agents. Rows: agent, cost_usd."""
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        totals[str(r.get("agent") or "?")] += num(r.get("cost_usd"))
    top = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit][::-1]
    full = [label(k) for k, _ in top]
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in top],
            y=axis_labels(full, [label(k, max_len=32) for k, _ in top]),  # shortened on the axis...
            orientation="h",
            hovertext=full,  # ...and whole in the hover text
            hoverinfo="text+x",
        )
    )
    if not top:
        _empty(fig, "no agents yet")
    return _layout(fig, "Top agents by spend (USD)")


def _used(s: Row) -> float:
    return 100.0 * num(s.get("spend")) / num(s.get("limit")) if num(s.get("limit")) else 0.0


def budget_burn(statuses: Iterable[Row], limit: int = 10) -> go.Figure:
    """Budget utilisation per policy and scope, coloured by state, with projected exhaustion:
    the ``limit`` scopes nearest their limit, nearest on top; the rest are counted in the title
    (a per-trace policy alone can have thousands of scopes).
    Rows: policy_id, scope_key, spend, limit, state, projected_exhaustion."""
    ranked = sorted(statuses, key=lambda s: (-_used(s), str(s.get("policy_id")), str(s.get("scope_key"))))
    items = ranked[:limit][::-1]  # plotly draws the first category at the bottom
    full = [f"{label(s.get('policy_id'))} · {label(s.get('scope_key'))}" for s in items]
    labels = axis_labels(
        full,
        [f"{label(s.get('policy_id'), max_len=16)} · {label(s.get('scope_key'), max_len=36)}" for s in items],
    )
    text = [
        f"{num(s.get('spend')):.2f} / {num(s.get('limit')):.2f}"
        + (
            f" · exhausts {_short_time(s.get('projected_exhaustion'))}"
            if s.get("projected_exhaustion")
            else ""
        )
        for s in items
    ]
    colours = [STATE_COLOURS.get(str(s.get("state")), "#546e7a") for s in items]
    fig = go.Figure(
        go.Bar(
            x=[_used(s) for s in items],
            y=labels,
            orientation="h",
            marker_color=colours,
            text=text,
            textposition="auto",
            hovertext=full,
            hoverinfo="text+x",
        )
    )
    if items:
        fig.add_vline(x=100, line_dash="dash", line_color="#c62828")
    else:
        _empty(fig, "no live budgets (no policies, or the worker has not reported yet)")
    rest = len(ranked) - len(items)
    title = "Budget burn (% of limit)" + (
        f" · {len(items)} nearest their limit, {rest} more" if rest > 0 else ""
    )
    return _layout(
        fig,
        title,
        xaxis_title="% used",
        height=max(340, 34 * len(items) + 110),
        yaxis={"automargin": True},
    )


def cost_and_tokens(rows: Iterable[Row], bucket: str = "hour") -> go.Figure:
    """One agent's cost (bars) and tokens (lines, right axis) per time ``bucket``.
    Rows: bucket, cost_usd, input_tokens, output_tokens."""
    items = sorted(rows, key=lambda r: str(r.get("bucket")))
    x = [x_time(r.get("bucket")) for r in items]
    fig = go.Figure()
    fig.add_bar(name="cost USD", x=x, y=[num(r.get("cost_usd")) for r in items])
    fig.add_scatter(name="input tokens", x=x, y=[num(r.get("input_tokens")) for r in items], yaxis="y2")
    fig.add_scatter(name="output tokens", x=x, y=[num(r.get("output_tokens")) for r in items], yaxis="y2")
    if not items:
        _empty(fig, "no usage for this agent")
    return _layout(
        fig, f"Cost and tokens per {bucket}", yaxis2={"overlaying": "y", "side": "right", "showgrid": False}
    )


def quality_with_drift(scores: Iterable[Row], drift_alerts: Sequence[Row] = ()) -> go.Figure:
    """Quality per metric and version over time; drift alarms as vertical lines.
    Scores: bucket (or ts), metric, score, agent_version. Alerts: ts, summary."""
    series: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for r in scores:
        name = f"{label(r.get('metric'), 'score')} {label(r.get('agent_version'), '')}".strip()
        series[name].append((x_time(r.get("bucket") or r.get("ts")), num(r.get("score"))))
    fig = go.Figure()
    for name in sorted(series):
        points = sorted(series[name], key=lambda p: str(p[0]))
        fig.add_scatter(name=name, x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers")
    for alert in drift_alerts:
        ts = x_time(alert.get("ts"))
        if isinstance(ts, datetime):
            fig.add_shape(
                type="line", x0=ts, x1=ts, y0=0, y1=1, yref="paper", line={"dash": "dot", "color": "#c62828"}
            )
    if not series:
        _empty(fig, "no quality scores")
    return _layout(fig, "Quality (drift alarms dotted)")


def versions_table(rows: Iterable[Row]) -> go.Figure:
    """Versions of one agent with spend and canary verdicts.
    Rows: agent_version, cost_usd, events, verdict."""
    items = sorted(rows, key=lambda r: str(r.get("agent_version")))
    fig = go.Figure(
        go.Table(
            header={"values": ["version", "cost USD", "events", "canary verdict"]},
            cells={
                "values": [
                    [label(r.get("agent_version"), "-") for r in items],
                    [f"{num(r.get('cost_usd')):.4f}" for r in items],
                    [int(num(r.get("events"))) for r in items],
                    [label(r.get("verdict"), "-") for r in items],
                ]
            },
        )
    )
    return _layout(fig, "Versions and canary verdicts")


ZERO_LENGTH_SHARE = 0.005
"""A span shorter than this share of its trace is drawn as a mark (a bar would not show)."""
WATERFALL_DOMAIN = 0.7
"""The share of the waterfall's width for the time axis; the cost column takes the rest."""


def trace_waterfall(spans: Iterable[Row]) -> go.Figure:
    """One bar per span from its start to its end, indented by depth, a mark on the spans too
    short to see, and direct and inclusive cost in a column of their own. Rows: span_id, parent_span_id, name, start, end, direct_cost_usd (or
    cost_usd), inclusive_cost_usd."""
    items = [s for s in spans if when(s.get("start")) and when(s.get("end"))]
    by_id = {str(s.get("span_id")): s for s in items}

    def depth(s: Row) -> int:
        d, seen, parent = 0, set(), s.get("parent_span_id")
        while parent and str(parent) in by_id and parent not in seen:
            seen.add(parent)
            d += 1
            parent = by_id[str(parent)].get("parent_span_id")
        return d

    items.sort(key=lambda s: (when(s.get("start")), str(s.get("span_id"))))  # type: ignore[arg-type,return-value]
    starts = [t for t in (when(s.get("start")) for s in items) if t is not None]
    t0 = min(starts, default=None)
    labels, base, length, text = [], [], [], []
    for s in items:
        start, end = when(s.get("start")), when(s.get("end"))
        assert start is not None and end is not None and t0 is not None
        name = label(s.get("name") or (f"tool {s['tool']}" if s.get("tool") else s.get("kind")), "event")
        row = "· " * depth(s) + f"{name} [{label(str(s.get('span_id'))[-6:])}]"
        while row in labels:  # one row per span: a repeated label would stack spans on one row
            row += "'"
        labels.append(row)
        base.append((start - t0).total_seconds() * 1000)
        length.append(max((end - start).total_seconds() * 1000, 0.0))
        direct = s.get("direct_cost_usd", s.get("cost_usd"))
        # short (the column must fit a phone) and no "$": two of them in an annotation make
        # plotly.js read it as LaTeX (MathJax)
        text.append(f"{num(direct):.4g} · {num(s.get('inclusive_cost_usd')):.4g}")
    total = max((b + w for b, w in zip(base, length, strict=True)), default=0.0)
    hover = [f"{n}<br>{w:.0f} ms · {t}" for n, w, t in zip(labels, length, text, strict=True)]
    fig = go.Figure(
        go.Bar(
            y=labels,
            x=[max(w, total * 0.002) for w in length],  # a sliver, at least, on the axis
            base=base,
            orientation="h",
            marker_color="#1565c0",
            hovertext=hover,
            hoverinfo="text",
            name="span",
            showlegend=False,
        )
    )
    # A span too short to see as a bar (an instant tool call, an event) gets a mark at its start.
    short = [i for i, w in enumerate(length) if w <= total * ZERO_LENGTH_SHARE]
    if short:
        fig.add_scatter(
            x=[base[i] for i in short],
            y=[labels[i] for i in short],
            mode="markers",
            marker={
                "symbol": "diamond",
                "size": 11,
                "color": "#ef6c00",
                "line": {"width": 1, "color": "#fff"},
            },
            name="zero-length span",
            hovertext=[hover[i] for i in short],
            hoverinfo="text",
        )
    # Costs in a column of their own right of the time axis, one per row: never drawn over a
    # bar, a mark or another label, whatever the bar lengths.
    for y, t in zip(labels, text, strict=True):
        fig.add_annotation(
            x=WATERFALL_DOMAIN + 0.01, xref="paper", xanchor="left", y=y, yref="y",
            text=t, showarrow=False, font={"size": 11},
        )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(domain=[0, WATERFALL_DOMAIN], title_text="ms from start")
    if not items:
        _empty(fig, "no spans")
    return _layout(
        fig,
        "Trace waterfall (ms from start; USD direct · inclusive)",
        height=max(340, 28 * len(items) + 100),
        legend={"orientation": "h", "y": -0.12 if len(items) > 8 else -0.3},
    )


def provider_health(rows: Iterable[Row]) -> go.Figure:
    """LLM calls per provider/model, coloured by circuit state; error rate in the label when
    known. Rows: provider, model, calls, errors or error_rate, p95_ms (optional), circuit."""
    items = sorted(
        (r for r in rows if r.get("provider")), key=lambda r: (str(r.get("provider")), str(r.get("model")))
    )
    full = [f"{label(r.get('provider'))}/{label(r.get('model'))}" for r in items]
    labels = axis_labels(
        full, [f"{label(r.get('provider'), max_len=16)}/{label(r.get('model'), max_len=32)}" for r in items]
    )
    calls = [num(r.get("calls")) for r in items]
    text = []
    for r, n in zip(items, calls, strict=True):
        rate = r.get("error_rate")
        if rate is None and r.get("errors") is not None and n:
            rate = num(r.get("errors")) / n
        errors = f" · {100 * num(rate):.1f}% errors" if rate is not None else ""
        p95 = f" · p95 {num(r.get('p95_ms')):.0f} ms" if r.get("p95_ms") is not None else ""
        text.append(f"circuit {label(r.get('circuit'), 'closed')}{errors}{p95}")
    colours = [STATE_COLOURS.get(str(r.get("circuit") or "closed"), "#546e7a") for r in items]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=calls,
            marker_color=colours,
            text=text,
            textposition="auto",
            hovertext=[f"{f}<br>{t}" for f, t in zip(full, text, strict=True)],  # the whole name
            hoverinfo="text+y",
        )
    )
    if not items:
        _empty(fig, "no LLM calls")
    return _layout(fig, "Providers: LLM calls (colour = circuit state)", yaxis_title="calls")


def alerts_commands_timeline(alerts: Iterable[Row], commands: Iterable[Row]) -> go.Figure:
    """Alerts and control commands on one time axis. Alerts: ts, rule, entity, state, summary;
    commands: ts, action, scope_key, reason, issued_by."""
    fig = go.Figure()
    a = sorted(alerts, key=lambda r: str(r.get("ts")))
    c = sorted(commands, key=lambda r: str(r.get("ts")))
    fig.add_scatter(
        name="alerts",
        mode="markers",
        x=[x_time(r.get("ts")) for r in a],
        y=[label(r.get("rule")) for r in a],
        marker={"size": 11, "color": [STATE_COLOURS.get(str(r.get("state")), "#546e7a") for r in a]},
        text=[f"{label(r.get('state'))}: {label(r.get('summary'))} ({label(r.get('entity'))})" for r in a],
        hoverinfo="text+x",
    )
    fig.add_scatter(
        name="commands",
        mode="markers",
        marker_symbol="diamond",
        x=[x_time(r.get("ts")) for r in c],
        y=[f"cmd:{label(r.get('action'))}" for r in c],
        marker={"size": 11, "color": "#6a1b9a"},
        text=[
            f"{label(r.get('action'))} {label(r.get('scope_key'))} by {label(r.get('issued_by'))}: "
            f"{label(r.get('reason'))}"
            for r in c
        ],
        hoverinfo="text+x",
    )
    if not a and not c:
        _empty(fig, "no alerts or commands")
    return _layout(fig, "Alerts and commands")


def chain_nodes(edges: Iterable[Row]) -> list[str]:
    """The agent chain's nodes in the order ``agent_chain`` draws them."""
    return sorted(
        {str(e["caller"]) for e in edges if e.get("caller") is not None and e.get("callee") is not None}
        | {str(e["callee"]) for e in edges if e.get("caller") is not None and e.get("callee") is not None}
    )


def agent_chain(edges: Iterable[Row]) -> go.Figure:
    """Agents calling agents as a Sankey: one node per agent, one link per (caller, callee),
    as wide as the inclusive cost of those calls. Rows: caller, callee, calls, cost_usd,
    traces."""
    items = [e for e in edges if e.get("caller") is not None and e.get("callee") is not None]
    if not items:  # plotly.js fails on a Sankey with no nodes (RangeError): no trace at all
        return _layout(_empty(go.Figure(), "no agent called another in this view"), "Agent chain")
    names = chain_nodes(items)
    index = {n: i for i, n in enumerate(names)}
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": [label(n, max_len=24) for n in names], "pad": 18, "color": "#1565c0",
                  "customdata": [label(n) for n in names], "hovertemplate": "%{customdata}<extra></extra>"},
            link={
                "source": [index[str(e["caller"])] for e in items],
                "target": [index[str(e["callee"])] for e in items],
                # a link of $0 would vanish: its width is at least a hair
                "value": [max(num(e.get("cost_usd")), 1e-9) for e in items],
                "customdata": [
                    f"{label(e['caller'])} → {label(e['callee'])}: {int(num(e.get('calls')))} calls in "
                    f"{int(num(e.get('traces')))} traces, ${num(e.get('cost_usd')):.4f} inclusive"
                    for e in items
                ],
                "hovertemplate": "%{customdata}<extra></extra>",
                "color": "rgba(21,101,192,0.25)",
            },
        )
    )  # fmt: skip
    return _layout(fig, "Agent chain (link width: inclusive cost of the calls)")


_PERCENTILE_DASH = {"p50_ms": "dot", "p95_ms": "solid", "p99_ms": "dash"}


def latency_percentiles(rows: Iterable[Row], bucket: str = "hour") -> go.Figure:
    """LLM latency of the successful calls per provider/model over time: p50 dotted, p95
    solid, p99 dashed, one colour per provider/model. Rows: provider, model, bucket, p50_ms,
    p95_ms, p99_ms (the ``latency_percentiles`` named query)."""
    series: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.get("p50_ms") is not None:
            series[f"{label(r.get('provider'))}/{label(r.get('model'))}"].append(r)
    fig = go.Figure()
    palette = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#455a64"]
    for i, name in enumerate(sorted(series)):
        points = sorted(series[name], key=lambda r: str(r.get("bucket")))
        x = [x_time(r.get("bucket")) for r in points]
        for col, dash in _PERCENTILE_DASH.items():
            fig.add_scatter(
                name=f"{name} {col.removesuffix('_ms')}",
                legendgroup=name,
                x=x,
                y=[num(r.get(col)) for r in points],
                mode="lines+markers",
                line={"dash": dash, "color": palette[i % len(palette)]},
            )
    if not series:
        _empty(fig, "no successful LLM calls in this range")
    return _layout(fig, f"LLM latency per {bucket}: p50 dotted, p95 solid, p99 dashed", yaxis_title="ms")


def slo_attainment(rows: Iterable[Row], message: str = "no objective for this agent") -> go.Figure:
    """Per objective and UTC day: attainment (lines, %) against its target (flat dotted line)
    and the share of the day's error budget left (bars, right axis, negative when overspent).
    Rows: objective, target, day, attainment, budget_left."""
    series: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        series[label(r.get("objective"))].append(r)
    fig = go.Figure()
    for name in sorted(series):
        points = sorted(series[name], key=lambda r: str(r.get("day")))
        x = [x_time(r.get("day")) for r in points]
        fig.add_bar(
            name=f"{name} budget left", x=x, y=[100 * num(r.get("budget_left")) for r in points], yaxis="y2",
            opacity=0.35,
        )  # fmt: skip
        fig.add_scatter(
            name=f"{name} attainment", x=x, y=[100 * num(r.get("attainment")) for r in points],
            mode="lines+markers",
        )  # fmt: skip
        fig.add_scatter(
            name=f"{name} target", x=x, y=[100 * num(points[0].get("target"))] * len(x), mode="lines",
            line={"dash": "dot", "color": "#c62828"}, showlegend=False,
        )  # fmt: skip
    if not series:
        _empty(fig, message)
    return _layout(
        fig,
        "SLO attainment per day (%, target dotted) and error budget left (bars, %)",
        yaxis_title="good calls %",
        yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "title": "budget left %"},
    )
