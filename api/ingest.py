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

from agentledger.api.errors import BadRequestError, ForbiddenError, PayloadTooLargeError
from agentledger.api.kafka import Publisher, Record
from agentledger.api.keys import ApiKey
from agentledger.errors import ContractError
from agentledger.events import EVENT_ADAPTER, Event
from agentledger.wire import AnyEvent, describe, encode_envelope, envelope_key, record_timestamp_ms

_EVENT_LIST: TypeAdapter[list[AnyEvent]] = TypeAdapter(list[Event])


@dataclass
class Checked:
    """The outcome of validating a batch: valid events, and rejects by index."""

    events: list[AnyEvent] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


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
    """Decompress at most ``limit`` bytes (a small bomb cannot fill the memory)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequestError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLargeError(f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequestError("gzip body is truncated")
    return out


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
    if key.tenant is not None:
        foreign = [i for i, e in zip(positions, out.events, strict=True) if e.tenant != key.tenant]
        if foreign:
            raise ForbiddenError(
                f"this key is bound to tenant {key.tenant!r}; {len(foreign)} event(s) name another "
                f"tenant, at indexes {foreign[:10]}{' …' if len(foreign) > 10 else ''}; nothing was written"
            )
    return out


def envelopes(events: Sequence[AnyEvent], topic: str, now_ms: int | None = None) -> list[Record]:
    """One record per ``tenant/agent`` (per-agent order), stamped with its newest event time."""
    groups: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in events:
        groups[envelope_key(event.tenant, event.agent)].append(event)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    records = []
    for key, group in groups.items():
        # Envelopes hold at most 5000 events (the contract); requests are capped below that.
        newest = max(int(e.ts.timestamp() * 1000) for e in group)
        records.append(Record(topic, key, encode_envelope(key, group), record_timestamp_ms(newest, now)))
    return records


async def publish(publisher: Publisher, topic: str, events: Sequence[AnyEvent]) -> int:
    """Produce ``events`` as envelopes; returns the number of envelopes written."""
    if not events:
        return 0
    records = envelopes(events, topic)
    await publisher.send(records)
    return len(records)
