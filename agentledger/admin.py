"""Topic administration: create every topic idempotently, describe them."""

from __future__ import annotations

from dataclasses import dataclass

from agentledger import topics
from agentledger.settings import Settings


@dataclass(slots=True)
class TopicResult:
    name: str
    created: bool
    partitions: int
    compacted: bool


async def create_topics(
    bootstrap: str,
    specs: tuple[topics.TopicSpec, ...] = topics.ALL,
    prefix: str = "",
    replication: int | None = None,
    settings: Settings | None = None,
) -> list[TopicResult]:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    opts = settings.kafka_client_options() if settings else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **opts)  # type: ignore[arg-type]
    await admin.start()
    try:
        if replication is None:
            meta = await admin.describe_cluster()
            replication = min(3, len(meta["brokers"]))
        min_isr = 2 if replication >= 3 else None
        existing = set(await admin.list_topics())
        wanted = [topics.with_prefix(s, prefix) for s in specs]
        new = [
            NewTopic(s.name, s.partitions, replication, topic_configs=s.topic_config(min_isr))
            for s in wanted
            if s.name not in existing
        ]
        if new:
            resp = await admin.create_topics(new)
            for name, code, *_ in getattr(resp, "topic_errors", getattr(resp, "topic_error_codes", [])):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent create)
                    raise RuntimeError(f"creating topic {name} failed with Kafka error {code}")
        return [TopicResult(s.name, s.name not in existing, s.partitions, s.compacted) for s in wanted]
    finally:
        await admin.close()
