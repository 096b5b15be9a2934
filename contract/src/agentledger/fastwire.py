"""The wire decoder's fast path: msgspec validates an envelope in C, the pydantic models stay
the contract (docs/adr/0013).

The msgspec Structs below mirror ``agentledger.events`` but accept a *subset* of what the
contract accepts: printable-ASCII names (the contract NFKC-normalises other names), lowercase
W3C ids (the contract lowercases), RFC 3339 times to the microsecond, JSON numbers where the
contract also takes strings, no ``reported_cost_usd``. ``decode_fast`` returns the events of an envelope when msgspec accepted every one of
them and the checks msgspec cannot express (the model validators) hold; otherwise ``None``,
and ``agentledger.wire`` decodes the envelope with the pydantic contract, which then decides
and words the reason. So the fast path never accepts what the contract rejects, and what it
accepts is built into the contract's own model objects, equal to what pydantic returns
(``tests/unit/test_fastwire_property.py`` checks both claims on generated input).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import BaseModel

from agentledger.events import (
    INT64_MAX,
    INT64_MIN,
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    QualityEvent,
    ScreenEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
)

# Patterns are not checked by msgspec (it calls Python's ``re`` once per string, which costs
# more than the rest of the decode): lengths, types and ranges are, in C; the patterns are
# checked once per envelope, on each distinct value or on the concatenation of the values.
Name = Annotated[str, Meta(min_length=1, max_length=128)]
Version = Annotated[str, Meta(max_length=64)]
ProviderName = Annotated[str, Meta(max_length=64)]
ModelName = Annotated[str, Meta(max_length=128)]
ToolName = Annotated[str, Meta(min_length=1, max_length=128)]
AttributeKey = Annotated[str, Meta(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)]
AttributeText = Annotated[str, Meta(max_length=MAX_ATTRIBUTE_VALUE_CHARS)]
AttributeInt = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
TraceId = Annotated[str, Meta(min_length=32, max_length=32)]
SpanId = Annotated[str, Meta(min_length=16, max_length=16)]
Time = Annotated[datetime, Meta(tz=True)]
TokenCount = Annotated[int, Meta(ge=0, le=100_000_000)]
FiniteFloat = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
OMITTED = -1
"""A token count's default in ``UsageStruct`` (msgspec does not check defaults against ``ge=0``)."""

_NAME = re.compile(r"[!-.0-~][ -.0-~]*")
"""``events.Name`` for printable-ASCII input (nothing to normalise): no ``/``, no leading space."""
_PRINTABLE = re.compile(r"[ -~]*")
"""A provider, model, tool or version name, an attribute key: printable ASCII is kept as it is."""
_HEX = re.compile(r"[0-9a-f]*")
_EVENT_ID = re.compile(r"[A-Za-z0-9_\-:.]*")
_LONG_FRACTION = re.compile(rb"\.\d{7}")
"""A time with more than microseconds: msgspec rounds the 7th digit, the contract truncates."""
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    # The contract's fields; the model's ``__dict__`` gets the contract's order from ``_builder``.
    v: Literal[1] = 1
    event_id: Annotated[str, Meta(min_length=8, max_length=64)]
    ts: Time
    tenant: Name
    agent: Name
    agent_version: Version | None = None
    workflow: Name | None = None
    trace_id: TraceId
    span_id: SpanId
    parent_span_id: SpanId | None = None
    attributes: Annotated[
        dict[AttributeKey, AttributeText | AttributeInt | FiniteFloat | bool], Meta(max_length=MAX_ATTRIBUTES)
    ] = {}


class SpanStruct(_Base, tag="span"):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    kind: SpanKind
    start: Time
    end: Time
    # defaults the warehouse stores as values are UNSET when omitted (``_decode`` fills them
    # and then does not forward the event's bytes: their reader would see a null)
    status: SpanStatus | UnsetType = UNSET
    error_type: Annotated[str, Meta(max_length=256)] | None = None
    provider: ProviderName | None = None
    model: ModelName | None = None


class UsageStruct(_Base, tag="usage"):
    provider: Annotated[ProviderName, Meta(min_length=1)]
    model: Annotated[ModelName, Meta(min_length=1)]
    input_tokens: TokenCount
    output_tokens: TokenCount
    # -1 when omitted (a sent value is >= 0): ``_decode`` fills in the contract's 0, as for
    # ``status`` above; a plain int, so stage one prices the Struct itself (``pricing``)
    cache_read_tokens: TokenCount = OMITTED
    cache_write_tokens: TokenCount = OMITTED
    reasoning_tokens: TokenCount = OMITTED
    # A JSON number's Decimal depends on how it is read (float first, or its digits): left to
    # the contract, which the envelope then goes to whenever the field is set.
    reported_cost_usd: None = None


