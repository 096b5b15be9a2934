"""The compacted policies topic: key = policy_id, value = ``wire.dump(Policy)``, tombstone = delete."""

from __future__ import annotations

from typing import Any

from agentledger import topics
from agentledger.events import Policy


async def put_policies(bootstrap: str, prefix: str, policies: list[Policy], **client: Any) -> None:
    """Publish (create or replace) policies; waits until the broker acknowledged every one."""
    from aiokafka import AIOKafkaProducer

    from agentledger.wire import dump

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client)
    await producer.start()
    try:
        topic = prefix + topics.POLICIES.name
        for p in policies:
            await producer.send_and_wait(topic, key=p.policy_id.encode(), value=dump(p))
    finally:
        await producer.stop()


async def delete_policy(bootstrap: str, prefix: str, policy_id: str, **client: Any) -> None:
    """Write a tombstone: the worker drops the policy and resumes what it enforced."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client)
    await producer.start()
    try:
        await producer.send_and_wait(prefix + topics.POLICIES.name, key=policy_id.encode(), value=None)
    finally:
        await producer.stop()


async def read_policies(bootstrap: str, prefix: str, **client: Any) -> dict[str, Policy]:
    """The current policies (latest value per key up to the end of the topic, tombstones removed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client
    )
    await consumer.start()
    out: dict[str, Policy] = {}
    try:
        topic = prefix + topics.POLICIES.name
        tps = [TopicPartition(topic, p) for p in range(topics.POLICIES.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    key = m.key.decode() if m.key else ""
                    if m.value is None:
                        out.pop(key, None)
                    else:
                        try:
                            out[key] = Policy.model_validate_json(m.value)
                        except ValueError:
                            continue  # not a valid policy: the worker ignores it too
    finally:
        await consumer.stop()
    return out


async def read_compacted(
    bootstrap: str, names: list[str], **client: Any
) -> list[tuple[str, str, bytes | None]]:
    """Every record of some single-partition compacted topics up to their end: (topic, key, value)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client
    )
    await consumer.start()
    out: list[tuple[str, str, bytes | None]] = []
    try:
        tps = [TopicPartition(n, 0) for n in names]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out += [(tp.topic, m.key.decode(errors="replace") if m.key else "", m.value) for m in msgs]
    finally:
        await consumer.stop()
    return out
