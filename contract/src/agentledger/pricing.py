"""Exact prices for usage events: genai-prices' bundled snapshot plus local overrides.

``genai_prices.calc_price`` costs ~230 µs a call, so a ``PriceBook`` resolves each
(provider, model) once, keeps the per-token rates as ``Decimal`` and applies them in the hot
loop with exact decimal arithmetic. The rules follow genai-prices (and are cross-checked
against ``calc_price`` in the tests):

* ``input_tokens`` includes cached reads and writes (our contract): the uncached part is
  ``input - cache_read - cache_write`` at the input rate, each cached part at its own rate.
  A model without a cache-write (or cache-read) rate bills those tokens at the input rate.
* ``output_tokens`` includes reasoning: reasoning tokens get ``output_reasoning_mtok`` when the
  model has one, otherwise the output rate.
* Tiered prices (e.g. Claude / Gemini long context): the whole call pays the tier reached by
  its total ``input_tokens`` (genai-prices' "cliff" model). A per-request fee applies once.
* Time-conditional prices are resolved at the event time. Service-tier price variants are not
  used (the contract has no service tier).

Unknown models are ``priced=False`` with cost 0 and are never reported as $0 spend; the book
remembers them so the worker raises one alert per model (``take_new_unknown``).

Overrides file (YAML or JSON), all rates in USD per million tokens unless noted::

    models:                       # replace/add prices for everybody (self-hosted models too)
      - {provider: vllm, model: "llama-3.1-70b*", input_mtok: 0.10, output_mtok: 0.20,
         cache_read_mtok: 0.01, name: selfhosted}
    tenants:
      acme:
        discount: 0.15            # 15 % off every priced call of this tenant
        models:                   # tenant-specific rates win over everything else
          - {provider: openai, model: gpt-4o, input_mtok: 2.00, output_mtok: 8.00}

``model`` and ``provider`` accept ``fnmatch`` wildcards; the first matching entry wins.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from agentledger.errors import ConfigError
from agentledger.events import PricedEvent, UsageEvent
from agentledger.fastwire import UsageStruct
from agentledger.wire import AnyEvent

QUANTUM = Decimal("1e-12")
"""Costs are rounded (half-even) to 12 decimal places, the contract's ``Usd`` precision."""
_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1000)
ZERO = Decimal(0)

# OpenTelemetry `gen_ai.provider.name` values -> genai-prices provider ids (where they differ).
PROVIDER_ALIASES: dict[str, str] = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
}

NON_USAGE_SOURCE = "n/a"
"""``price_source`` of events that carry no cost (span, quality, tool_call): priced, $0."""


@dataclass(frozen=True, slots=True)
class Tiered:
    """A rate that depends on the call's total input tokens (``(start, rate)`` ascending)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]

    def at(self, input_tokens: int) -> Decimal:
        for start, rate in reversed(self.tiers):
            if input_tokens > start:
                return rate
        return self.base


Rate = Decimal | Tiered | None


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-million-token rates of one model (``None``: the model has no such price)."""

    input_mtok: Rate = None
    output_mtok: Rate = None
    cache_read_mtok: Rate = None
    cache_write_mtok: Rate = None
    output_reasoning_mtok: Rate = None
    request_usd: Decimal | None = None
    source: str = ""

    def cost(self, u: UsageEvent | UsageStruct) -> Decimal:
        """Exact cost of one call (not yet rounded)."""
        n_in = u.input_tokens
        uncached = n_in
        total = ZERO
        if self.cache_read_mtok is not None:
            uncached -= u.cache_read_tokens
            total += _rate(self.cache_read_mtok, n_in) * u.cache_read_tokens
        if self.cache_write_mtok is not None:
            uncached -= u.cache_write_tokens
            total += _rate(self.cache_write_mtok, n_in) * u.cache_write_tokens
        if self.input_mtok is not None:
            total += _rate(self.input_mtok, n_in) * uncached
        plain_out = u.output_tokens
        if self.output_reasoning_mtok is not None:
            plain_out -= u.reasoning_tokens
            total += _rate(self.output_reasoning_mtok, n_in) * u.reasoning_tokens
        if self.output_mtok is not None:
            total += _rate(self.output_mtok, n_in) * plain_out
        total /= _MILLION
        if self.request_usd is not None:
            total += self.request_usd
        return total


def _rate(rate: Decimal | Tiered, input_tokens: int) -> Decimal:
    return rate.at(input_tokens) if isinstance(rate, Tiered) else rate


