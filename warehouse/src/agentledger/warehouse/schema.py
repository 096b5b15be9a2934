"""Arrow schemas of the three datasets, derived from the contract so they cannot drift.

``events`` is one wide table: the common fields, then every event type's own fields
(nullable; a span row has no token counts), then the price step's fields and where the row
came from in Kafka. Columns follow ``agentledger.events`` field by field, so a new optional
contract field becomes a new nullable column; files written before it still read together
with newer ones (the catalog reads with ``union_by_name``).
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel

from agentledger.events import QualityEvent, ScreenEvent, SpanEvent, ToolCallEvent, UsageEvent

USD = pa.decimal128(28, 12)
"""Exact money: 28 digits, 12 after the point (the contract's ``Usd``)."""
TS = pa.timestamp("us", tz="UTC")
EVENT_MODELS: tuple[type[BaseModel], ...] = (SpanEvent, UsageEvent, QualityEvent, ToolCallEvent, ScreenEvent)

# Fields kept out of the table: the contract version (always 1 today).
_SKIP = {"v"}
# Fields stored as a JSON string (a map of mixed value types does not fit one Arrow type).
JSON_FIELDS = {"attributes"}


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...] | None`` -> ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one contract field's annotation."""
    base = _unwrap(annotation)
    if typing.get_origin(base) is typing.Literal or base is str:
        return pa.string()
    if isinstance(base, type):
        if issubclass(base, Enum):
            return pa.string()
        if issubclass(base, bool):
            return pa.bool_()
        if issubclass(base, int):
            return pa.int64()
        if issubclass(base, float):
            return pa.float64()
        if issubclass(base, Decimal):
            return USD
        if issubclass(base, datetime):
            return TS
    if base is AwareDatetime:  # pydantic's marker class, not a datetime subclass
        return TS
    if typing.get_origin(base) is dict:
        return pa.string()
    raise TypeError(f"no Arrow type for contract annotation {annotation!r}")


def event_fields() -> list[pa.Field]:
    """Every event model's fields, common ones first, each name once."""
    out: dict[str, pa.Field] = {}
    for model in EVENT_MODELS:
        for name, info in model.model_fields.items():
            if name in _SKIP or name in out:
                continue
            typ = pa.string() if name in JSON_FIELDS else arrow_type(info.annotation)
            out[name] = pa.field(name, typ, nullable=True)
    return list(out.values())


PRICE_FIELDS = [
    pa.field("cost_usd", USD),
    pa.field("priced", pa.bool_()),
    pa.field("price_source", pa.string()),
    # arrival at the streams worker, and why budgets counted the event then (late/clock_skew)
    pa.field("received_ts", TS),
    pa.field("time_flag", pa.string()),
]
PRICE_NAMES = frozenset(f.name for f in PRICE_FIELDS)
SOURCE_FIELDS = [
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
]

EVENTS = pa.schema([*event_fields(), *PRICE_FIELDS, *SOURCE_FIELDS])

COMMANDS = pa.schema(
    [
        pa.field("command_id", pa.string()),
        pa.field("ts", TS),
        pa.field("scope_kind", pa.string()),
        pa.field("scope_key", pa.string()),
        pa.field("tenant", pa.string()),
        pa.field("agent", pa.string()),
        pa.field("agent_version", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("trace_id", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("action", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("policy_id", pa.string()),
        pa.field("params", pa.string()),
        pa.field("rate_per_s", pa.float64()),
        pa.field("fallback_provider", pa.string()),
        pa.field("target_version", pa.string()),
        pa.field("kill_reason", pa.string()),
        pa.field("expires_at", TS),
        pa.field("issued_by", pa.string()),
        pa.field("cause_event_id", pa.string()),
        *SOURCE_FIELDS,
    ]
)

ALERTS = pa.schema(
    [
        pa.field("alert_id", pa.string()),
        pa.field("dedup_key", pa.string()),
        pa.field("ts", TS),
        pa.field("rule", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("tenant", pa.string()),
        pa.field("state", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("figures", pa.string()),
        pa.field("policy_id", pa.string()),
        pa.field("command_id", pa.string()),
        *SOURCE_FIELDS,
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"events": EVENTS, "commands": COMMANDS, "alerts": ALERTS}
"""Dataset name -> Arrow schema."""
DEDUPE_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("tenant", "event_id"),
    "commands": ("command_id",),
    "alerts": ("alert_id",),
}
"""Dataset name -> the columns that identify a row (duplicates of it are one row). An event id
is unique within its tenant only (OTLP ids derive from trace and span ids)."""