class QualityStruct(_Base, tag="quality"):
    metric: Annotated[str, Meta(min_length=1, max_length=64)]
    score: FiniteFloat
    evaluator: Annotated[str, Meta(max_length=64)] | None = None
    label: Annotated[str, Meta(max_length=64)] | None = None
    comment: Annotated[str, Meta(max_length=1024)] | None = None


class ToolCallStruct(_Base, tag="tool_call"):
    tool: ToolName
    args_hash: Annotated[str, Meta(min_length=16, max_length=64)]
    status: SpanStatus | UnsetType = UNSET


class _Envelope(msgspec.Struct):
    """What ``wire.decode_envelope`` reads of an envelope (other fields are ignored there too)."""

    events: list[SpanStruct | UsageStruct | QualityStruct | ToolCallStruct]
    v: Literal[1] = 1
    key: str | None = None


class _RawEnvelope(msgspec.Struct):
    """Each event's JSON bytes as sent (decoded only after ``_Envelope`` accepted them all)."""

    events: list[msgspec.Raw]


M = TypeVar("M", bound=BaseModel)


def _builder(model: type[M], struct: type[msgspec.Struct], tag: str) -> Callable[[Any], M]:
    """A function building ``model`` from an accepted ``struct`` without validating again
    (what ``model_construct`` does, without its per-field Python loop). The ``__dict__`` is
    in the model's field order (its JSON is the same bytes): a copy of a template in that
    order, updated from the struct's values. Like ``model_construct`` with every field given,
    ``model_fields_set`` is every field: one set shared by the models built here (they are
    frozen; ``model_copy`` copies the set before it adds to it)."""
    names = tuple(model.model_fields)
    assert set(names) == {*struct.__struct_fields__, "type"}, (model, struct)
    template: dict[str, Any] = dict.fromkeys(names)
    template["type"] = tag
    struct_fields = struct.__struct_fields__
    astuple = msgspec.structs.astuple
    fields_set = set(names)
    new = object.__new__
    setattr_ = object.__setattr__

    def build(s: Any) -> M:
        values = template.copy()
        values.update(zip(struct_fields, astuple(s), strict=True))
        obj = new(model)
        setattr_(obj, "__dict__", values)
        setattr_(obj, "__pydantic_fields_set__", fields_set)
        setattr_(obj, "__pydantic_extra__", None)
        setattr_(obj, "__pydantic_private__", None)
        return obj

    return build


_SPAN = _builder(SpanEvent, SpanStruct, "span")
_USAGE = _builder(UsageEvent, UsageStruct, "usage")
_QUALITY = _builder(QualityEvent, QualityStruct, "quality")
_TOOL = _builder(ToolCallEvent, ToolCallStruct, "tool_call")
_DECODER = msgspec.json.Decoder(_Envelope)
_RAW_DECODER = msgspec.json.Decoder(_RawEnvelope)
AnyEvent = SpanEvent | UsageEvent | QualityEvent | ToolCallEvent | ScreenEvent
"""What ``wire`` decodes; a ``screen`` event has no Struct here: its envelope goes to the contract."""


def _names_ok(names: set[Any], pattern: re.Pattern[str]) -> bool:
    names.discard(None)
    return all(pattern.fullmatch(n) for n in names)


FastEvent = SpanStruct | UsageStruct | QualityStruct | ToolCallStruct
"""An event accepted by the fast path, kept as its Struct (``decode_fast_structs``)."""
_MODEL_OF: dict[type[Any], Callable[[Any], AnyEvent]] = {
    SpanStruct: _SPAN,
    UsageStruct: _USAGE,
    QualityStruct: _QUALITY,
    ToolCallStruct: _TOOL,
}


def model_of(s: FastEvent) -> AnyEvent:
    """The contract's model of an accepted Struct (equal to what ``decode_fast`` returns)."""
    return _MODEL_OF[type(s)](s)


def decode_fast(raw: bytes) -> tuple[str | None, list[AnyEvent]] | None:
    """The key and events of an envelope whose every event the contract accepts, built as the
    contract's models; ``None`` when msgspec, a pattern or a model validator refuses anything
    (then the pydantic contract decides, event by event, and words the reasons)."""
    got = _decode(raw, False, False)
    return None if got is None else (got[0], got[1])


def decode_fast_raw(raw: bytes) -> tuple[str | None, list[AnyEvent], list[bytes | None]] | None:
    """``decode_fast``, with each event's JSON bytes as the client sent them when they say
    exactly what the contract's own serialisation of the event would (docs/adr/0013,
    addendum): every field the warehouse stores as a value present (no omitted default) and
    every time already in UTC. Otherwise that event's entry is ``None`` (serialise the model).
    Field order, whitespace and escapes may differ from the contract's bytes; every reader of
    the priced topic parses JSON by field name."""
    return _decode(raw, True, False)


