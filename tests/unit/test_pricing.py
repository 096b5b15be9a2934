"""PriceBook against genai_prices.calc_price (the source of truth) and the overrides file."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from agentledger.errors import ConfigError
from agentledger.events import QualityEvent, UsageEvent
from agentledger.pricing import QUANTUM, PriceBook

TS = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def usage(provider: str, model: str, *, tenant: str = "acme", ts: datetime = TS, **counts: int) -> UsageEvent:
    return UsageEvent(
        event_id="ev-00000001",
        ts=ts,
        tenant=tenant,
        agent="planner",
        trace_id="a" * 32,
        span_id="b" * 16,
        provider=provider,
        model=model,
        input_tokens=counts.get("input_tokens", 0),
        output_tokens=counts.get("output_tokens", 0),
        cache_read_tokens=counts.get("cache_read_tokens", 0),
        cache_write_tokens=counts.get("cache_write_tokens", 0),
        reasoning_tokens=counts.get("reasoning_tokens", 0),
    )


def truth(u: UsageEvent, provider_id: str) -> Decimal:
    kw = {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
    }
    if u.reasoning_tokens:
        kw["output_reasoning_tokens"] = u.reasoning_tokens
    calc = calc_price(Usage(**kw), u.model, provider_id=provider_id, genai_request_timestamp=u.ts)
    return calc.total_price.quantize(QUANTUM)


CASES = [
    # (provider as the event says it, genai-prices id, model, counts)
    (
        "openai",
        "openai",
        "gpt-4o",
        {"input_tokens": 12_345, "cache_read_tokens": 4_000, "output_tokens": 777},
    ),
    ("openai", "openai", "gpt-4o-mini", {"input_tokens": 1_000, "output_tokens": 50}),
    (
        "openai",
        "openai",
        "o3",
        {
            "input_tokens": 5_000,
            "cache_read_tokens": 1_000,
            "output_tokens": 3_000,
            "reasoning_tokens": 2_500,
        },
    ),
    (
        "anthropic",
        "anthropic",
        "claude-3-5-haiku-latest",
        {
            "input_tokens": 9_000,
            "cache_read_tokens": 3_000,
            "cache_write_tokens": 2_000,
            "output_tokens": 400,
        },
    ),
    # tiered (long context): the whole call pays the higher tier
    (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        {
            "input_tokens": 250_000,
            "cache_read_tokens": 10_000,
            "cache_write_tokens": 5_000,
            "output_tokens": 2_000,
        },
    ),
    (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        {"input_tokens": 150_000, "cache_write_tokens": 5_000, "output_tokens": 2_000},
    ),
    (
        "gcp.gemini",
        "google",
        "gemini-2.5-pro",
        {"input_tokens": 300_000, "cache_read_tokens": 100_000, "output_tokens": 9_000},
    ),
    # time-conditional prices
    (
        "deepseek",
        "deepseek",
        "deepseek-chat",
        {"input_tokens": 20_000, "cache_read_tokens": 15_000, "output_tokens": 1_000},
    ),
    # reasoning priced at its own rate + per-request fee
    (
        "perplexity",
        "perplexity",
        "sonar-deep-research",
        {"input_tokens": 2_000, "output_tokens": 5_000, "reasoning_tokens": 3_000},
    ),
    ("perplexity", "perplexity", "sonar", {"input_tokens": 2_000, "output_tokens": 300}),
]


@pytest.mark.parametrize(("provider", "pid", "model", "counts"), CASES)
def test_price_equals_calc_price(provider: str, pid: str, model: str, counts: dict[str, int]) -> None:
    book = PriceBook.load()
    u = usage(provider, model, **counts)
    cost, priced, source = book.price(u)
    assert priced
    assert cost == truth(u, pid)
    assert cost > 0
    assert source.startswith(book.snapshot)


def test_cached_tokens_are_cheaper_than_uncached() -> None:
    book = PriceBook.load()
    cold, _, _ = book.price(usage("openai", "gpt-4o", input_tokens=10_000, output_tokens=10))
    warm, _, _ = book.price(
        usage("openai", "gpt-4o", input_tokens=10_000, cache_read_tokens=8_000, output_tokens=10)
    )
    assert warm < cold
    # gpt-4o: $2.50 / $1.25 per M input uncached / cached, $10 per M output
    assert cold == Decimal("0.0251")
    assert warm == Decimal("0.0151")


def test_unknown_model_is_unpriced_not_zero_and_reported_once() -> None:
    book = PriceBook.load()
    for _ in range(3):
        cost, priced, source = book.price(
            usage("openai", "gpt-imaginary-9", input_tokens=10, output_tokens=1)
        )
        assert (cost, priced) == (Decimal(0), False)
        assert source == "unknown:openai/gpt-imaginary-9"
    assert book.take_new_unknown() == [("openai", "gpt-imaginary-9")]
    assert book.take_new_unknown() == []


def test_known_provider_without_the_model_is_unknown() -> None:
    # gpt-4o exists at openai, but anthropic does not sell it: never borrow another price
    _, priced, _ = PriceBook.load().price(usage("anthropic", "gpt-4o", input_tokens=10))
    assert not priced


def test_non_usage_events_pass_through_priced_at_zero() -> None:
    q = QualityEvent(
        event_id="ev-q-000001", ts=TS, tenant="acme", agent="a", trace_id="a" * 32, span_id="b" * 16,
        metric="faithfulness", score=0.5,
    )  # fmt: skip
    pe = PriceBook.load().price_event(q)
    assert (pe.cost_usd, pe.priced, pe.price_source) == (Decimal(0), True, "n/a")


OVERRIDES = """
models:
  - {provider: vllm, model: "llama-3.1-70b*", input_mtok: 0.10, output_mtok: 0.20, cache_read_mtok: 0.01, name: selfhosted}
  - {provider: openai, model: gpt-4o, input_mtok: 2.00, output_mtok: 8.00}
