"""Bytes on the wire: envelopes of events, validated per event.

One Kafka record carries an envelope (a batch of events that share the key ``tenant/agent``),
because per-record cost dominates in Faust (see DESIGN.md). Everything about a single event
stays per event: one bad event is rejected alone, with its raw bytes and a precise reason,
and the rest of its envelope counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json

from agentledger.errors import ContractError
from agentledger.events import (
    EVENT_ADAPTER,
    BaseEvent,
    Event,
    PricedEvent,
    QualityEvent,
    ScreenEvent,
    SpanEvent,
    ToolCallEvent,
    UsageEvent,
    record_key,
)
from agentledger.fastwire import (
    FastEvent,
    QualityStruct,
    SpanStruct,
    ToolCallStruct,
    UsageStruct,
    decode_fast,
    decode_fast_raw,
    decode_fast_structs,
)

AnyEvent = SpanEvent | UsageEvent | QualityEvent | ToolCallEvent | ScreenEvent
StageEvent = AnyEvent | FastEvent
"""An event as the worker's stage one reads it: the contract's model, or the fast path's Struct
(same field names and values; ``decode_envelope_structs``). Select with ``is_usage`` and the like
below, never on a model class alone."""


# Exact-type tests, not ``isinstance``: a pydantic model class's ``isinstance`` runs Python
# code (its metaclass's ``__instancecheck__``, ~0.5 µs), several times per event in stage one;
# no class derives from the event classes.
def is_usage(ev: object) -> TypeGuard[UsageEvent | UsageStruct]:
    t = type(ev)
    return t is UsageStruct or t is UsageEvent


def is_span(ev: object) -> TypeGuard[SpanEvent | SpanStruct]:
    t = type(ev)
    return t is SpanStruct or t is SpanEvent


def is_tool_call(ev: object) -> TypeGuard[ToolCallEvent | ToolCallStruct]:
    t = type(ev)
    return t is ToolCallStruct or t is ToolCallEvent


def is_quality(ev: object) -> TypeGuard[QualityEvent | QualityStruct]:
    t = type(ev)
    return t is QualityStruct or t is QualityEvent


_EVENT_LIST: TypeAdapter[list[AnyEvent]] = TypeAdapter(list[Event])
_PRICED_LIST: TypeAdapter[list[PricedEvent]] = TypeAdapter(list[PricedEvent])


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each problem pydantic found, e.g. ``("input_tokens", ...)``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if p not in ("span", "usage", "quality", "tool_call"))
        out.append((loc or "(root)", err["msg"]))
    return out


def describe(exc: ValidationError) -> str:
    """One line a human can act on: ``input_tokens: Input should be >= 0; ts: ...``."""
    return "; ".join(f"{loc}: {msg}" for loc, msg in problems_of(exc))


def parse_event(data: Any) -> AnyEvent:
    """Validate one event (a dict or JSON bytes). Raises ``ContractError`` naming the fields."""
    try:
        if isinstance(data, bytes | str):
            return EVENT_ADAPTER.validate_json(data)
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ContractError(describe(exc), problems_of(exc)) from None


@dataclass(slots=True)
class Rejected:
    """One event that failed validation: its position, raw JSON bytes and the reason."""

    index: int | None
    raw: bytes
    reason: str


@dataclass(slots=True)
class Decoded:
    key: str | None
    events: list[AnyEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    raws: list[bytes | None] | None = None
    """With ``keep_raw``, on the fast path: each event's JSON bytes as sent, where they say
    what the contract's serialisation would (``fastwire.decode_fast_raw``), else ``None``."""


def _load(raw: bytes) -> dict[str, Any]:
    try:
        doc = from_json(raw)
    except ValueError as exc:
        raise ContractError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ContractError(f"envelope must be a JSON object, got {type(doc).__name__}")
    if doc.get("v", 1) != 1:
        raise ContractError(f"unsupported envelope version {doc.get('v')!r} (this reader knows 1)")
    items = doc.get("events")
    if not isinstance(items, list):
        raise ContractError("envelope needs `events`: a list of events")
    return doc


def decode_envelope(raw: bytes, *, keep_raw: bool = False) -> Decoded:
    """Decode an envelope, validating each event on its own.

    Raises ``ContractError`` when the record is not an envelope at all (the whole record goes
    to the DLQ); otherwise returns the valid events and the rejected ones.

    An envelope whose every event is valid is decoded by msgspec in C (``agentledger.fastwire``);
    any other goes through the pydantic contract, which decides and words each reason.
    ``keep_raw``: also each event's bytes as sent (``Decoded.raws``; fast path only).
    """
    if keep_raw:
        got = decode_fast_raw(raw)
        if got is not None:
            return Decoded(key=got[0], events=got[1], raws=got[2])
        return decode_envelope_pydantic(raw)
    fast = decode_fast(raw)
    if fast is not None:
        return Decoded(key=fast[0], events=fast[1])
    return decode_envelope_pydantic(raw)


@dataclass(slots=True)
class DecodedStructs:
    """``Decoded``, with the fast path's events kept as Structs (no model built per event)."""

    key: str | None
    events: list[StageEvent]
    rejected: list[Rejected]
    raws: list[bytes | None] | None


def decode_envelope_structs(raw: bytes) -> DecodedStructs:
    """``decode_envelope(raw, keep_raw=True)`` for the worker's stage one: the same verdicts
    and reasons, and the same events, but those of an envelope the fast path accepts are its
    Structs (``fastwire.decode_fast_structs``); any other envelope is the contract's models."""
    got = decode_fast_structs(raw)
    if got is not None:
        return DecodedStructs(got[0], list(got[1]), [], got[2])
    d = decode_envelope_pydantic(raw)
    return DecodedStructs(d.key, list(d.events), d.rejected, None)


