"""Periodic progress of a long-running consumer, measured from outside its loop: how far its
consumer group has committed on each topic it reads, and how much is left (the lag).

A thread with its own event loop and its own Kafka admin client, so it never touches the
service's loop; a broker that is away is skipped quietly (the service says what it needs).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any


class ProgressReporter(threading.Thread):
    """Every ``interval_s``: ``<service>: committed N of M on <topic> (lag L)``, printed only
    when a figure moved since the last line."""

    def __init__(self, service: str, bootstrap: str, group: str, topics: list[str],
                 client_options: dict[str, Any], interval_s: float = 30.0) -> None:  # fmt: skip
        super().__init__(name=f"{service}-progress", daemon=True)
        self.service, self.bootstrap, self.group, self.topics = service, bootstrap, group, topics
        self.options, self.interval_s = client_options, interval_s
        self._stop = threading.Event()
        self._last: dict[str, tuple[int, int]] = {}

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        import logging

        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the service reports its own trouble
        while not self._stop.wait(self.interval_s):
            try:
                figures = asyncio.run(asyncio.wait_for(self.measure(), 10))
            except Exception:  # noqa: BLE001 - progress is best effort, never fatal
                continue
            out = sys.__stdout__ or sys.stdout  # faust redirects sys.stdout into its log as warnings
            for line in self.lines(figures):
                out.write(line + "\n")
            out.flush()

    def lines(self, figures: dict[str, tuple[int, int]]) -> list[str]:
        out = []
        for topic, (done, end) in sorted(figures.items()):
            if self._last.get(topic) != (done, end):
                out.append(
                    f"{self.service}: committed {done:,} of {end:,} records on {topic} (lag {end - done:,})"
                )
        self._last = figures
        return out

    async def measure(self) -> dict[str, tuple[int, int]]:
        """topic -> (records committed by the group, records in the topic), over partitions."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.options)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.group)
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, **self.options)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps) if tps else {}
            starts = await consumer.beginning_offsets(tps) if tps else {}
        finally:
            await consumer.stop()
        figures: dict[str, tuple[int, int]] = {}
        for tp in tps:
            meta = committed.get(tp)
            at = max(meta.offset, starts[tp]) if meta is not None and meta.offset >= 0 else starts[tp]
            done, end = figures.get(tp.topic, (0, 0))
            figures[tp.topic] = (done + at - starts[tp], end + ends[tp] - starts[tp])
        return figures


class _DropHarmless:
    """faust-streaming warns "Missing sensor state for rebalance" on every first assignment
    when no sensor is installed: harmless, and alarming to a first-time reader."""

    def filter(self, record: Any) -> bool:
        return not str(record.msg).startswith("Missing sensor state for rebalance")


def quiet_faust_terminal() -> None:
    """faust's start-up spinner writes cursor codes even into a pipe or a log file: when
    stdout is not a terminal, make it write nothing. Drop faust's harmless first-start warning."""
    import logging

    logging.getLogger("faust.app.base").addFilter(_DropHarmless())
    if sys.stdout.isatty():
        return
    from faust.utils.terminal import spinners

    spinners.Spinner.cursor_hide = spinners.Spinner.cursor_show = spinners.Spinner.bell = ""
