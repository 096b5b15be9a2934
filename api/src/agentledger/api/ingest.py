"""Batch ingest: validate contract events one by one, enforce the key's tenant, group by
``tenant/agent`` and produce one envelope per group (the same envelopes the client writes)."""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from agentledger.api.errors import BadRequestError, ForbiddenError, OutcomeUnknownError, PayloadTooLargeError
from agentledger.api.kafka import Publisher, Record, WriteFailedError
from agentledger.api.keys import ApiKey
from agentledger.errors import ContractError
from agentledger.events import EVENT_ADAPTER, Event
from agentledger.wire import (
    AnyEvent,
    EventTooLargeError,
    describe,
    envelope_key,
    record_timestamp_ms,
    split_encoded,
)

_EVENT_LIST: TypeAdapter[list[AnyEvent]] = TypeAdapter(list[Event])


@dataclass
class Checked:
    """The outcome of validating a batch: valid events, and rejects by index."""

    events: list[AnyEvent] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    indexes: Sequence[int] = ()  # the request index of each valid event


async def read_body(request: Request, limit: int) -> bytes:
    """The request body (gunzipped when ``Content-Encoding: gzip``, as OTLP exporters may send
    it), refusing (413) anything over ``limit`` bytes, declared, streamed or decompressed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BadRequestError(f"unsupported Content-Encoding {encoding!r}: send identity or gzip")
    return gunzip(body, limit)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes (a small bomb cannot fill the memory).

    A body may hold several gzip members one after the other (RFC 1952; ``cat a.gz b.gz``):
    all are read. Anything after the last member that is not another member is refused.
    """
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise BadRequestError(f"body is not valid gzip: {exc}") from None
        size += len(part)
        if size > limit:
            raise PayloadTooLargeError(f"decompressed body is over the limit of {limit} bytes")
        out.append(part)
        if not inflater.eof:
            raise BadRequestError("gzip body is truncated")
        rest = inflater.unused_data
        if not rest:
            return b"".join(out)
        if not rest.startswith(b"\x1f\x8b"):
            raise BadRequestError(f"{len(rest)} byte(s) of trailing data after the gzip body")


def event_items(body: bytes, max_events: int) -> list[Any]:
    """The ``events`` list of a ``{"events": [...]}`` body (400/422 when the shape is wrong)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise ContractError('body must be {"events": [...]}', [("events", "a list of events is required")])
    items: list[Any] = doc["events"]
    if not items:
        raise ContractError("no events in the batch", [("events", "must not be empty")])
    if len(items) > max_events:
        raise ContractError(
            f"{len(items)} events in one request; at most {max_events}",
            [("events", f"at most {max_events} events per request")],
        )
    return items


def check_events(items: Sequence[Any], key: ApiKey) -> Checked:
    """Validate each event; a key bound to a tenant may only write that tenant.

    Another tenant's event refuses the WHOLE request (403): a client that mixes tenants has a
    bug or is probing, and half-writing its batch would hide that.
    """
    out = Checked()
    positions: Sequence[int] = range(len(items))  # request index of each valid event
    try:  # fast path: the whole batch is valid
        out.events = _EVENT_LIST.validate_python(items)
    except ValidationError:
        positions = []
        for index, item in enumerate(items):
            try:
                out.events.append(EVENT_ADAPTER.validate_python(item))
                positions.append(index)
            except ValidationError as exc:
                out.rejected.append({"index": index, "reason": describe(exc)})
    out.indexes = positions
    if key.tenant is not None:
        foreign = [i for i, e in zip(positions, out.events, strict=True) if e.tenant != key.tenant]
        if foreign:
            raise ForbiddenError(
                f"this key is bound to tenant {key.tenant!r}; {len(foreign)} event(s) name another "
                f"tenant, at indexes {foreign[:10]}{' …' if len(foreign) > 10 else ''}; nothing was written"
            )
    return out


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to write and the positions (in the list given to ``plan``) of its events."""

    record: Record
    positions: list[int]


@dataclass
class Plan:
    """Records sized to the broker's limit, and the events too large for any record."""

    records: list[Outgoing] = field(default_factory=list)
    too_large: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


def plan(
    events: Sequence[AnyEvent],
    topic: str,
    max_value_bytes: int,
    indexes: Sequence[int] | None = None,
    now_ms: int | None = None,
) -> Plan:
    """Group by ``tenant/agent`` (per-agent order) and split each group into envelopes of at
    most ``max_value_bytes`` (the broker's real record limit, read at start); each record is
    stamped with its newest event time. An event that fits in no record is set aside.
    Positions are ``indexes[i]`` for ``events[i]`` (the request's indexes), else ``i``."""
    index_of = indexes if indexes is not None else range(len(events))
    groups: dict[str, list[int]] = defaultdict(list)
    for position, event in enumerate(events):
        groups[envelope_key(event.tenant, event.agent)].append(position)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = Plan()
    for key, positions in groups.items():
        while positions:
            try:
                pieces = split_encoded(key, [events[p] for p in positions], max_value_bytes)
            except EventTooLargeError as exc:
                out.too_large.append((index_of[positions[exc.index]], str(exc)))
                positions = positions[: exc.index] + positions[exc.index + 1 :]
                continue
            for piece in pieces:
                mine = positions[piece.first : piece.first + piece.count]
                newest = max(int(events[p].ts.timestamp() * 1000) for p in mine)
                record = Record(topic, key, piece.value, record_timestamp_ms(newest, now))
                out.records.append(Outgoing(record, [index_of[p] for p in mine]))
            break
    return out


async def publish(publisher: Publisher, records: Sequence[Outgoing]) -> None:
    """Write ``records``. On failure, a 503 that says which events (by position) are written,
    which are not, and which are unknown; the rest of the contract: retry with the same ids."""
    if not records:
        return
    try:
        await publisher.send([o.record for o in records])
    except WriteFailedError as exc:
        out = exc.outcome

        def positions(indexes: list[int]) -> list[int]:
            return sorted(p for i in indexes for p in records[i].positions)

        raise OutcomeUnknownError(
            f"{exc.summary}. Retry the whole request with the same event ids: events "
            "already written are dropped as duplicates by event_id.",
            written=positions(out.acked),
            not_written=positions(out.refused),
            unknown=positions(out.unknown),
        ) from None
