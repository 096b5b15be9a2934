"""The health worker's Faust app: two agents (events, priced) and a timer around ``HealthEngine``."""

from __future__ import annotations

import asyncio
import logging
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


def build_health_app(
    cfg: HealthConfig,
    bootstrap: str,
    prefix: str,
    datadir: str | Path,
    start_from: str = "latest",
    settings: Settings | None = None,
) -> Any:
    """The Faust app: events and priced agents, a 1-second timer, outputs to control/alerts.

    ``start_from`` applies to a consumer group with no committed offsets: ``latest`` (default)
    so a first start does not judge a week of history as if it were live; tests use
    ``earliest``."""
    import faust

    from agentledger import topics

    engine = HealthEngine(cfg)
    app = faust.App(
        f"{prefix}agentledger-health",
        broker=[f"kafka://{b.strip()}" for b in bootstrap.split(",")],
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=topics.PARTITIONS,
        consumer_auto_offset_reset=start_from,
        producer_acks=-1,
        broker_credentials=faust_credentials(settings) if settings else None,
    )
    raw: dict[str, Any] = {
        "key_serializer": "raw",
        "value_serializer": "raw",
        "key_type": bytes,
        "value_type": bytes,
    }
    events = app.topic(prefix + topics.EVENTS.name, **raw)
    priced = app.topic(prefix + topics.PRICED.name, **raw)
    out_topics = {
        "control": app.topic(prefix + topics.CONTROL.name, **raw),
        "alerts": app.topic(prefix + topics.ALERTS.name, **raw),
    }

    async def publish(records: list[Outgoing]) -> None:
        for r in records:
            await out_topics[r.topic].send(key=r.key, value=r.value)

    @app.agent(events, name="health-events")  # type: ignore[untyped-decorator]
    async def on_events(stream: Any) -> None:
        async for value in stream:
            await publish(engine.on_events(value))

    @app.agent(priced, name="health-priced")  # type: ignore[untyped-decorator]
    async def on_priced(stream: Any) -> None:
        async for value in stream:
            await publish(engine.on_priced(value))

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        await publish(engine.tick())

    client_options = settings.kafka_client_options() if settings else {}

    @app.task  # type: ignore[untyped-decorator]
    async def follow_objectives_topic() -> None:
        await follow_objectives(engine, bootstrap, prefix, client_options, publish)

    app.health_engine = engine
    return app
