"""The health worker's Faust app: two agents (events, priced) and a timer around ``HealthEngine``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentledger.settings import Settings
from agentledger.streams.healthconfig import HealthConfig

from .engine import HealthEngine, Outgoing


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

    app.health_engine = engine
    return app
