"""The one compacted-topic reader (agentledger.compacted) on the real broker: read to the end
seen at start, then follow what is written after."""

from __future__ import annotations

import asyncio
from typing import Any

from agentledger.compacted import CompactedReader, publish, read_latest, read_to_end


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def latest(records: list[Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for r in records:
        if r.value is None:
            out.pop(r.text_key, None)
        else:
            out[r.text_key] = r.value
    return out


def test_reads_every_record_up_to_the_end_tombstones_included(topics: Any) -> None:
    written = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None), (b"c", b"4")]
    asyncio.run(produce(topics.bootstrap, topics.control, written))
    got = asyncio.run(read_to_end(topics.bootstrap, [topics.control, topics.policies]))
    assert [(r.topic, r.key, r.value) for r in got] == [(topics.control, k, v) for k, v in written]
    assert latest(got) == {"a": b"3", "c": b"4"}


def test_a_missing_topic_reads_as_empty_without_waiting(topics: Any) -> None:
    got = asyncio.run(read_to_end(topics.bootstrap, [topics.prefix + "no.such.topic"], timeout_s=30))
    assert got == []


def test_after_the_end_the_reader_follows_new_records(topics: Any) -> None:
    async def scenario() -> tuple[list[bytes | None], list[bytes | None], bool]:
        await produce(topics.bootstrap, topics.budgets, [(b"p|agent/acme/a", b"old")])
        async with CompactedReader(topics.bootstrap, [topics.budgets], poll_ms=100) as reader:
            assigned = await reader.assign()
            assert assigned == {topics.budgets: {0}}
            first = [r.value for r in await reader.read_to_end(timeout_s=30)]
            await produce(topics.bootstrap, topics.budgets, [(b"p|agent/acme/a", b"new")])
            later: list[bytes | None] = []
            for _ in range(300):  # up to 30 s of 100 ms polls
                later += [r.value for r in await reader.poll()]
                if later:
                    break
            return first, later, await reader.caught_up()

    first, later, caught_up = asyncio.run(scenario())
    assert first == [b"old"] and later == [b"new"] and caught_up


def test_publish_writes_values_and_tombstones_in_order_and_read_latest_gives_the_state(topics: Any) -> None:
    written: list[tuple[str, bytes | None]] = [
        ("a", b"1"),
        ("b", b"2"),
        ("a", b"3"),
        ("b", None),
        ("c", b"4"),
    ]
    asyncio.run(publish(topics.bootstrap, topics.control, written))
    asyncio.run(publish(topics.bootstrap, topics.control, [("c", b"not a number")]))
    got = asyncio.run(read_to_end(topics.bootstrap, [topics.control]))
    assert [(r.key, r.value) for r in got] == [(k.encode(), v) for k, v in [*written, ("c", b"not a number")]]

    def parse(value: bytes) -> int | None:
        return int(value) if value.isdigit() else None

    # a value the parser rejects changes nothing: "c" keeps 4, as a worker ignores a bad record
    state = asyncio.run(read_latest(topics.bootstrap, topics.control, 1, parse))
    assert state == {"a": 3, "c": 4}
