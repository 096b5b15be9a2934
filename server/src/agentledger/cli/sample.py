"""``agentledger smoke``: produce sample events of every type and read them back."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import typer

from agentledger.cli._common import bootstrap, console, settings


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke)


def smoke(
    events: int = typer.Option(400, min=4, help="How many sample events to send."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for them to come back."),
) -> None:
    """Send sample events (span, usage, quality, tool_call) to the events topic and read them back."""
    from agentledger import topics
    from agentledger.admin import create_topics
    from agentledger.samples import sample_events

    s = settings()
    boot = bootstrap(s)
    asyncio.run(create_topics(boot, prefix=s.topic_prefix, settings=s))
    batch = sample_events(events, seed=int(time.time()), t0=datetime.now(UTC))
    topic = s.topic_prefix + topics.EVENTS.name
    sent, found, secs = asyncio.run(_roundtrip(boot, topic, batch, timeout))
    console.print(
        f"sent {sent} events in envelopes to {topic}; read back {found} equal events in {secs:.2f}s"
    )
    if found != sent:
        raise typer.Exit(1)


async def _roundtrip(boot: str, topic: str, batch, timeout: float):  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from agentledger.wire import decode_envelope, encode_envelope

    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all", enable_idempotence=True)
    await producer.start()
    started = time.monotonic()
    try:
        marks = []
        for i in range(0, len(batch), 100):
            chunk = batch[i : i + 100]
            meta = await producer.send_and_wait(
                topic, encode_envelope(chunk[0].key, chunk), key=chunk[0].key.encode()
            )
            marks.append((meta.partition, meta.offset))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False)
    await consumer.start()
    wanted = {e.event_id: e for e in batch}
    found = 0
    try:
        parts = {p for p, _ in marks}
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, min(o for p, o in marks if p == tp.partition))
        deadline = time.monotonic() + timeout
        while found < len(batch) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    for ev in decode_envelope(rec.value).events:
                        if wanted.pop(ev.event_id, None) == ev:
                            found += 1
    finally:
        await consumer.stop()
    return len(batch), found, time.monotonic() - started
