"""What every framework test asserts, in a user's terms: the warehouse has each LLM call the
provider answered exactly once, priced exactly, under the framework's own agent names."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from conftest import USAGE, Pipeline, price

MODEL, CHEAPER = "gpt-4o", "gpt-4o-mini"


def policies(kill: str, downgrade: str) -> str:
    """A hard daily budget on agent ``kill`` that its second call crosses (a call costs
    $0.00375), and on agent ``downgrade`` a soft threshold at $0.005 that moves its calls to
    gpt-4o-mini (its hard limit, $1, is never reached)."""
    return f"""
policies:
  - policy_id: {kill}-cap
    selector: {{tenant: acme, agent: {kill}, per: agent}}
    window: calendar_day
    limit: 0.005
    hard_action: kill
  - policy_id: {downgrade}-soft
    selector: {{tenant: acme, agent: {downgrade}, per: agent}}
    window: calendar_day
    limit: 1.0
    thresholds:
      - {{at: 0.005, action: downgrade, model: {CHEAPER}}}
    hard_action: alert
"""


def downgraded_after_the_threshold(pipeline: Pipeline, agent: str, after: int, others: list[str]) -> None:
    """``agent``'s first call went out as asked and its last ``after`` calls (made once the
    scenario saw the downgrade) as the cheaper model; the other agents kept their model."""
    sent = pipeline.requests_by_agent()
    assert sent[agent][0] == MODEL and sent[agent][-after:] == [CHEAPER] * after, sent
    for other in others:
        assert len(set(sent[other])) == 1 and CHEAPER not in sent[other], sent
    assert [c.action.value for c in pipeline.commands()[f"downgrade.budget:agent/acme/{agent}"]] == [
        "downgrade"
    ]


def priced_once(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    """The warehouse's usage rows by agent, after checking that each call the fake provider
    answered is there once, with the provider's exact tokens and the exact price."""
    sent = pipeline.requests_by_agent()
    calls = sum(len(models) for models in sent.values())
    rows = pipeline.usage_in_warehouse(expect=calls)
    assert len({r["event_id"] for r in rows}) == len(rows), "a call was counted twice"
    assert len(rows) == calls, (
        f"{calls} calls answered, {len(rows)} usage rows: {Counter(r['agent'] for r in rows)}"
    )
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_agent.setdefault(row["agent"], []).append(row)
    # credited to the agent whose instructions the provider saw, call for call
    assert {a: sorted(r["model"] for r in rs) for a, rs in by_agent.items()} == {
        a: sorted(models) for a, models in sent.items()
    }
    for row in rows:
        claude = row["model"].startswith("claude")  # the fake's Anthropic answers report no thinking tokens
        reasoning = 0 if claude else USAGE.reasoning_tokens
        want = (USAGE.input_tokens, USAGE.output_tokens, USAGE.cache_read_tokens, reasoning)
        got = (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["reasoning_tokens"])
        assert got == want, row
        assert row["provider"] == ("anthropic" if claude else "openai")
        assert row["cost_usd"] == price(row) > 0
    return by_agent


def total(rows: list[dict[str, Any]]) -> Decimal:
    return sum((r["cost_usd"] for r in rows), Decimal(0))
