"""The health worker's Faust app: wiring around ``HealthEngine`` (docs/adr/0012).

* stage one: agents on the events and priced topics (keyed tenant/agent): drift and canary;
  each record's LLM calls go out as provider observations on the providers topic;
* stage two: an agent on the providers topic (keyed by provider): circuits and failover;
* one changelog-backed table ``state`` (memory store, key ``<partition>|a|<tenant>/<agent>``
  or ``<partition>|p|<provider>``, value compact JSON) holds every detector's state. Changed
  keys are written every ``state_flush_s``, each once, to the changelog partition named by the
  key's prefix, and only then are the records behind them acked (as the budget worker does,
  docs/adr/0005): a restarted or moved partition resumes with its state;
* a 1-second timer: time alone moves circuits and canary verdicts.

All three input topics have the same partition count, so Faust gives partition ``p`` of each
to one worker, with changelog partition ``p``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentledger.settings import Settings
from agentledger.streams.healthconfig import HealthConfig

from .engine import HealthEngine, Outgoing

log = logging.getLogger("agentledger.streams.health")


def _objectives_reader(bootstrap: str, prefix: str, client_options: dict[str, Any]) -> Any:
    from agentledger import topics
    from agentledger.compacted import CompactedReader

    return CompactedReader(bootstrap, [prefix + topics.OBJECTIVES.name], client_options)


async def preload_objectives(
    engine: HealthEngine, bootstrap: str, prefix: str, client_options: dict[str, Any]
) -> int:
    """Read the objectives topic to its end before the first event is judged (a restarted
    worker counts the first spans against every objective in force). Returns how many."""
    async with _objectives_reader(bootstrap, prefix, client_options) as reader:
        await reader.assign()
        for r in await reader.read_to_end():
            engine.observe_objective(r.text_key, r.value)
    return len(engine.slo.objectives)


async def follow_objectives(
    engine: HealthEngine,
    bootstrap: str,
    prefix: str,
    client_options: dict[str, Any],
    publish: Callable[[list[Outgoing]], Awaitable[None]],
) -> None:
    """Follow the objectives topic from its start for as long as the worker runs: a PUT through
    the API or ``agentledger objectives apply`` starts (a delete stops) judging it within a
    second. The same definition read again changes nothing. A lost broker is retried."""
    while True:
        try:
            async with _objectives_reader(bootstrap, prefix, client_options) as reader:
                await reader.assign()
                while True:
                    for r in await reader.poll():
                        await publish(engine.observe_objective(r.text_key, r.value))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep following; the worker must not die here
            log.warning("objectives topic: %s; reading it again in 5 s", exc)
            await asyncio.sleep(5)


async def follow_rollouts(
    engine: HealthEngine, bootstrap: str, prefix: str, client_options: dict[str, Any]
) -> None:
    """Read the rollouts topic and the control topic's route commands to their end (a restarted
    controller goes on at the step it announced), then follow the rollouts topic: a rollout
    started, paused, promoted or aborted through the API or the CLI reaches the controller
    within a second. A lost broker is retried."""
    from agentledger import topics
    from agentledger.compacted import CompactedReader
    from agentledger.events import Authority, Lane, parse_control_key

    rollouts, control = prefix + topics.ROLLOUTS.name, prefix + topics.CONTROL.name
    while True:
        try:
            async with CompactedReader(bootstrap, [rollouts, control], client_options) as reader:
                await reader.assign()
                routes: list[bytes] = []
                for r in await reader.read_to_end():
                    if r.topic == rollouts:
                        engine.observe_rollout(r.text_key, r.value)
                    elif r.value is not None:
                        parsed = parse_control_key(r.text_key)
                        if parsed is not None and parsed[:2] == (Lane.ROLLOUT, Authority.HEALTH):
                            routes.append(r.value)
                for value in routes:  # after every rollout is known
                    engine.observe_route(value)
                while True:
                    for r in await reader.poll():
                        if r.topic == rollouts:
                            engine.observe_rollout(r.text_key, r.value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep following; the worker must not die here
            log.warning("rollouts topic: %s; reading it again in 5 s", exc)
            await asyncio.sleep(5)


Ack = Callable[[Any], Awaitable[None]]


def faust_credentials(settings: Settings) -> Any:
    """Faust's form of the SASL/TLS options every other client gets from the settings."""
    import ssl

    import faust

    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    context = (
        ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_security_protocol.endswith("SSL")
        else None
    )
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context)


