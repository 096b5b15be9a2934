"""Topic administration: create every topic idempotently, describe them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentledger import topics
from agentledger.errors import ConfigError, TransientError
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
        await _wait_group_coordinator(admin)
        return [TopicResult(s.name, s.name not in existing, s.partitions, s.compacted) for s in wanted]
    finally:
        await admin.close()


KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1048588
"""Kafka's default ``message.max.bytes`` (used only when the broker cannot be asked)."""
RECORD_OVERHEAD_BYTES = 1024
"""Room left for the record key (at most 257 bytes for ``tenant/agent``), the record and batch
headers (about 80 bytes) and headers; generous on purpose: a record that is a little smaller
than it could be costs nothing, one that is too large is refused by the broker."""


async def record_value_limit(
    bootstrap: str,
    topic: str,
    settings: Settings | None = None,
    margin: int = RECORD_OVERHEAD_BYTES,
    options: dict[str, Any] | None = None,
) -> int:
    """The largest record *value* the broker takes on ``topic``, read from the broker.

    Asks for the topic's effective ``max.message.bytes`` (the broker's ``message.max.bytes``
    unless the topic overrides it); when the topic does not exist yet, the broker's own
    ``message.max.bytes``. Returns that size less ``margin``. Call it at start and size every
    envelope with ``agentledger.wire.split_encoded``. Raises ``KafkaError`` when the broker
    cannot be reached or refuses to describe its configs (e.g. no DescribeConfigs ACL): the
    caller decides whether to fall back to ``KAFKA_DEFAULT_MAX_MESSAGE_BYTES``.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    opts = options if options is not None else settings.kafka_client_options() if settings else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **opts)
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            wanted = [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
            name = "max.message.bytes"
        else:
            meta = await admin.describe_cluster()
            broker = str(meta["brokers"][0]["node_id"])
            wanted = [ConfigResource(ConfigResourceType.BROKER, broker, {"message.max.bytes": None})]
            name = "message.max.bytes"
        limit = _config_value(await admin.describe_configs(wanted), name)
    finally:
        await admin.close()
    if limit is None:
        limit = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    return max(1, limit - margin)


def _config_value(responses: list[object], name: str) -> int | None:
    """The integer value of config ``name`` in DescribeConfigs responses (any version)."""
    for response in responses:
        for resource in getattr(response, "resources", []):
            error_code, error_message = resource[0], resource[1]
            if error_code:
                from aiokafka.errors import for_code

                raise for_code(error_code)(f"describe configs: {error_message}")
            for entry in resource[4]:
                if entry[0] == name and entry[1] is not None:
                    return int(entry[1])
    return None


async def _wait_group_coordinator(admin: object, timeout_s: float = 30.0) -> None:
    """Have a fresh broker create its offsets topic now: otherwise the first service to join a
    consumer group logs a screen of GroupCoordinatorNotAvailable errors while it waits."""
    import asyncio

    from aiokafka.errors import KafkaError

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.find_coordinator("agentledger")  # type: ignore[attr-defined]
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                return  # the services wait for it themselves
            await asyncio.sleep(0.2)


class BrokerUnavailable(TransientError):
    """No broker of the bootstrap list answers: start it (or fix the address) and retry."""


class TopicsNotReady(ConfigError):
    """Topics a service needs are missing or have the wrong cleanup policy."""


def probe_broker(bootstrap: str, timeout_s: float = 3.0) -> None:
    """Raise ``BrokerUnavailable`` unless some ``host:port`` of ``bootstrap`` accepts a TCP
    connection within ``timeout_s`` (a dead broker is a one-line answer, not a retry loop)."""
    import socket

    for addr in (a.strip() for a in bootstrap.split(",") if a.strip()):
        host, _, port = addr.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or addr, int(port or 9092)), timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise BrokerUnavailable(
        f"no Kafka broker answers at {bootstrap}: start it (`agentledger kafka up`) "
        "or fix AGENTLEDGER_KAFKA_BOOTSTRAP"
    )


async def topic_problems(
    bootstrap: str,
    specs: tuple[topics.TopicSpec, ...],
    prefix: str = "",
    client_options: dict[str, object] | None = None,
) -> list[str]:
    """What is wrong with ``specs`` on the cluster: missing topics, compacted topics whose
    ``cleanup.policy`` is not compact. Empty when everything is in place."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))  # type: ignore[arg-type]
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [topics.with_prefix(s, prefix) for s in specs]
        missing = [s.name for s in wanted if s.name not in existing]
        problems = [f"missing topic{'s' if len(missing) > 1 else ''} {', '.join(missing)}"] if missing else []
        compacted = [s.name for s in wanted if s.compacted and s.name in existing]
        if compacted:
            try:
                resp = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name) for name in compacted]
                )
            except KafkaError:  # e.g. no DescribeConfigs ACL on a shared cluster: existence must do
                resp = []
            for response in resp:
                for code, _msg, _kind, name, entries in response.resources:
                    if code:  # not allowed to see it: existence must do
                        continue
                    policy = next((e[1] for e in entries if e[0] == "cleanup.policy"), "delete")
                    if "compact" not in str(policy).split(","):
                        problems.append(f"{name} has cleanup.policy={policy} but must be compact")
        return problems
    finally:
        await admin.close()


def require_topics(
    bootstrap: str,
    service: str,
    prefix: str = "",
    client_options: dict[str, object] | None = None,
) -> None:
    """Refuse to start ``service`` (a key of ``topics.NEEDED_BY``) when its topics are not in
    place; the one-line message says what is wrong and what to run."""
    import asyncio

    problems = asyncio.run(topic_problems(bootstrap, topics.NEEDED_BY[service], prefix, client_options))
    if not problems:
        return
    fix = "run `agentledger topics create`"
    if any("cleanup.policy" in p for p in problems):
        fix += " after deleting the wrong topics (a delete-policy topic loses the state per key)"
    raise TopicsNotReady(f"{service} cannot start: {'; '.join(problems)}: {fix}")