def decode_fast_structs(raw: bytes) -> tuple[str | None, list[FastEvent], list[bytes | None]] | None:
    """``decode_fast_raw`` without building a model per event: the accepted events as their
    Structs, with the contract's values (defaults filled in, times in UTC) under the model's
    field names, so a reader of those fields cannot tell them apart (the worker's stage one;
    ``model_of`` builds the model of one). Accepts and rejects exactly what ``decode_fast``
    does (``tests/unit/test_fastwire_property.py``)."""
    return _decode(raw, True, True)


def _decode(
    raw: bytes, keep_raw: bool, structs: bool
) -> tuple[str | None, list[Any], list[bytes | None]] | None:
    for m in _LONG_FRACTION.finditer(raw):
        at = m.start()
        if at >= 6 and raw[at - 3] == raw[at - 6] == 58 and raw[at - 5 : at].replace(b":", b"").isdigit():
            # "hh:mm:ss.fffffff": a time, not a number
            return None
    try:
        env = _DECODER.decode(raw)
    except (msgspec.DecodeError, ValueError):  # ValueError: bytes that are not UTF-8
        return None
    evs = env.events
    if not evs:
        return env.key, [], []
    span_ids = [s.span_id for s in evs]
    if (
        not _EVENT_ID.fullmatch("".join([s.event_id for s in evs]))
        or not _HEX.fullmatch("".join(span_ids))
        or _ZERO_SPAN in span_ids
        or not _names_ok({s.tenant for s in evs} | {s.agent for s in evs} | {s.workflow for s in evs}, _NAME)
        or not _names_ok({s.agent_version for s in evs}, _PRINTABLE)
    ):
        return None
    traces = {s.trace_id for s in evs}
    parents = {s.parent_span_id for s in evs if s.parent_span_id is not None}
    if not _HEX.fullmatch("".join(traces)) or _ZERO_TRACE in traces:
        return None
    if not _HEX.fullmatch("".join(parents)) or _ZERO_SPAN in parents:
        return None
    out: list[Any] = []  # models, or with ``structs`` the Structs themselves
    append = out.append
    names: set[Any] = set()
    hashes: list[str] = []
    # positions of events whose bytes are not forwarded as sent (an omitted default, a time
    # not in UTC): their reader would see something other than the contract's serialisation
    redo: list[int] = []
    try:
        for i, s in enumerate(evs):
            if s.ts.tzinfo is not UTC:
                s.ts = s.ts.astimezone(UTC)
                redo.append(i)
            if s.attributes:
                names.update(s.attributes)
            if type(s) is UsageStruct:
                cr, cw, rt = s.cache_read_tokens, s.cache_write_tokens, s.reasoning_tokens
                if cr < 0 or cw < 0 or rt < 0:
                    s.cache_read_tokens = cr = max(cr, 0)
                    s.cache_write_tokens = cw = max(cw, 0)
                    s.reasoning_tokens = rt = max(rt, 0)
                    redo.append(i)
                if cr + cw > s.input_tokens or rt > s.output_tokens:
                    return None
                names.add(s.provider)
                names.add(s.model)
                append(s if structs else _USAGE(s))
            elif type(s) is SpanStruct:
                if s.start.tzinfo is not UTC or s.end.tzinfo is not UTC or s.status is UNSET:
                    redo.append(i)
                    if s.start.tzinfo is not UTC:
                        s.start = s.start.astimezone(UTC)
                    if s.end.tzinfo is not UTC:
                        s.end = s.end.astimezone(UTC)
                    if s.status is UNSET:
                        s.status = SpanStatus.UNSET
                if s.end < s.start:
                    return None
                names.add(s.provider)
                names.add(s.model)
                append(s if structs else _SPAN(s))
            elif type(s) is ToolCallStruct:
                names.add(s.tool)
                hashes.append(s.args_hash)
                if s.status is UNSET:
                    s.status = SpanStatus.OK
                    redo.append(i)
                append(s if structs else _TOOL(s))
            else:
                append(s if structs else _QUALITY(s))
    except (ValueError, OverflowError):  # a time that has no UTC equivalent: the contract says
        return None
    if not _names_ok(names, _PRINTABLE) or not _HEX.fullmatch("".join(hashes)):
        return None
    if not keep_raw:
        return env.key, out, []
    raws: list[bytes | None] = [bytes(r) for r in _RAW_DECODER.decode(raw).events]
    for i in redo:
        raws[i] = None
    return env.key, out, raws
