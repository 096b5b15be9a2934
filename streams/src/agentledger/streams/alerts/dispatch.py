"""The alert dispatcher: alerts topic -> lifecycle -> outbox -> Slack / PagerDuty / webhooks.

One loop reads the alerts topic and applies each record to the ``AlertStore`` in one sqlite
transaction (lifecycle, outbox rows, offset), so the topic position lives with the state it
produced: on restart we seek to the stored offsets, nothing is lost and nothing is queued
twice. Another loop delivers due outbox items, retrying with exponential backoff and jitter
for as long as it takes (a receiver that is down gets everything when it returns, in order
per alert). A receiver that answers 2xx is never sent the same item again; the only window for
a duplicate is a crash between its 2xx and our commit, which the PagerDuty dedup_key and the
webhook delivery id make harmless.

Secrets (webhook URLs, routing keys, HMAC keys) never reach a log line: we log channel
names, and every error text is redacted; httpx's own request log (which prints URLs) is
kept at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from agentledger.events import AlertEvent
from agentledger.streams.healthconfig import AlertsConfig, RetryConfig

from .alerting import AlertStore, OutboxItem
from .delivery import build_request

log = logging.getLogger("agentledger.streams.alerts.dispatch")

# 4xx that may succeed later; any other 4xx is a terminal rejection of the payload.
_RETRYABLE_4XX = {408, 409, 425, 429}


def redact(text: str, secrets: list[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    return text


def backoff_s(attempts: int, retry: RetryConfig, rng: random.Random) -> float:
    """Exponential backoff, capped, with jitter in [50 %, 100 %] so receivers coming back
    are not hit by every dispatcher at once."""
    return min(retry.max_s, retry.base_s * 2.0 ** min(attempts, 30)) * rng.uniform(0.5, 1.0)


class AlertDispatcher:
    """Consume the alerts topic, keep the lifecycle, deliver notifications."""

    def __init__(
        self,
        cfg: AlertsConfig,
        bootstrap: str,
        topic: str,
        state_path: str | Path,
        clock: Callable[[], float] = time.time,
        kafka_options: dict[str, object] | None = None,
        on_ready: Callable[[list[int]], None] | None = None,
    ) -> None:
        """``on_ready(partitions)`` is called once, when the alerts topic is assigned and
        sought (the command line prints its ready line there)."""
        self.cfg, self.bootstrap, self.topic, self.clock = cfg, bootstrap, topic, clock
        self.on_ready = on_ready
        self.kafka_options = kafka_options or {}
        self.store = AlertStore(state_path, cfg.renotify_minutes * 60, cfg.max_age_minutes * 60, clock)
        self.channels = {c.name: c for c in cfg.channels}
        self.secrets = cfg.secrets()
        self.rng = random.Random()
        self.wake = asyncio.Event()
        self.delivered = 0
        for noisy in ("httpx", "httpcore"):
            if logging.getLogger(noisy).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(noisy).setLevel(logging.WARNING)

    # --- consuming ----------------------------------------------------------------------
    def apply(self, partition: int, offset: int, value: bytes | None) -> None:
        """Apply one alerts-topic record."""
        self.apply_batch([(partition, offset, value)])

    def apply_batch(self, records: list[tuple[int, int, bytes | None]]) -> None:
        """Apply a consumer batch in one transaction (bad records are logged and skipped)."""
        parsed: list[tuple[int, int, AlertEvent | None]] = []
        for partition, offset, value in records:
            try:
                parsed.append((partition, offset, AlertEvent.model_validate_json(value or b"")))
            except ValidationError as exc:
                log.warning(
                    "alerts record %s[%d]@%d is not an AlertEvent, skipped: %s",
                    self.topic,
                    partition,
                    offset,
                    redact(str(exc.errors(include_input=False)), self.secrets),
                )
                parsed.append((partition, offset, None))
        notes = self.store.ingest_batch(self.topic, parsed, self.cfg.channels_for)
        for (_, _, alert), note in zip(parsed, notes, strict=True):
            if note is not None and alert is not None:
                log.info("alert %s: %s (%s)", alert.dedup_key, note.kind, alert.state.value)
                self.wake.set()

    async def _partitions(self, stop: asyncio.Event) -> list[int]:
        """The alerts topic's partitions (waits for the topic to exist)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.kafka_options)  # type: ignore[arg-type]
        await admin.start()
        try:
            while not stop.is_set():
                for t in await admin.describe_topics([self.topic]):
                    if t["topic"] == self.topic and t["error_code"] == 0 and t["partitions"]:
                        return sorted(int(p["partition"]) for p in t["partitions"])
                log.warning("topic %s not there yet; waiting", self.topic)
                await asyncio.sleep(2.0)
            return []
        finally:
            await admin.close()

    async def _consume(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.kafka_options
        )  # type: ignore[arg-type]
        await consumer.start()
        try:
            parts = await self._partitions(stop)
            tps = [TopicPartition(self.topic, p) for p in parts]
            consumer.assign(tps)
            stored = self.store.next_offsets(self.topic)
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            log.info("reading %s partitions %s from %s", self.topic, parts, stored or "the beginning")
            if self.on_ready is not None and parts:
                self.on_ready(parts)
                self.on_ready = None
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=1000)
                batch = [(tp.partition, r.offset, r.value) for tp, recs in batches.items() for r in recs]
                if batch:
                    self.apply_batch(batch)
        finally:
            await consumer.stop()

    # --- delivering ---------------------------------------------------------------------
    async def deliver_due(self, client: object) -> int:
        """Try every due outbox item once; returns how many were delivered."""
        items = self.store.due()
        results = await asyncio.gather(*(self._send(client, item) for item in items))
        return sum(results)

    async def _send(self, client: object, item: OutboxItem) -> int:
        import httpx

        assert isinstance(client, httpx.AsyncClient)
        channel = self.channels.get(item.channel)
        if channel is None:
            self.store.give_up(item.id, "channel no longer configured")
            log.warning(
                "dropping %s for %s: channel %s is no longer configured",
                item.kind,
                item.dedup_key,
                item.channel,
            )
            return 0
        req = build_request(channel, item, self.cfg.dashboard_url, self.clock())
        if req is None:
            self.store.mark_sent(item.id)  # nothing to send on this channel for this kind
            return 0
        error: str
        try:
            resp = await client.post(
                req.url, content=req.body, headers=req.headers, timeout=self.cfg.retry.timeout_s
            )
            if 200 <= resp.status_code < 300:
                self.store.mark_sent(item.id)
                self.delivered += 1
                log.info("delivered %s of %s to channel %s", item.kind, item.dedup_key, item.channel)
                return 1
            error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if 400 <= resp.status_code < 500 and resp.status_code not in _RETRYABLE_4XX:
                error = redact(error, self.secrets)
                self.store.give_up(item.id, error)
                log.error(
                    "channel %s rejected %s of %s for good: %s",
                    item.channel,
                    item.kind,
                    item.dedup_key,
                    error,
                )
                return 0
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        error = redact(error, self.secrets)
        delay = backoff_s(item.attempts, self.cfg.retry, self.rng)
        self.store.retry_later(item.id, delay, error)
        log.warning(
            "delivery of %s of %s to channel %s failed (attempt %d): %s; retrying in %.1fs",
            item.kind,
            item.dedup_key,
            item.channel,
            item.attempts + 1,
            error,
            delay,
        )
        return 0

    async def _deliver_loop(self, stop: asyncio.Event) -> None:
        import httpx

        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                self.store.renotify_due()
                await self.deliver_due(client)
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=0.25)
                except TimeoutError:
                    pass

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or forever)."""
        stop = stop or asyncio.Event()
        log.info(
            "alert dispatcher on %s: channels %s, state %s",
            self.topic,
            ", ".join(self.channels) or "(none)",
            self.store.db.execute("PRAGMA database_list").fetchone()[2],
        )
        tasks = [asyncio.create_task(self._consume(stop)), asyncio.create_task(self._deliver_loop(stop))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.store.close()
