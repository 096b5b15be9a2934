"""Refuse to start a worker whose table changelog could never be written.

Faust creates the rollup changelog itself, with ``--replication`` replicas (default 1), and
produces with ``acks=all``. Where brokers require ``min.insync.replicas`` > that, every
changelog write fails with a retriable error forever and the worker stalls without a word
(seen on the 3-node fault-suite cluster). Checked once at start-up, before Faust runs.
"""

from __future__ import annotations

from agentledger.errors import ConfigError


def check_changelog_replication(replication: int, min_insync: int, existing_replicas: int | None) -> None:
    """Raise ``ConfigError`` when the changelog's replicas cannot satisfy ``min_insync``.

    ``existing_replicas`` is the replica count of the changelog topic if it already exists
    (Faust never changes it), else ``None`` (Faust will create it with ``replication``)."""
    replicas = existing_replicas if existing_replicas is not None else replication
    if replicas >= min_insync:
        return
    if existing_replicas is not None:
        raise ConfigError(
            f"the worker's changelog topic has {replicas} replica(s) but the brokers require "
            f"min.insync.replicas={min_insync}: every write would fail and the worker would stall. "
            "Recreate the topic with more replicas (or lower min.insync.replicas on it)."
        )
    raise ConfigError(
        f"the worker would create its changelog with {replicas} replica(s) but the brokers require "
        f"min.insync.replicas={min_insync}: every write would fail and the worker would stall. "
        f"Start it with --replication {max(min_insync, 3)}."
    )


async def cluster_facts(
    bootstrap: str, changelog_topic: str, client_options: dict[str, object]
) -> tuple[int, int | None]:
    """(brokers' default min.insync.replicas, replicas of ``changelog_topic`` or None)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)  # type: ignore[arg-type]
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        broker = str(cluster["brokers"][0]["node_id"])
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker)])
        entries = resp[0].resources[0][4]
        min_insync = next((int(e[1]) for e in entries if e[0] == "min.insync.replicas"), 1)
        existing: int | None = None
        if changelog_topic in set(await admin.list_topics()):
            meta = await admin.describe_topics([changelog_topic])
            existing = min(len(p["replicas"]) for p in meta[0]["partitions"])
        return min_insync, existing
    finally:
        await admin.close()
