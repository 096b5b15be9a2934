"""Broker faults on the 3-node cluster (replication 3, min ISR 2): no acknowledged event lost.

Each test states what it injects and what it verified, and adds a row to the closing table.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agentledger.admin import create_topics
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope, encode_envelope

pytestmark = pytest.mark.faults


async def _leader_of(bootstrap: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(100):  # a just-created topic takes a moment to show its partitions
            meta = await admin.describe_topics([topic])
            leaders = [p["leader"] for p in meta[0]["partitions"] if p["partition"] == partition]
            if leaders and leaders[0] >= 0:
                return int(leaders[0])
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no leader for {topic}[{partition}]")
    finally:
        await admin.close()


async def _produce(
    bootstrap: str, topic: str, seconds: float, fault_at: float, inject
) -> tuple[int, set[str]]:  # type: ignore[no-untyped-def]
    """Send envelopes of 50 events for ``seconds``; call ``inject()`` at ``fault_at``.
    Returns (events sent, ids whose record the cluster acknowledged)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        request_timeout_ms=30000, retry_backoff_ms=200,
    )  # fmt: skip
    await producer.start()
    acked: set[str] = set()
    sent = 0
    pending = []
    start = time.monotonic()
    injection = None
    seed = 0
    try:
        while time.monotonic() - start < seconds:
            if injection is None and time.monotonic() - start >= fault_at:
                # the fault runs beside the producer: the stream does not pause for it
                injection = asyncio.get_running_loop().run_in_executor(None, inject)
            seed += 1
            batch = sample_events(50, seed=seed, tenant="acme", agent=f"a{seed % 8}", t0=datetime.now(UTC))
            sent += len(batch)
            try:
                fut = await producer.send(
                    topic, encode_envelope(batch[0].key, batch), key=batch[0].key.encode()
                )
            except KafkaError:  # not accepted (e.g. timed out while a leader was stopped): not acknowledged
                continue
            ids = [e.event_id for e in batch]
            fut.add_done_callback(lambda f, ids=ids: None if f.exception() else acked.update(ids))
            pending.append(fut)
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending, return_exceptions=True)
        if injection is not None:
            await injection
    finally:
        await producer.stop()
    return sent, acked


async def _read_all(bootstrap: str, topic: str, expect: int, timeout: float = 90) -> Counter[str]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and (sum(seen.values()) < expect or idle < 3):
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for rec in records:
                    seen.update(e.event_id for e in decode_envelope(rec.value).events)
    finally:
        await consumer.stop()
    return seen


def _account(row, sent: int, acked: set[str], seen: Counter[str]) -> None:  # type: ignore[no-untyped-def]
    row.sent, row.acked, row.found = sent, len(acked), len(seen)
    row.lost = len(acked - set(seen))
    row.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    row.after_dedupe = 0  # a Counter keyed by event_id is the dedupe


def test_sigkill_partition_leader_mid_stream(kafka_cluster3, topic_prefix, fault_row) -> None:
    """Inject: SIGKILL the leader of partition 0 of the events topic 2 s into a 10 s stream,
    restart it 5 s later. Verify: every acknowledged event is on the topic."""
    local, state = kafka_cluster3
    row = fault_row("SIGKILL partition leader, restart after 5 s")
    asyncio.run(create_topics(state.bootstrap, prefix=topic_prefix))
    topic = topic_prefix + "agentledger.events.v1"
    leader = asyncio.run(_leader_of(state.bootstrap, topic, 0))

    def kill() -> None:
        local.signal_node(leader, signal.SIGKILL)

    sent, acked = asyncio.run(_produce(state.bootstrap, topic, 10, 2, kill))
    local.restart_node(leader)
    seen = asyncio.run(_read_all(state.bootstrap, topic, len(acked)))
    _account(row, sent, acked, seen)
    row.notes.append(
        f"killed node {leader} (leader of partition 0); {sent - len(acked)} events unacknowledged"
    )
    assert len(acked) > 0.5 * sent
    assert row.lost == 0


def test_sigstop_broker_20s_then_sigcont(kafka_cluster3, topic_prefix, fault_row) -> None:
    """Inject: SIGSTOP one broker for 20 s while producing, then SIGCONT. Verify: the producer
    catches up and nothing acknowledged is lost."""
    local, state = kafka_cluster3
    row = fault_row("SIGSTOP a broker 20 s, SIGCONT")
    asyncio.run(create_topics(state.bootstrap, prefix=topic_prefix))
    topic = topic_prefix + "agentledger.events.v1"
    victim = asyncio.run(_leader_of(state.bootstrap, topic, 1))

    def stop_then_cont() -> None:
        local.signal_node(victim, signal.SIGSTOP)
        time.sleep(20)
        local.signal_node(victim, signal.SIGCONT)

    sent, acked = asyncio.run(_produce(state.bootstrap, topic, 26, 2, stop_then_cont))
    seen = asyncio.run(_read_all(state.bootstrap, topic, len(acked)))
    _account(row, sent, acked, seen)
    row.notes.append(f"stopped node {victim} for 20 s")
    row.notes.append(
        f"{sent - len(acked)} events not acknowledged while the leader was stopped (the producer reports them)"
    )
    assert row.lost == 0
    assert len(acked) >= 0.5 * sent
