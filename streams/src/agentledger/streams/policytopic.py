"""The compacted policies topic: key = policy_id, value = ``wire.dump(Policy)``, tombstone = delete."""

from __future__ import annotations

from typing import Any

from agentledger import topics
from agentledger.compacted import publish, read_latest
from agentledger.events import Policy
from agentledger.wire import dump


def parse_policy(value: bytes) -> Policy | None:
    """One record's policy, or None when it does not validate (the worker ignores it)."""
    try:
        return Policy.model_validate_json(value)
    except ValueError:
        return None


async def put_policies(bootstrap: str, prefix: str, policies: list[Policy], **client: Any) -> None:
    """Publish (create or replace) policies; waits until the broker acknowledged every one."""
    records = [(p.policy_id, dump(p)) for p in policies]
    await publish(bootstrap, prefix + topics.POLICIES.name, records, client)


async def delete_policy(bootstrap: str, prefix: str, policy_id: str, **client: Any) -> None:
    """Write a tombstone: the worker drops the policy and resumes what it enforced."""
    await publish(bootstrap, prefix + topics.POLICIES.name, [(policy_id, None)], client)


async def read_policies(bootstrap: str, prefix: str, **client: Any) -> dict[str, Policy]:
    """The current policies (latest value per key up to the end of the topic, tombstones removed)."""
    return await read_latest(
        bootstrap, prefix + topics.POLICIES.name, topics.POLICIES.partitions, parse_policy, client
    )
