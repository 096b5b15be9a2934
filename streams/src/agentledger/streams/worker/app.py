"""The Faust app of ``agentledger worker``: wiring only; the logic lives in ``processor`` (one
record in, its effects out) and ``runtime.WorkerRuntime`` (flush, ack, refetch, rebalance).

* two stages, two agents in one app and process (docs/adr/0011-two-stage-worker.md). Stage
  one on the events topic (keyed ``tenant/agent``): validate, dedupe, price, publish priced
  envelopes, and send the record's per-scope deltas to the scope-deltas topic, one record per
  destination partition. Stage two on the scope-deltas topic (partitioned by scope): rollups,
  budgets, loop detection. One record (an envelope, a fat delta) at a time: per-record Faust
  cost is the ceiling (DESIGN.md, Faust notes), and a plain agent avoids the ``stream.take``
  table bug;
* the ``rollups`` table (memory store, changelog-backed, key: the scope key; its changelog
  partition is the scope's scope-deltas partition) survives restarts. Each value holds the
  highest origin offset applied per events partition, so a replayed delta is dropped. Changed
  keys are written to the changelog every ``state_flush_s`` (each once), and only then are the
  records behind them acked; Faust commits acked offsets every ``commit_interval_s`` after
  flushing the producer. After a crash stage-two totals are exact; stage one's dedupe is
  memory warmed from the events topic when it gains a partition (worker.dedupe; ADR 0011);
* a follower task reads the compacted policies, control and budgets topics from the beginning
  (no consumer group) and keeps reading: policies, the current command per scope, and which
  live budgets exist (a deleted policy's are tombstoned);
* a timer ticks budgets (windows rolling over, throttled status updates);
* a small web view: ``/rollups/?scope=agent/acme/planner``, ``/trace/?tenant=..&trace_id=..``,
  ``/stats/``. With N processes each answers for the scopes it holds: the answer says the
  scope's ``partition`` and whether this process ``held`` it (``/stats/`` lists ``held``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentledger import topics
from agentledger.compacted import CompactedReader
from agentledger.events import Window
from agentledger.pricing import PriceBook
from agentledger.streams.policyfile import LoopSettings
from agentledger.streams.worker.dedupe import DEFAULT_DEDUPE_SIZE, DEFAULT_WARM_RECORDS, warm_from_topic
from agentledger.streams.worker.eventtime import DEFAULT_ALLOWED_LATENESS_S, DEFAULT_MAX_SKEW_S, ArrivalRule
from agentledger.streams.worker.processor import DEFAULT_MAX_RECORD_BYTES, Output, Processor
from agentledger.streams.worker.runtime import LoopProbe, WorkerRuntime
from agentledger.streams.worker.tablestore import TableStore

log = logging.getLogger("agentledger.streams")


@dataclass(slots=True)
class WorkerConfig:
    bootstrap: str
    prefix: str = ""
    datadir: Path = field(default_factory=lambda: Path.home() / ".agentledger" / "worker")
    app_id: str = "agentledger-worker"
    web_port: int | None = None
    web_host: str = "127.0.0.1"
    commit_interval_s: float = 1.0
    # a restarted worker waits for its dead predecessor's session to expire before it gets
    # the partitions back: keep it short (Faust's default is 60 s)
    session_timeout_s: float = 10.0
    prices_path: Path | None = None
    loops: LoopSettings = field(default_factory=LoopSettings)
    dedupe_size: int = DEFAULT_DEDUPE_SIZE
    # records read back per events partition new to this process, before the group's committed
    # offset, so duplicates across a crash or a rebalance are still caught (worker.dedupe)
    dedupe_warm_records: int = DEFAULT_WARM_RECORDS
    # no record the worker writes is larger: priced envelopes are split below it, an event too
    # large alone goes to the DLQ (uncounted), a dead letter's raw bytes are cut to fit. Keep
    # it under the broker's max.message.bytes of the priced and DLQ topics
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # an event stamped outside [arrival - allowed lateness, arrival + skew] counts toward
    # budgets and rollups at its arrival, flagged late / clock_skew (worker.eventtime)
    allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S
    max_skew_s: float = DEFAULT_MAX_SKEW_S
    tick_interval_s: float = 0.5
    # a partition fetched past what reached the agent, with the agent idle this long, is
    # fetched again from there (faust-streaming 0.15.3 can drop a fetched batch in a rebalance)
    refetch_after_s: float = 5.0
    # changed rollups are written to the changelog at most this often (each key once per
    # flush, however many records touched it); records are acked after their flush
    state_flush_s: float = 0.2
    # batch the changelog and priced records into fewer requests; a control command waits at
    # most this long in the producer
    producer_linger_s: float = 0.0
    # replication of the table changelog Faust creates; use 3 on a 3-broker cluster (computing
    # it from the cluster at start-up made the crash test fail: left explicit for now)
    replication: int | None = None
    client_options: dict[str, Any] = field(default_factory=dict)
    # partitions of the events and scope-deltas topics (equal): read from the broker at start
    # (run_worker), the only thing that changes with the number of worker processes
    partitions: int = topics.EVENTS.partitions

    def topic(self, spec: topics.TopicSpec) -> str:
        return self.prefix + spec.name


@dataclass(slots=True)
class WorkerHandle:
    app: Any
    processor: Processor
    store: TableStore
    runtime: WorkerRuntime
    """Stage two's runtime (rollups, budgets; the timer ticks it)."""
    stage_one: WorkerRuntime

    @property
    def ready(self) -> asyncio.Event:
        """Set once the compacted policies, control and budgets topics are read to their end."""
        return self.runtime.ready