def _as_rate(value: Any) -> Rate:
    """A genai-prices price value (Decimal or TieredPrices) or an override number."""
    if value is None:
        return None
    base = getattr(value, "base", None)
    if base is not None:
        return Tiered(Decimal(base), tuple((int(t.start), Decimal(t.price)) for t in value.tiers))
    return Decimal(str(value))


def _rates_from_model_price(mp: Any, source: str) -> Rates:
    req = getattr(mp, "requests_kcount", None)
    return Rates(
        input_mtok=_as_rate(getattr(mp, "input_mtok", None)),
        output_mtok=_as_rate(getattr(mp, "output_mtok", None)),
        cache_read_mtok=_as_rate(getattr(mp, "cache_read_mtok", None)),
        cache_write_mtok=_as_rate(getattr(mp, "cache_write_mtok", None)),
        output_reasoning_mtok=_as_rate(getattr(mp, "output_reasoning_mtok", None)),
        # a TieredPrices per-request fee does not exist in the data; treat as plain Decimal
        request_usd=None if req is None else Decimal(str(req)) / _THOUSAND,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class ModelOverride:
    provider: str
    model: str
    rates: Rates

    def matches(self, provider: str, model: str) -> bool:
        return fnmatch.fnmatchcase(provider.lower(), self.provider.lower()) and fnmatch.fnmatchcase(
            model.lower(), self.model.lower()
        )


@dataclass(slots=True)
class TenantOverride:
    discount: Decimal = ZERO
    models: list[ModelOverride] = field(default_factory=list)


_RATE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "output_reasoning_mtok")


def _parse_model_override(raw: Any, where: str) -> ModelOverride:
    if not isinstance(raw, dict) or "model" not in raw:
        raise ConfigError(f"{where}: each model override needs at least `model` (and rates)")
    unknown = set(raw) - {"provider", "model", "name", "request_usd", *_RATE_KEYS}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        rates = {k: Decimal(str(raw[k])) for k in _RATE_KEYS if raw.get(k) is not None}
        req = raw.get("request_usd")
        request_usd = None if req is None else Decimal(str(req))
    except ArithmeticError as exc:
        raise ConfigError(f"{where}: rates must be numbers ({exc})") from None
    if any(v < 0 for v in rates.values()) or (request_usd is not None and request_usd < 0):
        raise ConfigError(f"{where}: rates must not be negative")
    name = str(raw.get("name") or f"{raw.get('provider', '*')}/{raw['model']}")
    return ModelOverride(
        provider=str(raw.get("provider", "*")),
        model=str(raw["model"]),
        rates=Rates(**rates, request_usd=request_usd, source=f"override:{name}"[:100]),  # type: ignore[arg-type]
    )


