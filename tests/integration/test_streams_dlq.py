"""Fuzzed malformed input (hypothesis) on a real broker: every bad record and every bad event
lands in the DLQ with its raw bytes, reason and source offset; the worker stays alive and the
valid events around the bad ones are counted."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from _streams_harness import Worker, consume, produce, start_worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger import topics as specs
from agentledger.admin import create_topics
from agentledger.errors import ContractError
from agentledger.events import DeadLetter
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope

_ids = itertools.count()


@pytest.fixture(scope="module")
def fuzz_topics(kafka_bootstrap: str) -> SimpleNamespace:
    prefix = f"f{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    return SimpleNamespace(bootstrap=kafka_bootstrap, prefix=prefix, events=prefix + specs.EVENTS.name,
                           dlq=prefix + specs.DLQ.name)  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_worker(fuzz_topics: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(fuzz_topics, Path(tmp_path_factory.mktemp("fuzzworker")))
    yield w
    w.kill()


def valid_event() -> dict[str, Any]:
    ev = sample_events(2, seed=5)[1].model_dump(mode="json")  # a usage event
    ev["event_id"] = f"fz-{next(_ids):09d}"
    return ev


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["event_id", "ts", "tenant", "agent", "trace_id", "span_id", "type", "input_tokens", "output_tokens",
          "model", "cache_read_tokens", "parent_span_id", "attributes"]  # fmt: skip


@st.composite
def broken_event(draw: st.DrawFn) -> dict[str, Any]:
    ev = valid_event()
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()) and field in ev:
        del ev[field]
    else:
        ev[field] = draw(JSON)
    return ev


@st.composite
def record(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mixed", "mixed"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return orjson.dumps(draw(JSON))
    events = [valid_event() for _ in range(draw(st.integers(0, 3)))] + draw(
        st.lists(broken_event(), min_size=1, max_size=3)
    )
    return orjson.dumps({"v": 1, "key": "acme/planner", "events": draw(st.permutations(events))})


def expected(raw: bytes) -> tuple[int, int]:
    """(dead letters, valid events) per the contract's own decoder."""
    try:
        d = decode_envelope(raw)
    except ContractError:
        return 1, 0
    return len(d.rejected), len(d.events)


totals = {"records": 0, "dlq": 0, "events": 0}
sent: list[bytes] = []


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(batch=st.lists(record(), min_size=1, max_size=25))
def test_malformed_input_all_in_dlq(
    fuzz_topics: SimpleNamespace, fuzz_worker: Worker, batch: list[bytes]
) -> None:
    produce(fuzz_topics.bootstrap, fuzz_topics.events, [(b"acme/planner", raw) for raw in batch])
    for raw in batch:
        dl, ev = expected(raw)
        totals["dlq"] += dl
        totals["events"] += ev
    totals["records"] += len(batch)
    sent.extend(batch)
    stats = fuzz_worker.wait_events(totals["records"], key="records")
    deadline = time.monotonic() + 10
    while stats["counters"].get("dlq", 0) < totals["dlq"] and time.monotonic() < deadline:
        stats = fuzz_worker.stats()
    assert stats["counters"].get("dlq", 0) == totals["dlq"]
    assert stats["counters"].get("events", 0) == totals["events"]  # the valid ones around them
    letters = [DeadLetter.model_validate_json(r.value) for r in
               consume(fuzz_topics.bootstrap, fuzz_topics.dlq, timeout=5, until=totals["dlq"])]  # fmt: skip
    assert len(letters) == totals["dlq"]
    whole = set(sent)
    items = {orjson.dumps(item) for raw in sent if raw.startswith(b"{") for item in _items(raw)}
    for dl in letters:
        assert dl.reason and dl.source_topic == fuzz_topics.events
        assert dl.source_partition is not None and dl.source_offset is not None
        raw = base64.b64decode(dl.raw_b64)
        if dl.index is None:  # the whole record, byte for byte
            assert dl.reason.startswith("not an envelope") and raw in whole
        else:  # one event of an envelope: its own JSON
            assert orjson.dumps(orjson.loads(raw)) in items


def _items(raw: bytes) -> list[Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return doc.get("events", []) if isinstance(doc, dict) and isinstance(doc.get("events"), list) else []