tenants:
  globex:
    discount: 0.15
  initech:
    models:
      - {provider: openai, model: gpt-4o, input_mtok: 1.00, output_mtok: 4.00, request_usd: 0.001}
"""


def test_overrides_self_hosted_global_and_tenant(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(OVERRIDES)
    book = PriceBook.load(path)
    cost, priced, source = book.price(
        usage(
            "vllm",
            "llama-3.1-70b-instruct",
            input_tokens=1_000_000,
            cache_read_tokens=500_000,
            output_tokens=1_000_000,
        )
    )
    assert (cost, priced, source) == (Decimal("0.255"), True, "override:selfhosted")
    # a global override replaces genai-prices for everybody (no cache-read rate: input rate)
    cost, _, _ = book.price(
        usage("openai", "gpt-4o", input_tokens=1_000_000, cache_read_tokens=1_000, output_tokens=0)
    )
    assert cost == Decimal("2.00")
    # a tenant discount applies on top of the applicable rate
    cost, _, source = book.price(usage("openai", "gpt-4o", tenant="globex", input_tokens=1_000_000))
    assert cost == Decimal("1.70")
    assert source.endswith("+discount:globex")
    # tenant rates win over global ones; per-request fee once per call
    cost, _, _ = book.price(
        usage("openai", "gpt-4o", tenant="initech", input_tokens=1_000_000, output_tokens=1_000_000)
    )
    assert cost == Decimal("5.001")
    # other models still come from genai-prices
    _, priced, source = book.price(usage("anthropic", "claude-3-5-haiku-latest", input_tokens=10))
    assert priced and source.startswith("genai-prices:")


def test_overrides_json_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text('{"models": [{"provider": "x", "model": "m", "input_mtok": 1}]}')
    assert PriceBook.load(good).price(usage("x", "m", input_tokens=1_000_000))[0] == Decimal(1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {model: m, input_mtok: -1}\n")
    with pytest.raises(ConfigError, match="negative"):
        PriceBook.load(bad)
    bad.write_text("models:\n  - {model: m, inptu_mtok: 1}\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        PriceBook.load(bad)
    bad.write_text("tenants:\n  acme: {discount: 1.5}\n")
    with pytest.raises(ConfigError, match="discount"):
        PriceBook.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        PriceBook.load(tmp_path / "missing.yaml")