class HealthRuntime:
    """Publish a record's outputs, keep it pending, write changed state, then ack (Faust-free).

    ``publish`` sends records (control, alerts, providers); ``write_state`` sends one state
    key to its changelog partition (and the table's store). A failed write acks nothing and
    keeps the keys changed. ``transient`` errors (broker away) are logged, never raised out of
    a timer."""

    def __init__(
        self,
        engine: HealthEngine,
        publish: Callable[[list[Outgoing]], Awaitable[None]],
        write_state: Callable[[int, str, bytes], Awaitable[None]],
        *,
        state_flush_s: float = 0.2,
        transient: tuple[type[BaseException], ...] = (OSError, TimeoutError),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.publish, self.write_state = engine, publish, write_state
        self.state_flush_s, self.transient, self.clock = state_flush_s, transient, clock
        self.pending: list[tuple[int, Ack, Any]] = []  # (source partition, ack, token)
        self.last_flush = clock()
        self._lock = asyncio.Lock()

    async def on_record(
        self, source: str, raw: bytes, partition: int, offset: int, ack: Ack, token: Any
    ) -> None:
        eng = self.engine
        if source == "events":
            out = eng.on_events(raw, partition, offset)
        elif source == "priced":
            out = eng.on_priced(raw, partition, offset)
        else:
            out = eng.on_observations(raw, partition)
        await self.publish(out)
        self.pending.append((partition, ack, token))
        if self.clock() - self.last_flush >= self.state_flush_s:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            self.last_flush = self.clock()
            changes, records = self.engine.take_changes(), self.pending[:]
            self.pending.clear()
            try:
                for part, key, value in changes:
                    await self.write_state(part, key, value)
            except BaseException:
                self.engine.mark_changed([k for _, k, _ in changes])
                self.pending[:0] = records
                raise
            for _, ack, token in records:
                await ack(token)

    async def tick(self, settled: bool = True) -> None:
        """The timer's step: time-driven transitions (only ``settled``: no rebalance under way,
        saved state recovered), then a flush if anything is waiting. The flush is never gated:
        the last records of a burst wait for it to be acked."""
        if settled:
            await self.publish(self.engine.tick())
        if self.pending or self.engine.dirty or self.engine.canary.changed:
            try:
                await self.flush()
            except self.transient as exc:
                log.warning("health state flush failed, retrying: %r", exc)

    async def revoked(self, partitions: set[int]) -> None:
        """Partitions lost. First the state of every record processed is written and those
        records acked: Faust revokes every partition in a rebalance and gives some back without
        fetching their unacked records again, so state dropped unwritten would be lost. Then
        the revoked partitions' state is forgotten here (the next owner loads it from the
        changelog, and skips records it already has). If the write fails, the records stay
        unacked (a restart replays them)."""
        if not partitions:
            return
        errors: tuple[type[BaseException], ...] = (*self.transient, asyncio.TimeoutError)
        try:
            await asyncio.wait_for(self.flush(), 10)
        except errors as exc:
            log.warning("health state not written before a rebalance: %r", exc)
        self.pending[:] = [r for r in self.pending if r[0] not in partitions]
        self.engine.revoked(partitions)


def build_health_app(
    cfg: HealthConfig,
    bootstrap: str,
    prefix: str,
    datadir: str | Path,
    start_from: str = "latest",
    settings: Settings | None = None,
    *,
    state_flush_s: float = 0.2,
    replication: int | None = None,
    session_timeout_s: float = 10.0,
) -> Any:
    """The Faust app (not started); ``app.health_engine`` and ``app.health_runtime`` hold the
    logic.

    ``start_from`` applies to a consumer group with no committed offsets: ``latest`` (default)
    so a first start does not judge a week of history as if it were live; tests use
    ``earliest``."""
    import faust
    from aiokafka.errors import KafkaError

    from agentledger import topics

    app = faust.App(
        f"{prefix}agentledger-health",
        broker=[f"kafka://{b.strip()}" for b in bootstrap.split(",")],
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=topics.PARTITIONS,
        consumer_auto_offset_reset=start_from,
        producer_acks=-1,
        broker_commit_interval=1.0,
        # a restarted worker gets its partitions back once the dead one's session expires
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=min(3.0, session_timeout_s / 3),
        stream_wait_empty=False,
        table_standby_replicas=0,
        topic_replication_factor=replication or 1,
        broker_credentials=faust_credentials(settings) if settings else None,
    )
    raw: dict[str, Any] = {
        "key_serializer": "raw",
        "value_serializer": "raw",
        "key_type": bytes,
        "value_type": bytes,
    }
    sources = {
        "events": app.topic(prefix + topics.EVENTS.name, **raw),
        "priced": app.topic(prefix + topics.PRICED.name, **raw),
        "providers": app.topic(prefix + topics.HEALTH_PROVIDERS.name, **raw),
    }
    source_names = {t.get_topic_name() for t in sources.values()}
    out_topics = {
        "control": app.topic(prefix + topics.CONTROL.name, **raw),
        "alerts": app.topic(prefix + topics.ALERTS.name, **raw),
        "providers": sources["providers"],
    }
    table = app.Table(
        "state",
        default=None,
        schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"),
        partitions=topics.PARTITIONS,
    )
    engine = HealthEngine(cfg, table=table, repartition=True)

    async def publish(records: list[Outgoing]) -> None:
        for r in records:
            await out_topics[r.topic].send(key=r.key, value=r.value)

    async def write_state(partition: int, key: str, value: bytes) -> None:
        table.data[key] = value
        await table.changelog_topic.send(
            key=key, value=value, partition=partition, key_serializer="json", value_serializer="raw"
        )

    runtime = HealthRuntime(
        engine,
        publish,
        write_state,
        state_flush_s=state_flush_s,
        transient=(KafkaError, OSError, TimeoutError),
    )

    def consume(source: str) -> Callable[[Any], Awaitable[None]]:
        async def agent(stream: Any) -> None:
            manual = stream.noack()
            async for event in manual.events():
                msg = event.message
                value = event.value if isinstance(event.value, bytes) else b""
                await runtime.on_record(source, value, msg.partition, msg.offset, manual.ack, event)

        agent.__name__ = f"health_{source}"
        return agent

    for source, topic in sources.items():
        app.agent(topic, name=f"health-{source}", concurrency=1)(consume(source))

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        engine.assigned({tp.partition for tp in assigned if tp.topic in source_names})

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        await runtime.revoked({tp.partition for tp in revoked if tp.topic in source_names})

    async def tick() -> None:
        settled = not app.rebalancing and app.tables.recovery.completed.is_set()
        try:
            await runtime.tick(settled)
        except Exception:  # an exception in a Faust timer stops the worker
            log.exception("health tick failed")

    client_options = settings.kafka_client_options() if settings else {}

    @app.task  # type: ignore[untyped-decorator]
    async def follow_objectives_topic() -> None:
        await follow_objectives(engine, bootstrap, prefix, client_options, publish)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_rollouts_topic() -> None:
        await follow_rollouts(engine, bootstrap, prefix, client_options)

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    app.timer(interval=1.0)(tick)
    app.health_engine = engine
    app.health_runtime = runtime
    return app