def decode_envelope_pydantic(raw: bytes) -> Decoded:
    """``decode_envelope`` through the pydantic contract alone (the reference the fast path is
    tested against, and the benchmark's anchor)."""
    doc = _load(raw)
    items: list[Any] = doc["events"]
    key = doc.get("key") if isinstance(doc.get("key"), str) else None
    out = Decoded(key=key)
    try:  # fast path: the whole batch is valid
        out.events = _EVENT_LIST.validate_python(items)
        return out
    except ValidationError:
        pass
    for index, item in enumerate(items):
        try:
            out.events.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            out.rejected.append(Rejected(index, to_json(item), describe(exc)))
    return out


def decode_priced(raw: bytes) -> tuple[str | None, list[PricedEvent]]:
    """Decode a priced envelope (written by our own worker; invalid means a bug: raises)."""
    doc = _load(raw)
    try:
        return doc.get("key"), _PRICED_LIST.validate_python(doc["events"])
    except ValidationError as exc:
        raise ContractError(describe(exc), problems_of(exc)) from None


def dump(model: BaseModel) -> bytes:
    """Compact JSON bytes of any contract model."""
    return model.__pydantic_serializer__.to_json(model)


ENVELOPE_TAIL = b"]}"
"""An envelope's bytes after its last event."""


def envelope_head(key: str) -> bytes:
    """An envelope's bytes before its first event: ``{"v":1,"key":...,"events":[``. With
    ``join_envelope``, the one place an envelope is spelled (the worker's priced envelopes too)."""
    return b'{"v":1,"key":' + to_json(key) + b',"events":['


def join_envelope(head: bytes, events: Iterable[bytes]) -> bytes:
    """One record's value from ``envelope_head(key)`` and its events' JSON bytes."""
    return head + b",".join(events) + ENVELOPE_TAIL


def encode_envelope(key: str, events: Sequence[BaseEvent | PricedEvent]) -> bytes:
    """One record's value: ``{"v":1,"key":...,"events":[...]}``."""
    return join_envelope(envelope_head(key), (e.__pydantic_serializer__.to_json(e) for e in events))


def encode_envelope_dicts(key: str, events: Iterable[dict[str, Any]]) -> bytes:
    """Envelope from already-JSON-ready dicts (the client's fast path, no model objects)."""
    return join_envelope(envelope_head(key), (to_json(e) for e in events))


envelope_key = record_key
"""The key of an envelope of ``tenant``'s ``agent`` (``agentledger.events.record_key``)."""


# Kafka 4 rejects a record whose timestamp is more than an hour ahead of the broker clock
# (log.message.timestamp.after.max.ms, KIP-937) and retention deletes by record time, so an
# agent with a skewed clock could lose a whole envelope. The record timestamp is the newest
# event time in it, clamped into [now - MAX_PAST, now + MAX_FUTURE]; the events keep theirs.
MAX_FUTURE_MS = 5 * 60 * 1000
MAX_PAST_MS = 24 * 3600 * 1000


def record_timestamp_ms(newest_event_ms: int, now_ms: int) -> int:
    """The Kafka record timestamp for an envelope whose newest event is at ``newest_event_ms``."""
    return max(now_ms - MAX_PAST_MS, min(newest_event_ms, now_ms + MAX_FUTURE_MS))


class EventTooLargeError(ContractError):
    """One event alone does not fit in a record; ``index`` is its position in the input."""

    def __init__(self, message: str, index: int, size: int) -> None:
        super().__init__(message, [(f"events.{index}", message)])
        self.index = index
        self.size = size


@dataclass(frozen=True, slots=True)
class EncodedEnvelope:
    """One record's value and which input events it holds (``events[first:first + count]``)."""

    value: bytes
    first: int
    count: int


MAX_EVENTS_PER_ENVELOPE = 5000
"""The contract's cap (``Envelope.events``)."""


def split_encoded(
    key: str, events: Sequence[BaseModel], max_bytes: int, max_events: int = MAX_EVENTS_PER_ENVELOPE
) -> list[EncodedEnvelope]:
    """Encode ``events`` (all of ``key``) as as few envelopes as fit in ``max_bytes`` each.

    ``max_bytes`` is the budget for a record *value*: take it from
    ``agentledger.admin.record_value_limit`` (the broker's real limit, less room for the key
    and the record overhead), never from a constant. Events keep their order, so per-key order
    holds across the pieces, and no piece holds more than ``max_events``. Raises ``EventTooLargeError`` (a ``ContractError``) naming the
    first event that cannot fit even alone; the caller reports it and nothing is encoded.
    Works for contract events and priced events alike.
    """
    if max_bytes <= 0 or max_events <= 0:
        raise ValueError("max_bytes and max_events must be positive")
    head = envelope_head(key)
    fixed = len(head) + len(ENVELOPE_TAIL)
    parts = [e.__pydantic_serializer__.to_json(e) for e in events]
    out: list[EncodedEnvelope] = []
    first, size = 0, fixed
    for index, part in enumerate(parts):
        if fixed + len(part) > max_bytes:
            raise EventTooLargeError(
                f"the event is {len(part)} bytes encoded; a Kafka record holds at most "
                f"{max_bytes - fixed} bytes of events",
                index,
                len(part),
            )
        extra = len(part) + (1 if index > first else 0)  # the comma before it
        if size + extra > max_bytes or index - first >= max_events:
            out.append(EncodedEnvelope(join_envelope(head, parts[first:index]), first, index - first))
            first, size, extra = index, fixed, len(part)
        size += extra
    if first < len(parts):
        out.append(EncodedEnvelope(join_envelope(head, parts[first:]), first, len(parts) - first))
    return out
