"""Shared by the health-worker integration tests: an `agentledger health` subprocess started as
a user starts it, and ``Tail``, a reader of everything a worker publishes on a topic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition


def health_env(bootstrap: str, prefix: str, home: Path) -> dict[str, str]:
    """The environment a user sets for ``agentledger``: the broker, the topic prefix, a home."""
    return {
        **os.environ,
        "AGENTLEDGER_KAFKA_BOOTSTRAP": bootstrap,
        "AGENTLEDGER_TOPIC_PREFIX": prefix,
        "AGENTLEDGER_HOME": str(home),
    }


def start_health(env: dict[str, str], config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``agentledger health --config CONFIG --from earliest EXTRA...``, its output in ``log``."""
    args = [
        sys.executable,
        "-m",
        "agentledger",
        "health",
        "--config",
        str(config),
        "--from",
        "earliest",
        *extra,
    ]
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_health(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) and wait; a worker that does not stop in 20 s is killed."""
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Tail:
    """Everything published on a topic since the beginning, polled as we go (tombstones left out)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.values: list[bytes] = []

    async def __aenter__(self) -> Tail:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> list[bytes]:
        """Every value read so far, after one more poll of up to 200 ms."""
        for records in (await self.consumer.getmany(timeout_ms=200)).values():
            self.values.extend(r.value for r in records if r.value is not None)
        return self.values

    async def drain(self, quiet_s: float = 2.0) -> list[bytes]:
        """Poll until nothing new arrived for ``quiet_s``."""
        seen, last = len(self.values), time.monotonic()
        while time.monotonic() - last < quiet_s:
            if len(await self.poll()) != seen:
                seen, last = len(self.values), time.monotonic()
        return self.values
