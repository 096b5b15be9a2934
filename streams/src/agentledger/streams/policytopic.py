"""The compacted policies topic: key = policy_id, value = ``wire.dump(Policy)``, tombstone = delete."""

from __future__ import annotations

from typing import Any

from agentledger import topics
from agentledger.compacted import read_to_end
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
    topic = prefix + topics.POLICIES.name
    out: dict[str, Policy] = {}
    for r in await read_to_end(
        bootstrap, [topic], client, partitions={topic: range(topics.POLICIES.partitions)}
    ):
        if r.value is None:
            out.pop(r.text_key, None)
        else:
            try:
                out[r.text_key] = Policy.model_validate_json(r.value)
            except ValueError:
                continue  # not a valid policy: the worker ignores it too
    return out