class FaustOutputs:
    """``Outputs`` on Faust topics and the table's changelog topic."""

    def __init__(self, topics_by_name: dict[str, Any], changelog: Any) -> None:
        self.topics = topics_by_name
        self.changelog = changelog

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        await self.topics[topic].send(key=key, value=value)

    async def send_delta(self, partition: int, key: bytes, value: bytes) -> None:
        await self.topics["deltas"].send(key=key, value=value, partition=partition)

    async def send_changelog(self, partition: int, key: str, value: bytes | None) -> None:
        await self.changelog.send(
            key=key, value=value, partition=partition, key_serializer="json", value_serializer="raw"
        )


class FaustEventsSource:
    """``EventsSource`` on the Faust app's consumer of the events topic."""

    def __init__(self, app: Any, cfg: WorkerConfig, events_name: str) -> None:
        self.app = app
        self.cfg = cfg
        self.events_name = events_name

    def settled(self) -> bool:
        app = self.app
        return bool(
            not app.rebalancing and app.tables.recovery.completed.is_set() and app.consumer.flow_active
        )

    async def positions(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic == self.events_name:
                pos = await asyncio.wait_for(self.app.consumer.position(tp), 10)
                if pos is not None:
                    out[tp.partition] = pos
        return out

    async def start_offsets(self) -> dict[int, int]:
        return await start_offsets(self.cfg, self.app.conf.id, self.events_name)

    async def seek(self, offsets: dict[int, int]) -> None:
        from faust.types import TP

        await self.app.consumer.seek_wait({TP(self.events_name, p): off for p, off in offsets.items()})


def create_app(cfg: WorkerConfig) -> WorkerHandle:
    """A configured Faust app (not started) and the runtime it drives: wiring only, the
    logic is in ``WorkerRuntime`` and ``Processor``."""
    import faust
    from aiokafka.errors import KafkaError

    brokers = ";".join(f"kafka://{b.strip()}" for b in cfg.bootstrap.split(","))
    app = faust.App(
        cfg.prefix + cfg.app_id,
        broker=brokers,
        store="memory://",
        datadir=str(cfg.datadir),
        topic_partitions=cfg.partitions,
        broker_commit_interval=cfg.commit_interval_s,
        broker_session_timeout=cfg.session_timeout_s,
        broker_heartbeat_interval=min(3.0, cfg.session_timeout_s / 3),
        producer_acks=-1,
        producer_linger=cfg.producer_linger_s,
        # never below what the worker sizes its records to (framing included)
        producer_max_request_size=max(1_000_000, cfg.max_record_bytes + 16 * 1024),
        # NB: keep Faust's 16 KiB producer batches: with 1 MiB batches a restarted worker's
        # table recovery stalled part-way through the changelog (found by the crash test)
        consumer_auto_offset_reset="earliest",
        web_enabled=cfg.web_port is not None,
        web_port=cfg.web_port or 6066,
        web_bind=cfg.web_host,
        web_in_thread=False,
        stream_wait_empty=False,
        table_standby_replicas=0,
        topic_replication_factor=cfg.replication or 1,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    events_name = cfg.topic(topics.EVENTS)
    events_topic = app.topic(events_name, **raw)
    out_topics = {
        name: app.topic(cfg.topic(spec), **raw)
        for name, spec in (
            ("priced", topics.PRICED),
            ("dlq", topics.DLQ),
            ("control", topics.CONTROL),
            ("alerts", topics.ALERTS),
            ("budgets", topics.BUDGETS),
            ("tools", topics.TOOLS),
            ("deltas", topics.SCOPE_DELTAS),
        )
    }
    deltas_name = cfg.topic(topics.SCOPE_DELTAS)
    deltas_topic = out_topics["deltas"]
    table = app.Table(
        "rollups",
        default=None,
        schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"),
        partitions=cfg.partitions,
    )
    store = TableStore(table, cfg.partitions)
    proc = Processor(
        store,
        PriceBook.load(cfg.prices_path),
        partitions=cfg.partitions,
        loops=cfg.loops,
        dedupe_size=cfg.dedupe_size,
        source_topic=events_name,
        max_record_bytes=cfg.max_record_bytes,
        arrival=ArrivalRule(cfg.allowed_lateness_s, cfg.max_skew_s),
    )
    outputs = FaustOutputs(out_topics, table.changelog_topic)
    transient = (KafkaError, OSError, TimeoutError)
    probe = LoopProbe.from_env()  # measurement only: off unless AGENTLEDGER_WORKER_PROBE is set
    stage_one = WorkerRuntime(
        proc,
        None,
        outputs,
        FaustEventsSource(app, cfg, events_name),
        step=proc.stage_one,
        state_flush_s=cfg.state_flush_s,
        refetch_after_s=cfg.refetch_after_s,
        transient=transient,
        source_topic=events_name,
        probe=probe,
    )

    def stage_two_step(raw: bytes, key: bytes | None, partition: int, offset: int, now_s: float) -> Output:
        return proc.stage_two(raw, now_s)

    runtime = WorkerRuntime(
        proc,
        store,
        outputs,
        FaustEventsSource(app, cfg, deltas_name),
        step=stage_two_step,
        state_flush_s=cfg.state_flush_s,
        refetch_after_s=cfg.refetch_after_s,
        transient=transient,
        source_topic=deltas_name,
        probe=probe,
    )
    proc.held = set()  # stage two holds nothing until the first assignment

    events_held: set[int] = set()
    warming: dict[int, asyncio.Future[None]] = {}
    """Events partitions new to us whose dedupe read-back runs: their records wait for it."""

    async def warmed(partition: int) -> None:
        task = warming.pop(partition, None)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def agent_of(
        rt: WorkerRuntime, before: Callable[[int], Awaitable[None]] | None = None
    ) -> Callable[[Any], Awaitable[None]]:
        async def process(stream: Any) -> None:
            # never block here waiting for `ready`: an agent parked at start-up left partitions
            # stalled after a restart (crash test); run_worker preloads policies and commands
            manual = stream.noack()
            async with rt.attached(manual.ack):
                async for event in manual.events():
                    msg = event.message
                    if probe is not None:  # broker append / producer send -> here
                        probe.observe(f"{rt.source_topic}:arrival", (time.time() - msg.timestamp) * 1000)
                    if before is not None and warming:
                        await before(msg.partition)
                    await rt.on_record(event, event.key, event.value, msg.partition, msg.offset)

        return process

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        # inside Faust's rebalance callback, which must end within the session timeout: the two
        # stages read their start offsets at once, and the dedupe read-back runs in a task
        held = {tp.partition for tp in assigned if tp.topic == deltas_name}
        proc.held = held
        events_now = {tp.partition for tp in assigned if tp.topic == events_name}
        await asyncio.gather(stage_one.on_assigned(events_now), runtime.on_assigned(held))
        # events partitions new to us: remember the ids their last owner had seen (dedupe)
        starts = {
            p: stage_one.tracker.expected[p]
            for p in events_now - events_held
            if p in stage_one.tracker.expected
        }
        if starts and cfg.dedupe_warm_records > 0:
            task = asyncio.ensure_future(warm_dedupe(starts))
            warming.update(dict.fromkeys(starts, task))
        events_held.clear()
        events_held.update(events_now)
        # budgets of scopes that moved here: take back the commands left for them, so a kill
        # whose scope sends nothing more still lifts when its window rolls over
        proc.adopt_commands(time.time())

    async def warm_dedupe(starts: dict[int, int]) -> None:
        try:
            # bounded: the partitions' records wait for it
            n = await asyncio.wait_for(warm_from_topic(proc.dedupe, cfg.bootstrap, events_name, starts,
                                                       cfg.dedupe_warm_records, cfg.client_options), 30)  # fmt: skip
        except transient as exc:  # the broker away: duplicates across the move may count twice
            log.warning("could not read back the events before %s for dedupe: %r", starts, exc)
            return
        except Exception:  # a safety net: the records waiting for it must go on
            log.exception("dedupe read-back before %s failed", starts)
            return
        proc.counters["dedupe_warmed"] += n
        log.info("dedupe: remembered %d event ids read back before %s", n, starts)

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == deltas_name}
        for tp in revoked:
            if tp.topic == events_name:
                events_held.discard(tp.partition)
                warming.pop(tp.partition, None)
        proc.held = (proc.held or set()) - lost
        stage_one.on_revoked({tp.partition for tp in revoked if tp.topic == events_name})
        runtime.on_revoked(lost)

    async def follow_compacted() -> None:
        # Faust's logging setup leaves aiokafka at DEBUG: a LogRecord per request costs ~5 %;
        # faust's topics log every send and mode's timers every tick at DEBUG (~2.5 % of the
        # worker's CPU, py-spy)
        for name in ("aiokafka", "kafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
        await follow(cfg, proc, runtime.ready)

    async def rollups_view(web: Any, request: Any) -> Any:
        scope = request.query.get("scope", "")
        now = time.time()
        body = {w.value: proc.totals(scope, w.value, now).as_dict() for w in Window}
        return web.json(
            {
                "scope": scope,
                "windows": body,
                "partition": proc.partition_for(scope),
                "held": proc.holds(scope),
            }
        )

    async def trace_view(web: Any, request: Any) -> Any:
        q = request.query
        key = f"trace/{q.get('tenant', '')}/{q.get('trace_id', '')}"
        return web.json(
            {
                "spans": proc.trace_costs(q.get("tenant", ""), q.get("trace_id", "")),
                "partition": proc.partition_for(key),
                "held": proc.holds(key),
            }
        )

    async def stats_view(web: Any, request: Any) -> Any:
        return web.json(
            {
                "counters": dict(proc.counters),
                "ready": runtime.ready.is_set() and app.tables.recovery.completed.is_set(),
                "policies": sorted(proc.engine.policies),
                "dedupe_size": len(proc.dedupe),
                "held": sorted(proc.held or ()),
                "pending": len(runtime.pending) + len(stage_one.pending),
            }
        )

    # registered without decorator syntax: faust is untyped (strict mypy)
    app.agent(events_topic, concurrency=1, name="stage_one")(agent_of(stage_one, warmed))
    app.agent(deltas_topic, concurrency=1, name="stage_two")(agent_of(runtime))
    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    app.timer(interval=max(1.0, cfg.refetch_after_s / 2))(stage_one.refetch_dropped)
    app.timer(interval=max(1.0, cfg.refetch_after_s / 2))(runtime.refetch_dropped)
    app.timer(interval=cfg.tick_interval_s)(runtime.tick)
    app.task(follow_compacted)
    if probe is not None:

        async def run_probe() -> None:  # no parameter: Faust would pass the app
            # Faust's consumer thread (fetches, record unpacking) has its own loop: probe it too
            for _ in range(300):
                thread_loop = getattr(getattr(app.consumer, "_thread", None), "thread_loop", None)
                if thread_loop is not None and thread_loop.is_running():
                    lag = probe.run(what="consumer_thread_lag", write=False)
                    asyncio.run_coroutine_threadsafe(lag, thread_loop)
                    break
                await asyncio.sleep(0.1)
            probe.watch_gc()
            await probe.run()

        app.task(run_probe)
    app.page("/rollups/")(rollups_view)
    app.page("/trace/")(trace_view)
    app.page("/stats/")(stats_view)
    return WorkerHandle(app, proc, store, runtime, stage_one)


async def freeze_when_ready(ready: asyncio.Event, settle_s: float = 1.0) -> int:
    """Once the worker is ready (and ``settle_s`` later), collect the garbage once and freeze
    what is left: the start-up objects (modules, classes, Faust's and aiokafka's services,
    ~100k of them) leave the garbage collector's full passes, which otherwise walk them all
    every time, holding the GIL (56-75 ms of CPU each, 100-440 ms of wall time measured in a
    busy worker: every record waits). Frozen objects are still freed when unreferenced; only a
    reference cycle among them is never collected. Returns how many were frozen."""
    import gc

    await ready.wait()
    await asyncio.sleep(settle_s)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects out of the garbage collector's passes", frozen)
    return frozen


async def start_offsets(cfg: WorkerConfig, group: str, topic: str) -> dict[int, int]:
    """Where the group resumes each partition of ``topic``: its committed offset, or the
    partition's first offset when it has none (``auto_offset_reset=earliest``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap, **cfg.client_options)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    out = {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=None, **cfg.client_options)
    await consumer.start()
    try:
        # consumer.topics() fetches the metadata into a throwaway copy (the consumer's own
        # stays empty, and so did this answer: every assignment lost its start offsets and with
        # them the refetch of a batch Faust dropped before the first record, ADR 0006)
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
        consumer.assign(tps)  # so the client has their leaders: no wait for metadata
        firsts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    # a committed offset below the first one (retention deleted it) resumes at the first
    return {tp.partition: max(out.get(tp.partition, first), first) for tp, first in firsts.items()}


COMPACTED = (topics.POLICIES, topics.CONTROL, topics.BUDGETS)
"""The compacted topics the worker follows: policies, the current command per scope, and which
live budgets exist."""


def compacted_reader(cfg: WorkerConfig) -> CompactedReader:
    return CompactedReader(cfg.bootstrap, [cfg.topic(spec) for spec in COMPACTED], cfg.client_options)


def compacted_partitions(cfg: WorkerConfig) -> dict[str, range]:
    return {cfg.topic(spec): range(spec.partitions) for spec in COMPACTED}


async def preload(cfg: WorkerConfig, proc: Processor) -> int:
    """Read the compacted policies, control and budgets topics up to their end (before Faust
    starts)."""
    async with compacted_reader(cfg) as reader:
        await reader.assign(compacted_partitions(cfg))
        for r in await reader.read_to_end():
            observe(cfg, proc, r.topic, r.text_key, r.value)
    return int(proc.adopt_commands(time.time()))


def observe(cfg: WorkerConfig, proc: Processor, topic: str, key: str, value: bytes | None) -> None:
    """One record of a compacted topic the worker follows."""
    if topic == cfg.topic(topics.POLICIES):
        proc.observe_policy(key, value)
    elif topic == cfg.topic(topics.CONTROL):
        proc.observe_command(key, value)
    else:
        proc.observe_budget(key, value, time.time())


async def follow(cfg: WorkerConfig, proc: Processor, ready: asyncio.Event) -> None:
    """Read the compacted policies, control and budgets topics from the start, then keep
    following; ``ready`` is set once they are read to the end."""
    async with compacted_reader(cfg) as reader:
        await reader.assign(compacted_partitions(cfg))
        while True:
            for r in await reader.poll():
                observe(cfg, proc, r.topic, r.text_key, r.value)
            if not ready.is_set() and await reader.caught_up():
                adopted = proc.adopt_commands(time.time())
                log.info("loaded %d policies; adopted %d budget commands", len(proc.engine.policies), adopted)
                ready.set()


async def partition_count(cfg: WorkerConfig) -> int:
    """The partition count of the events topic, which the scope-deltas topic must share (the
    rollups changelog follows; DESIGN.md, Faust notes: equal partition counts)."""
    from aiokafka.admin import AIOKafkaAdminClient

    names = [cfg.topic(topics.EVENTS), cfg.topic(topics.SCOPE_DELTAS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap, **cfg.client_options)
    await admin.start()
    try:
        meta = await admin.describe_topics(names)
    finally:
        await admin.close()
    found = {str(t["topic"]): len(t["partitions"]) for t in meta}
    counts = {name: found.get(name, 0) for name in names}
    events, deltas = counts.values()
    if not events or events != deltas:
        raise SystemExit(
            f"the worker needs the events and scope-deltas topics with equal partition counts; found {counts}: "
            "add partitions to the smaller one (agentledger topics) before starting it"
        )
    return events


async def broker_record_limit(cfg: WorkerConfig) -> int:
    """The worker's record limit: its setting, lowered to what the broker really takes on the
    priced and DLQ topics (read at start), so nothing is counted that the broker would refuse."""
    from agentledger import topics
    from agentledger.admin import record_value_limit

    limit = cfg.max_record_bytes
    for spec in (topics.PRICED, topics.DLQ):
        name = cfg.prefix + spec.name
        broker = await record_value_limit(cfg.bootstrap, name, margin=0, options=cfg.client_options)
        if broker < limit:
            log.warning("topic %s takes records up to %d bytes: the worker writes no larger", name, broker)
            limit = broker
    return limit


def run_worker(
    cfg: WorkerConfig,
    *,
    use_uvloop: bool = True,
    loglevel: str = "warning",
    on_created: Callable[[WorkerHandle], None] | None = None,
) -> None:
    """Run the worker until SIGTERM/SIGINT (blocks). ``on_created`` sees the app before it
    starts (the command line hooks its ready line there)."""
    import faust

    if use_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    cfg.datadir.mkdir(parents=True, exist_ok=True)
    # policies and current commands are in place before the first event is processed; in a
    # thread so this thread's event-loop state is untouched for Faust
    from concurrent.futures import ThreadPoolExecutor

    from agentledger.streams.worker.replication import check_changelog_replication, cluster_facts

    changelog = f"{cfg.prefix}{cfg.app_id}-rollups-changelog"
    with ThreadPoolExecutor(1) as pool:
        facts = pool.submit(asyncio.run, cluster_facts(cfg.bootstrap, changelog, cfg.client_options))
        check_changelog_replication(cfg.replication or 1, *facts.result(timeout=60))
        cfg.max_record_bytes = pool.submit(asyncio.run, broker_record_limit(cfg)).result(timeout=60)
        cfg.partitions = pool.submit(asyncio.run, partition_count(cfg)).result(timeout=60)
    handle = create_app(cfg)
    with ThreadPoolExecutor(1) as pool:
        adopted = pool.submit(asyncio.run, preload(cfg, handle.processor)).result(timeout=120)
    log.info("preloaded %d policies, adopted %d commands", len(handle.processor.engine.policies), adopted)
    if on_created is not None:
        on_created(handle)

    async def freeze_start_up() -> None:  # no parameter: Faust would pass the app
        await freeze_when_ready(handle.runtime.ready)

    handle.app.task(freeze_start_up)
    worker = faust.Worker(handle.app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
