"""The contract on the real broker: every event type survives a produce/consume round trip,
the compacted control topic keeps the latest command per scope, topic creation is idempotent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agentledger import topics as specs
from agentledger.events import ControlCommand, Scope, ScopeKind
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope, dump, encode_envelope

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


async def _consume_all(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0, group: str | None = None
):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    out = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
        if group:
            await consumer.commit()
    finally:
        await consumer.stop()
    return out


def test_every_event_type_round_trips(topics) -> None:
    events = sample_events(200, seed=11, t0=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        for i in range(0, 200, 50):
            chunk = events[i : i + 50]
            await producer.send_and_wait(topics.events, encode_envelope(chunk[0].key, chunk),
                                         key=chunk[0].key.encode(), timestamp_ms=int(chunk[-1].ts.timestamp() * 1000))  # fmt: skip
        await producer.stop()
        return await _consume_all(topics.bootstrap, topics.events, 4, group="roundtrip")

    records = asyncio.run(run())
    got = [ev for rec in records for ev in decode_envelope(rec.value).events]
    assert got == events  # one key, one partition: order kept
    assert {r.key for r in records} == {b"acme/planner"}
    assert records[-1].timestamp == int(events[-1].ts.timestamp() * 1000)  # record time = event time


def _command(i: int, scope: Scope, action: str) -> ControlCommand:
    params = {"rate_per_s": 1.0} if action == "throttle" else {}
    return ControlCommand(command_id=f"cmd-{i:08d}", ts=T0 + timedelta(seconds=i), scope=scope,
                          action=action, reason="test", params=params)  # fmt: skip


def test_control_topic_keeps_latest_command_per_scope(topics) -> None:
    scopes = [Scope(kind=ScopeKind.AGENT, tenant="acme", agent=f"a{i}") for i in range(5)]
    history = [
        _command(i * 10 + j, s, a)
        for i, s in enumerate(scopes)
        for j, a in enumerate(("throttle", "kill", "resume", "kill"))
    ]
    latest = {s.key: history[i * 4 + 3] for i, s in enumerate(scopes)}
    topic = topics.prefix + "compaction-check"

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=topics.bootstrap)
        await admin.start()
        # the real control topic's settings, with segments small enough to roll within the test
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
            "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.001",
            "delete.retention.ms": "100", "min.compaction.lag.ms": "0"})])  # fmt: skip
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        for cmd in history:
            await producer.send_and_wait(topic, dump(cmd), key=cmd.scope.key.encode())
        # compaction never touches the active segment: keep rolling it until the cleaner ran
        deadline = time.monotonic() + 60
        seen: list = []
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            await producer.send_and_wait(topic, b"{}", key=b"roll")
            seen = await _consume_all(topics.bootstrap, topic, 10_000, timeout=2.0)
            if len([r for r in seen if r.key != b"roll"]) == len(scopes):
                break
        await producer.stop()
        return seen

    records = [r for r in asyncio.run(run()) if r.key != b"roll"]
    state = {r.key.decode(): ControlCommand.model_validate_json(r.value) for r in records}
    assert state == latest  # reading from the start gives the latest state per scope
    assert len(records) == len(scopes)  # and compaction removed the older commands


def test_topics_create_twice_is_fine(kafka_bootstrap: str, topic_prefix: str) -> None:
    env = {
        **os.environ,
        "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AGENTLEDGER_TOPIC_PREFIX": topic_prefix,
    }
    cmd = [sys.executable, "-m", "agentledger", "topics", "create"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.count("created") == len(specs.ALL)
    assert second.stdout.count("exists") == len(specs.ALL) and "created" not in second.stdout
    assert f"{topic_prefix}agentledger.control.v1" in second.stdout


def test_faust_consumes_in_a_group_and_commits(topics, tmp_path) -> None:
    """The pinned broker works with faust-streaming: a Faust agent consumes our envelopes."""
    script = tmp_path / "app.py"
    group = f"t-{topics.prefix}faust"
    script.write_text(f'''
import os, time, faust
from agentledger.wire import decode_envelope
app = faust.App("{group}", broker="kafka://{topics.bootstrap}", store="memory://",
                web_enabled=False, datadir="{tmp_path}/data", topic_partitions=4, broker_commit_every=1)
src = app.topic("{topics.events}", value_serializer="raw")
seen = set()
done_at = []
@app.agent(src)
async def count(stream):
    async for value in stream:
        seen.update(e.event_id for e in decode_envelope(value).events)
        if len(seen) >= 40:
            print(f"FAUST-SAW-{{len(seen)}}", flush=True)
            done_at.append(time.monotonic())
@app.timer(1.0)
async def done():
    if done_at and time.monotonic() - done_at[0] > 6:  # past two commit intervals (2.8 s)
        os._exit(0)
app.main()
''')
    events = sample_events(40, seed=5, t0=datetime.now(UTC) - timedelta(minutes=5))

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        await producer.send_and_wait(
            topics.events, encode_envelope(events[0].key, events), key=events[0].key.encode()
        )
        await producer.stop()

    asyncio.run(produce())
    proc = subprocess.run(
        [sys.executable, str(script), "worker", "-l", "warn"], capture_output=True, text=True, timeout=120
    )
    assert "FAUST-SAW-40" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]

    async def committed():
        admin = AIOKafkaAdminClient(bootstrap_servers=topics.bootstrap)
        await admin.start()
        try:
            return await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()

    offsets = {
        tp.partition: meta.offset
        for tp, meta in asyncio.run(committed()).items()
        if tp.topic == topics.events
    }
    assert 1 in offsets.values()  # the one envelope's partition is committed past it