def load_overrides(path: str | Path) -> tuple[list[ModelOverride], dict[str, TenantOverride]]:
    """Parse an overrides file (YAML or JSON). Raises ``ConfigError`` with the offending part."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read price overrides {p}: {exc}") from None
    doc: Any
    if p.suffix == ".json":
        doc = json.loads(text)
    else:
        import yaml

        doc = yaml.safe_load(text)
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping with `models:` and/or `tenants:`")
    models = [_parse_model_override(m, f"{p}: models[{i}]") for i, m in enumerate(doc.get("models") or [])]
    tenants: dict[str, TenantOverride] = {}
    for tenant, raw in (doc.get("tenants") or {}).items():
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: tenants.{tenant} must be a mapping")
        discount = Decimal(str(raw.get("discount", 0)))
        if not ZERO <= discount < 1:
            raise ConfigError(f"{p}: tenants.{tenant}.discount must be in [0, 1)")
        tm = [
            _parse_model_override(m, f"{p}: tenants.{tenant}.models[{i}]")
            for i, m in enumerate(raw.get("models") or [])
        ]
        tenants[str(tenant)] = TenantOverride(discount, tm)
    return models, tenants


@dataclass(slots=True)
class _Resolved:
    """What genai-prices said about one (provider, model): fixed rates or a time-conditional model."""

    rates: Rates | None  # fixed rates (most models)
    model_info: Any = None  # genai-prices ModelInfo when prices change with time
    by_price: dict[int, Rates] = field(default_factory=dict)
    source: str = ""


class PriceBook:
    """Per-token rates resolved once per (provider, model), applied with exact decimals."""

    def __init__(
        self,
        models: list[ModelOverride] | None = None,
        tenants: dict[str, TenantOverride] | None = None,
    ) -> None:
        import genai_prices
        from genai_prices import data_snapshot

        self._snapshot = data_snapshot.get_snapshot()
        self.snapshot = f"genai-prices:{genai_prices.__version__}"
        self._models = models or []
        self._tenants = tenants or {}
        self._cache: dict[tuple[str, str], _Resolved | None] = {}
        self._unknown: set[tuple[str, str]] = set()
        self._new_unknown: list[tuple[str, str]] = []

    @classmethod
    def load(cls, overrides_path: str | Path | None = None) -> PriceBook:
        """The bundled genai-prices snapshot plus the overrides file, if any."""
        if overrides_path is None:
            return cls()
        models, tenants = load_overrides(overrides_path)
        return cls(models, tenants)

    # -- resolution (once per provider/model) ------------------------------------------

    def _resolve(self, provider: str, model: str) -> _Resolved | None:
        key = (provider, model)
        if key in self._cache:
            return self._cache[key]
        resolved: _Resolved | None = None
        for o in self._models:
            if o.matches(provider, model):
                resolved = _Resolved(o.rates, source=o.rates.source)
                break
        if resolved is None:
            resolved = self._from_genai_prices(provider, model)
        self._cache[key] = resolved
        return resolved

    def _from_genai_prices(self, provider: str, model: str) -> _Resolved | None:
        from genai_prices.data_snapshot import find_provider_by_id

        pid = PROVIDER_ALIASES.get(provider.lower(), provider.lower())
        # A provider genai-prices does not know (a gateway, "litellm", ...) is matched by model
        # only; a known provider must have the model, otherwise we'd price at someone else's rate.
        known = find_provider_by_id(self._snapshot.providers, pid) is not None
        try:
            prov, info = self._snapshot.find_provider_model(model, None, pid if known else None, None)
        except (LookupError, ValueError):
            return None
        source = f"{self.snapshot}:{prov.id}/{info.id}"[:128]
        prices = info.prices
        if isinstance(prices, list):  # time-conditional (e.g. off-peak, price changes)
            return _Resolved(None, model_info=info, source=source)
        return _Resolved(_rates_from_model_price(prices, source), source=source)

    def rates_for(self, provider: str, model: str, ts: datetime, tenant: str | None = None) -> Rates | None:
        """The rates that apply to one call, or ``None`` for an unknown model."""
        t = self._tenants.get(tenant) if tenant is not None else None
        if t is not None:
            for o in t.models:
                if o.matches(provider, model):
                    return o.rates
        r = self._resolve(provider, model)
        if r is None:
            return None
        if r.rates is not None:
            return r.rates
        mp = r.model_info.get_prices(ts)
        rates = r.by_price.get(id(mp))
        if rates is None:
            rates = r.by_price[id(mp)] = _rates_from_model_price(mp, r.source)
        return rates

    # -- the hot path ---------------------------------------------------------------------

    def price(self, usage: UsageEvent | UsageStruct) -> tuple[Decimal, bool, str]:
        """``(cost_usd, priced, price_source)`` of one usage event (the model, or the fast
        path's Struct: the worker's stage one); unknown model -> (0, False, ...)."""
        rates = self.rates_for(usage.provider, usage.model, usage.ts, usage.tenant)
        if rates is None:
            key = (usage.provider, usage.model)
            if key not in self._unknown:
                self._unknown.add(key)
                self._new_unknown.append(key)
            return ZERO, False, f"unknown:{usage.provider}/{usage.model}"[:128]
        cost = rates.cost(usage)
        source = rates.source
        t = self._tenants.get(usage.tenant)
        if t is not None and t.discount:
            cost = cost * (1 - t.discount)
            source = f"{source}+discount:{usage.tenant}"[:128]
        return cost.quantize(QUANTUM, rounding=ROUND_HALF_EVEN), True, source

    def price_event(self, event: AnyEvent) -> PricedEvent:
        """A ``PricedEvent``. Non-usage events carry no cost: ``priced=True``, 0, ``"n/a"``."""
        if isinstance(event, UsageEvent):
            cost, priced, source = self.price(event)
            # the event is already validated: skip re-validating it (hot path)
            return PricedEvent.model_construct(event=event, cost_usd=cost, priced=priced, price_source=source)
        return PricedEvent.model_construct(
            event=event, cost_usd=ZERO, priced=True, price_source=NON_USAGE_SOURCE
        )

    def take_new_unknown(self) -> list[tuple[str, str]]:
        """(provider, model) pairs seen unpriced for the first time since the last call."""
        out, self._new_unknown = self._new_unknown, []
        return out
