"""What a script recorded before it exits is on the topic: short scripts addressed by host name
(``localhost``, as the README writes it), forked children, the OpenTelemetry bridge; and an
unreachable broker costs one WARNING with the number lost, not a hang."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agentledger import wire
from agentledger.collectors import Emitter
from agentledger.events import BaseEvent


def read_events(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[BaseEvent]:
    """Every event on ``topic`` (stops once ``expect`` were read and nothing more comes)."""

    async def read() -> list[BaseEvent]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[BaseEvent] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        decoded = wire.decode_envelope(record.value)
                        assert decoded.rejected == []
                        out.extend(decoded.events)
                if len(out) >= expect and not batch:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


_SCRIPT = textwrap.dedent(
    """
    import sys
    from agentledger import collectors as al

    al.configure(tenant="acme", agent=sys.argv[2], bootstrap=sys.argv[1], topic=sys.argv[3])
    for _ in range(int(sys.argv[4])):
        print(al.record_usage("openai", "gpt-4o", input_tokens=1200, output_tokens=80), flush=True)
    """
)


def by_name(bootstrap: str) -> str:
    """The same broker addressed as ``localhost``: name resolution is what used to fail at exit."""
    return ",".join("localhost:" + address.rsplit(":", 1)[1] for address in bootstrap.split(","))


def run(
    tmp_path: Path, source: str, *args: object, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    if not script.exists():
        script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def topic_ids(bootstrap: str, topic: str, expect: int) -> list[str]:
    return [e.event_id for e in read_events(bootstrap, topic, expect)]


def test_twenty_scripts_that_record_and_exit_deliver_every_event(topics: Any, tmp_path: Path) -> None:
    bootstrap = by_name(topics.bootstrap)
    counts = [1 if i % 4 == 0 else 5 for i in range(20)]  # one-call scripts and a few calls

    def one(i: int) -> subprocess.CompletedProcess[str]:
        return run(tmp_path, _SCRIPT, bootstrap, f"script-{i}", topics.events, counts[i])

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(one, range(20)))
    recorded: list[str] = []
    for proc in done:
        assert proc.returncode == 0, proc.stderr
        assert "lost" not in proc.stderr, proc.stderr
        recorded += proc.stdout.split()
    assert len(recorded) == sum(counts)
    on_topic = topic_ids(topics.bootstrap, topics.events, len(recorded))
    assert sorted(on_topic) == sorted(recorded)  # every event, once


_FORK = textwrap.dedent(
    """
    import multiprocessing, os, sys
    from agentledger import collectors as al

    def child(tag):
        for _ in range(3):
            print(al.record_usage("openai", "gpt-4o", input_tokens=10, output_tokens=1, attributes={"who": tag}), flush=True)

    al.configure(tenant="acme", agent="forker", bootstrap=sys.argv[1], topic=sys.argv[2])
    print(al.record_usage("openai", "gpt-4o", input_tokens=10, output_tokens=1), flush=True)
    al.flush()  # the parent's producer is connected before it forks
    pid = os.fork()
    if pid == 0:
        child("os.fork")
        sys.exit(0)  # a normal exit of the child
    os.waitpid(pid, 0)
    proc = multiprocessing.get_context("fork").Process(target=child, args=("multiprocessing",))
    proc.start()
    proc.join()
    print(al.record_usage("openai", "gpt-4o", input_tokens=10, output_tokens=1), flush=True)
    """
)


def test_forked_children_deliver_what_they_record(topics: Any, tmp_path: Path) -> None:
    proc = run(tmp_path, _FORK, by_name(topics.bootstrap), topics.events)
    assert proc.returncode == 0, proc.stderr
    recorded = proc.stdout.split()
    assert len(recorded) == 8  # parent 2, os.fork child 3, multiprocessing child 3
    on_topic = topic_ids(topics.bootstrap, topics.events, len(recorded))
    assert sorted(on_topic) == sorted(recorded)


_OTEL = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from agentledger import collectors as al
    from agentledger.collectors.otel import AgentLedgerSpanProcessor

    al.configure(tenant="acme", agent="support-bot", bootstrap=sys.argv[1], topic=sys.argv[2])
    provider = TracerProvider()
    provider.add_span_processor(AgentLedgerSpanProcessor())
    tracer = provider.get_tracer("script")
    for i in range(int(sys.argv[3])):
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o", "gen_ai.response.id": f"resp-{i}",
                                 "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 7})
    """
)


def test_otel_bridge_script_delivers_at_exit(topics: Any, tmp_path: Path) -> None:
    proc = run(tmp_path, _OTEL, by_name(topics.bootstrap), topics.events, 3)
    assert proc.returncode == 0, proc.stderr
    events = read_events(topics.bootstrap, topics.events, 3)
    assert sorted(getattr(e, "input_tokens", 0) for e in events if e.type == "usage") == [100, 100, 100]


@pytest.mark.parametrize("how", ["shutdown", "force_flush"])
def test_otel_bridge_shutdown_and_force_flush_deliver(topics: Any, how: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from agentledger.collectors.otel import AgentLedgerSpanProcessor

    em = Emitter(tenant="acme", agent="bot", bootstrap=by_name(topics.bootstrap), topic=topics.events)
    provider = TracerProvider()
    provider.add_span_processor(AgentLedgerSpanProcessor(em, interval_s=3600))  # only the call maps
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5,
                             "gen_ai.usage.output_tokens": 2})  # fmt: skip
    try:
        if how == "shutdown":
            provider.shutdown()
        else:
            assert provider.force_flush(10_000)
        stats = em.stats()  # acknowledged by the broker when the call returned:
        assert stats["queued"] == 0 and stats["sent"] >= 1
    finally:
        em.shutdown()
    events = read_events(topics.bootstrap, topics.events, stats["sent"])
    assert len(events) == stats["sent"]
    assert [getattr(e, "input_tokens", None) for e in events if e.type == "usage"] == [5]


def test_unreachable_broker_at_exit_warns_with_the_number_lost(tmp_path: Path) -> None:
    from agentledger.localkafka import free_ports

    (port,) = free_ports(1)  # nothing listens here
    # the timeout is a hang check: the exit budget is 2 s, the producer would retry for minutes
    proc = run(tmp_path, _SCRIPT, f"localhost:{port}", "lonely", "t", 7, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert "lost 7 recorded events" in proc.stderr, proc.stderr  # logging's default: WARNING and up
