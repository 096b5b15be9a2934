"""Batch checks and envelope grouping (pure parts of POST /v1/events)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agentledger.api.errors import BadRequestError, ForbiddenError
from agentledger.api.ingest import check_events, event_items, plan
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.errors import ContractError
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope, record_timestamp_ms

ACME = ApiKey("k1", "bot", frozenset({KeyScope.INGEST}), "acme", datetime(2026, 1, 1, tzinfo=UTC))
ALL = ApiKey("k2", "ops", frozenset({KeyScope.ADMIN}), None, datetime(2026, 1, 1, tzinfo=UTC))


def _dicts(n: int = 8, tenant: str = "acme", agent: str = "planner") -> list[dict]:  # type: ignore[type-arg]
    return [e.model_dump(mode="json") for e in sample_events(n, tenant=tenant, agent=agent)]


def test_valid_batch_passes_whole() -> None:
    checked = check_events(_dicts(), ACME)
    assert len(checked.events) == 8 and checked.rejected == []


def test_invalid_events_are_reported_by_index_and_the_rest_kept() -> None:
    items = _dicts()
    items[2]["score"] = "high"
    items[5] = {"type": "usage"}
    checked = check_events(items, ACME)
    assert [r["index"] for r in checked.rejected] == [2, 5]
    assert "score" in checked.rejected[0]["reason"]
    assert len(checked.events) == 6


def test_another_tenant_refuses_the_whole_batch_for_a_bound_key() -> None:
    items = _dicts() + _dicts(2, tenant="globex")
    items[0]["score"] = "bad"  # a rejected event before them must not shift the indexes
    with pytest.raises(ForbiddenError, match=r"at indexes \[8, 9\]; nothing was written"):
        check_events(items, ACME)
    assert len(check_events(items, ALL).events) == 9  # an all-tenant key may write any tenant


def test_one_envelope_per_tenant_agent_stamped_with_the_newest_event() -> None:
    events = sample_events(6, agent="planner") + sample_events(3, agent="coder", seed=8)
    now_ms = int(datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC).timestamp() * 1000)
    records = {o.record.key: o.record for o in plan(events, "t.events", 1_000_000, now_ms=now_ms).records}
    assert set(records) == {"acme/planner", "acme/coder"}
    planner = decode_envelope(records["acme/planner"].value or b"")
    assert [e.event_id for e in planner.events] == [e.event_id for e in events[:6]]
    newest = max(int(e.ts.timestamp() * 1000) for e in events[:6])
    assert records["acme/planner"].timestamp_ms == record_timestamp_ms(newest, now_ms)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"nope", BadRequestError),
        (b"[]", ContractError),
        (b'{"events": {}}', ContractError),
        (b'{"events": []}', ContractError),
        (orjson.dumps({"events": [{}] * 11}), ContractError),
    ],
)
def test_body_shape_errors(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        event_items(body, max_events=10)


def test_gunzip_limits_and_errors() -> None:
    import gzip

    from agentledger.api.errors import PayloadTooLargeError
    from agentledger.api.ingest import gunzip

    data = b'{"events": []}' * 100
    assert gunzip(gzip.compress(data), len(data)) == data
    with pytest.raises(PayloadTooLargeError):
        gunzip(gzip.compress(b"0" * 1_000_000), 10_000)  # a small bomb
    with pytest.raises(BadRequestError):
        gunzip(b"not gzip", 1000)
    with pytest.raises(BadRequestError):
        gunzip(gzip.compress(data)[:-12], len(data))


def test_gunzip_reads_every_member_and_refuses_trailing_garbage() -> None:
    import gzip

    from agentledger.api.ingest import gunzip

    one, two = b'{"events": [', b"]}"
    assert gunzip(gzip.compress(one) + gzip.compress(two), 100) == one + two  # cat a.gz b.gz
    with pytest.raises(BadRequestError, match="trailing"):
        gunzip(gzip.compress(one + two) + b"garbage", 100)
    from agentledger.api.errors import PayloadTooLargeError

    with pytest.raises(PayloadTooLargeError):  # the limit holds across members
        gunzip(gzip.compress(b"0" * 60) + gzip.compress(b"0" * 60), 100)


def test_plan_splits_a_big_group_and_sets_aside_an_event_too_large_for_any_record() -> None:
    events = sample_events(400, agent="planner")
    big = events[7].model_copy(update={"attributes": {"note": "x" * 20_000}})
    events[7] = big
    planned = plan(events, "t.events", 16_000, indexes=range(100, 500))
    assert [i for i, _ in planned.too_large] == [107]
    assert all(len(o.record.value or b"") <= 16_000 for o in planned.records)
    assert len(planned.records) > 1
    written = [i for o in planned.records for i in o.positions]
    assert written == [i for i in range(100, 500) if i != 107]
    ids = [e.event_id for o in planned.records for e in decode_envelope(o.record.value or b"").events]
    assert ids == [e.event_id for i, e in enumerate(events) if i != 7]
