"""The worker's core, free of Faust: one record (an envelope) in, everything it causes out.

``process`` decodes in bulk, validates per event (bad ones to the DLQ with raw bytes, reason
and source offset), dedupes by (``tenant``, ``event_id``), prices (each priced event carries
the event's bytes as sent where they say what the contract's serialisation would:
``wire.Decoded.raws``), splits the priced events into records the broker can take (an event too large for any record goes to the DLQ and is
not counted), aggregates per scope inside the envelope at each event's counting time
(``eventtime``) and touches each rollup key once, evaluates the budgets the envelope touched
and the loop detector. ``worker.runtime`` runs it inside a Faust agent; tests and the benchmark can
drive it directly.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel
from pydantic_core import to_json

from agentledger.errors import ContractError
from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    ControlCommand,
    DeadLetter,
    LimitUnit,
    Policy,
    ScopeKind,
    ScreenEvent,
    Severity,
)
from agentledger.fastwire import model_of
from agentledger.pricing import PriceBook
from agentledger.streams.policyfile import LoopSettings
from agentledger.streams.worker import deltas as deltas_mod
from agentledger.streams.worker.budgets import BudgetEngine, Emitted
from agentledger.streams.worker.deadlines import DeadlineWatch, deadline_rows
from agentledger.streams.worker.dedupe import DEFAULT_DEDUPE_SIZE, Dedupe
from agentledger.streams.worker.deltas import Delta, partition_for
from agentledger.streams.worker.enforcer import ISSUER, Desire, Enforcer, new_id
from agentledger.streams.worker.eventtime import ArrivalRule
from agentledger.streams.worker.loops import LoopDetector, loop_features
from agentledger.streams.worker.rollups import Rollup, SourceFlags, Totals
from agentledger.streams.worker.scopes import (
    ScopeRef,
    conversation_of,
    is_coarse,
    scope_for,
    selector_matches_event,
    user_of,
)
from agentledger.streams.worker.screens import (
    SCREEN,
    ScreenWatch,
    adopt_trace_kill,
    screen_features,
    source_flag,
)
from agentledger.tools import record_key
from agentledger.wire import (
    ENVELOPE_TAIL,
    StageEvent,
    decode_envelope_structs,
    dump,
    envelope_head,
    is_usage,
    join_envelope,
)

log = logging.getLogger("agentledger.streams")
ZERO = Decimal(0)
TRACE_IDLE_S = 86400
"""A trace rollup is dropped this long after its last event (``evict_idle_traces``)."""
ORPHAN_GRACE_S = 10.0
"""A live budget of a policy the worker does not know is tombstoned once it has been on the
budgets topic this long (its policy was deleted while no worker ran, or the status was in
flight when the deletion arrived). The grace covers a new policy's first status being read
back before the policy itself."""
DEFAULT_MAX_RECORD_BYTES = 512 * 1024
"""Default size limit of every record the worker writes: priced envelopes are split below it,
an event whose priced form alone is larger goes to the DLQ, and a dead letter is cut to fit
it, framing and key included. Half of Kafka's default ``max.message.bytes`` (1 MiB), as before."""
RECORD_FRAMING = 512
"""Bytes Kafka adds around a record's key and value (batch header, record header): a record
sized to the limit then fits a broker whose ``max.message.bytes`` is the limit itself."""
DEAD_LETTER_SLACK = 6 * 1024
"""Bytes of a dead letter besides its raw bytes (a reason of up to 4 KiB, topic, offsets)."""
DEST_CACHE_SIZE = 100_000
"""Scope keys whose destination partition is remembered (cleared whole when full)."""
Record = tuple[bytes | None, bytes]
Tombstoned = tuple[bytes, bytes | None]


class RollupStore(Protocol):
    def get(self, key: str) -> Rollup | None: ...
    def put(self, key: str, rollup: Rollup) -> None: ...
    def all_keys(self) -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...


class MemoryStore:
    """A plain dict store (unit tests, benchmarks of the core)."""

    def __init__(self) -> None:
        self.data: dict[str, Rollup] = {}

    def get(self, key: str) -> Rollup | None:
        return self.data.get(key)

    def put(self, key: str, rollup: Rollup) -> None:
        self.data[key] = rollup

    def all_keys(self) -> Iterator[str]:
        return iter(list(self.data))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass(slots=True)
class Output:
    """What one record (or one tick) produced, as Kafka (key, value) bytes per topic."""

    priced: list[Record] = field(default_factory=list)
    dlq: list[Record] = field(default_factory=list)
    control: list[Record] = field(default_factory=list)
    alerts: list[Record] = field(default_factory=list)
    budgets: list[Tombstoned] = field(default_factory=list)
    tools: list[Record] = field(default_factory=list)
    """Tool policies for the tools topic: a quarantined source's deny (worker.screens)."""
    deltas: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    """Stage one's scope-deltas records: (destination partition, key, value)."""

    def add(self, em: Emitted) -> None:
        self.control += [(c.key.encode(), dump(c)) for c in em.commands]
        self.alerts += [(a.dedup_key.encode(), dump(a)) for a in em.alerts]
        self.budgets += [(f"{s.policy_id}|{s.scope_key}".encode(), dump(s)) for s in em.statuses]
        self.tools += [(record_key(p).encode(), dump(p)) for p in em.tool_policies]


def _event_json(ev: StageEvent) -> bytes:
    """The contract's serialisation of an event whose bytes as sent are not forwarded."""
    m = ev if isinstance(ev, BaseModel) else model_of(ev)
    return m.__pydantic_serializer__.to_json(m)


def _dec(cost: Decimal) -> bytes:
    return format(cost, "f").encode()


class Processor:
    def __init__(
        self,
        store: RollupStore,
        book: PriceBook | None = None,
        *,
        partitions: int = 4,
        loops: LoopSettings | None = None,
        dedupe_size: int = DEFAULT_DEDUPE_SIZE,
        source_topic: str = "events",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        arrival: ArrivalRule | None = None,
    ) -> None:
        if max_record_bytes < 4 * DEAD_LETTER_SLACK:
            raise ValueError(f"max_record_bytes must be at least {4 * DEAD_LETTER_SLACK}")
        self.store = store
        self.book = book or PriceBook.load()
        self.partitions = partitions
        self.source_topic = source_topic
        self.max_record_bytes = max_record_bytes
        self.arrival = arrival or ArrivalRule()
        self.dedupe = Dedupe(dedupe_size)
        # live budget keys ("policy_id|scope key") per policy, as read back from the budgets
        # topic, with when each was last seen; and tombstones waiting for the next tick
        self.budget_keys: dict[str, dict[str, float]] = {}
        self._tombstones: set[str] = set()
        self.loops = LoopDetector(loops)
        self.enforcer = Enforcer()
        self.engine = BudgetEngine(self.spend_of, self.enforcer)
        self.screens = ScreenWatch(self.enforcer)
        self.policies: dict[str, Policy] = {}  # every policy (the engine keeps the budgets)
        self.deadlines = DeadlineWatch()
        self.counters: Counter[str] = Counter()
        self.held: set[int] | None = None
        self._dest: dict[str, int] = {}
        """Scope key -> its scope-deltas partition (CRC-32 once per key, not per event)."""
        """Scope-deltas partitions this process holds (stage two); None: all (one process
        running both stages in memory, as unit tests and the benchmark of the core do)."""

    # -- reading state ---------------------------------------------------------------------

    def totals(self, scope_key: str, window_name: str, now_s: float) -> Totals:
        from agentledger.events import Window

        r = self.store.get(scope_key)
        return r.total(Window(window_name), now_s) if r is not None else Totals()

    def spend_of(self, policy: Policy, ref: ScopeRef, now_s: float) -> Totals:
        key = ref.key if is_coarse(policy.selector) else f"policy/{policy.policy_id}|{ref.key}"
        return self.totals(key, policy.window.value, now_s)

    def partition_for(self, key: str) -> int:
        """The scope-deltas partition (and so the process) that owns a table key."""
        return partition_for(key, self.partitions)

    def holds(self, key: str) -> bool:
        """Whether this process owns the scope: its partition is held by our stage two."""
        return self.held is None or partition_for(key, self.partitions) in self.held

    def trace_costs(self, tenant: str, trace_id: str) -> dict[str, dict[str, object]]:
        """Per span of a trace: parent, direct cost and inclusive (subtree) cost."""
        r = self.store.get(f"trace/{tenant}/{trace_id}") or Rollup()
        inclusive = r.inclusive_costs()
        return {
            s: {"parent": parent, "direct_usd": str(cost), "inclusive_usd": str(inclusive[s])}
            for s, (parent, cost) in r.spans.items()
        }

    # -- one record ----------------------------------------------------------------------------

    def dead_letter(self, key: bytes | None, raw: bytes, reason: str, partition: int | None,
                    offset: int | None, index: int | None) -> Record:  # fmt: skip
        """A DLQ record that always fits the record limit: raw bytes too large for it are cut,
        and the reason says so and where the whole record is (the events topic keeps it)."""
        self.counters["dlq"] += 1
        room = (self.max_record_bytes - DEAD_LETTER_SLACK) * 3 // 4  # base64 grows by 4/3
        if len(raw) > room:
            where = f"{self.source_topic}[{partition}]@{offset}"
            reason = f"{reason[:3000]} (raw bytes cut to the first {room} of {len(raw)}; the whole record is {where})"
            raw = raw[:room]
        dl = DeadLetter(
            reason=reason[:4096],
            raw_b64=base64.b64encode(raw).decode(),
            source_topic=self.source_topic,
            source_partition=partition,
            source_offset=offset,
            index=index,
        )
        return (key, dump(dl))

    def process(
        self, raw: bytes, key: bytes | None, partition: int, offset: int | None, now_s: float
    ) -> Output:
        """Both stages in memory: stage one, then its deltas applied here at once (no origin
        check: nothing is replayed inside one object). Unit tests and the benchmark of the
        core drive this; the Faust app runs the stages as two agents (``stage_one`` and
        ``stage_two``) with the scope-deltas topic between them."""
        out = self.stage_one(raw, key, partition, offset, now_s)
        deltas, out.deltas = out.deltas, []
        for _, _, value in deltas:
            self._apply(deltas_mod.loads(value), None, now_s, out)
        return out

    def stage_one(
        self, raw: bytes, key: bytes | None, partition: int, offset: int | None, now_s: float
    ) -> Output:
        """One events record: DLQ, priced records, unknown-model alerts and its scope deltas
        (one record per destination partition, origin ``(partition, offset)``)."""
        out = Output()
        self.counters["records"] += 1
        try:
            decoded = decode_envelope_structs(raw)
        except ContractError as exc:
            out.dlq.append(self.dead_letter(key, raw, f"not an envelope: {exc}", partition, offset, None))
            return out
        for rej in decoded.rejected:
            out.dlq.append(self.dead_letter(key, rej.raw, rej.reason, partition, offset, rej.index))
        self.counters["rejected_events"] += len(decoded.rejected)
        first = self.dedupe.first_time
        skip = {r.index for r in decoded.rejected}
        positions = (i for i in range(len(decoded.events) + len(skip)) if i not in skip)
        # each event's bytes as the client sent them, forwarded in the priced envelope when they
        # say what the contract's serialisation would (wire.Decoded.raws; docs/adr/0013)
        bodies = decoded.raws if decoded.raws is not None else [None] * len(decoded.events)
        fresh = [
            (i, e, b)
            for i, e, b in zip(positions, decoded.events, bodies, strict=True)
            if first(e.tenant, e.event_id)
        ]
        self.counters["duplicates"] += len(decoded.events) - len(fresh)
        if not fresh:
            return out
        env_key = decoded.key or (key or b"").decode(errors="replace")
        events, costs, priced, at = self._price(fresh, env_key, key, partition, offset, now_s, out)
        # only what is published from here on is counted (nothing else reaches the warehouse)
        self.counters["events"] += len(events)
        if not events:
            return out
        deltas: dict[int, Delta] = {}
        self._aggregate(events, costs, priced, at, deltas)
        self._budgets(events, costs, at, deltas)
        self._deadline_rows(events, at, deltas)
        origin = (partition, offset) if offset is not None else None
        for dest, delta in sorted(deltas.items()):
            out.deltas.append((dest, str(dest).encode(), delta.dumps(origin)))
        self.counters["deltas_out"] += len(deltas)
        self._unknown_models(now_s, out)
        return out

    def stage_two(self, raw: bytes, now_s: float) -> Output:
        """One scope-deltas record: rollups (a delta at or below its scope's applied origin is
        dropped), then the budgets and loop detection of the scopes it touched."""
        out = Output()
        self.counters["deltas_in"] += 1
        try:
            doc = deltas_mod.loads(raw)
        except ValueError as exc:
            self.counters["bad_deltas"] += 1
            log.error("not a scope-deltas record (%s): skipped", exc)
            return out
        o = doc.get("o")
        self._apply(doc, (int(o[0]), int(o[1])) if o else None, now_s, out)
        return out

    def _apply(self, doc: dict[str, Any], origin: tuple[int, int] | None, now_s: float, out: Output) -> None:
        fresh: set[str] = set()
        for key, (rows, spans) in doc["r"].items():
            r = self.store.get(key)
            if r is None:
                r = Rollup()
            elif origin is not None and r.applied.get(origin[0], -1) >= origin[1]:
                self.counters["replayed_deltas"] += 1
                continue  # already in these totals: a replay of stage one
            for sec, cost, tokens, calls, unpriced in rows:
                r.add(sec, Decimal(cost), tokens, calls, unpriced)
            if spans:
                for span_id, (parent, cost) in spans.items():
                    r.add_span(span_id, parent, Decimal(cost))
            if origin is not None:
                r.applied[origin[0]] = origin[1]
            r.touched_s = int(now_s)
            r.prune(now_s)
            self.store.put(key, r)
            fresh.add(key)
        for policy_id, fields, contrib in doc.get("b", ()):
            p = self.engine.policies.get(policy_id)
            if p is None or not p.enabled:
                continue
            ref = deltas_mod.ref_of(fields)
            counted = ref.key if is_coarse(p.selector) else f"policy/{policy_id}|{ref.key}"
            amounts = [(e, Decimal(a)) for e, a in contrib] if counted in fresh else []
            out.add(self.engine.evaluate(self.engine.pair(policy_id, ref), now_s, amounts))
        for trace_key, feats in doc.get("l", {}).items():
            if trace_key in fresh:  # the loop state rides in the trace rollup (worker.loops)
                self._loops(feats, now_s, out, self.store.get(trace_key))
        for source_key, (tenant, channel, source, rows) in doc.get("q", {}).items():
            r = self.store.get(source_key)
            if source_key in fresh and r is not None:  # the flags ride in the source's value
                if r.flags is None:
                    r.flags = SourceFlags()
                out.add(self.screens.flagged([tenant, channel, source], rows, r.flags))
        self._observe_deadlines(doc.get("d"), fresh)

    def evict_idle_traces(self, now_s: float) -> int:
        """Drop trace rollups (and screened sources' flags) with no event in the last 24 h
        (traces are short-lived; without this a long-running worker grows with every trace it
        has seen; a source's flags count over an hour). Run inside the agent."""
        dropped = 0
        for key in self.store.all_keys():
            if not key.startswith(("trace/", "source/")):
                continue
            r = self.store.get(key)
            if r is not None and now_s - r.touched_s > TRACE_IDLE_S:
                self.store.delete(key)
                dropped += 1
        self.counters["traces_evicted"] += dropped
        return dropped

    def tick(self, now_s: float) -> Output:
        out = Output()
        out.add(self.engine.tick(now_s, None if self.held is None else self.holds))
        out.budgets += self.budget_tombstones(now_s)
        self._deadline_kills(now_s, out)
        return out

    # -- steps -------------------------------------------------------------------------------------

    def _price(
        self, events: list[tuple[int, StageEvent, bytes | None]], env_key: str, key: bytes | None, partition: int,
        offset: int | None, now_s: float, out: Output,
    ) -> tuple[list[StageEvent], list[Decimal], list[bool], list[int]]:  # fmt: skip
        """Price, and write the priced records: (events published, their costs, priced flags,
        the second each counts at). An event too large for any record goes to the DLQ instead."""
        price = self.book.price
        flag = self.arrival.flag
        kept: list[StageEvent] = []
        costs: list[Decimal] = []
        flags: list[bool] = []
        at: list[int] = []
        pieces: list[bytes] = []
        received = b',"received_ts":' + to_json(datetime.fromtimestamp(now_s, UTC))
        # what follows the cost is the same for every event of one (priced, source, time flag):
        # built once per record, not per event (issue #15: the per-event byte building was the
        # largest item of the worker's own time)
        tails: dict[tuple[bool, str, str | None], bytes] = {}
        join = b"".join
        limit = self.max_record_bytes
        head = envelope_head(env_key)
        room = limit - RECORD_FRAMING - len(env_key.encode()) - len(head) - len(ENVELOPE_TAIL)
        for index, ev, sent in events:
            body = sent if sent is not None else _event_json(ev)
            if is_usage(ev):
                cost, priced, source = price(ev)
                dec = _dec(cost)
            else:
                cost, priced, source, dec = ZERO, True, "n/a", b"0"
            ts_s = ev.ts.timestamp()
            late = flag(ts_s, now_s)
            tail = tails.get((priced, source, late))
            if tail is None:
                tail = tails[(priced, source, late)] = (
                    b'","priced":' + (b"true" if priced else b"false") + b',"price_source":' + to_json(source)
                    + received + (b',"time_flag":"' + late.encode() + b'"}' if late else b"}")
                )  # fmt: skip
            piece = join((b'{"event":', body, b',"cost_usd":"', dec, tail))
            if len(piece) > room:
                self.counters["oversize"] += 1
                why = f"priced event is {len(piece)} bytes, over the worker's record limit of {limit} bytes"
                out.dlq.append(self.dead_letter(key, body, why, partition, offset, index))
                continue
            if not priced:
                self.counters["unpriced"] += 1
            if late:
                self.counters[late] += 1
            kept.append(ev)
            costs.append(cost)
            flags.append(priced)
            at.append(int(now_s if late else ts_s))
            pieces.append(piece)
        # a priced event is larger than its input: split so no record exceeds the limit
        chunk: list[bytes] = []
        size = 0
        for piece in pieces:
            if chunk and size + len(piece) > room:
                out.priced.append((env_key.encode(), join_envelope(head, chunk)))
                chunk, size = [], 0
            chunk.append(piece)
            size += len(piece) + 1
        if chunk:
            out.priced.append((env_key.encode(), join_envelope(head, chunk)))
        return kept, costs, flags, at

    def _delta(self, deltas: dict[int, Delta], key: str) -> Delta:
        dest = self._dest.get(key)
        if dest is None:
            if len(self._dest) >= DEST_CACHE_SIZE:
                self._dest.clear()
            dest = self._dest[key] = partition_for(key, self.partitions)
        d = deltas.get(dest)
        if d is None:
            d = deltas[dest] = Delta()
        return d

    def _aggregate(
        self, events: list[StageEvent], costs: list[Decimal], flags: list[bool], at: list[int],
        deltas: dict[int, Delta],
    ) -> None:  # fmt: skip
        """One pass over the events: rollup rows grouped by everything that picks a scope (per
        second counted at, fanned out to the scopes once per group), each trace's span costs,
        and what the trace's owner needs for loop detection and screened kills (``loops``,
        ``screens``: the loop features in event order, then the screen verdicts), each trace
        key built once."""
        Group = tuple[
            str, str, str | None, str | None, str, str | None, str | None, str | None, str | None, int
        ]
        groups: dict[Group, Totals] = {}
        spans: dict[tuple[str, str], dict[str, tuple[str | None, Decimal]]] = {}
        feats: dict[tuple[str, str], list[list[Any]]] = {}
        screened: dict[tuple[str, str], list[list[Any]]] = {}
        loops_on = self.loops.settings.enabled
        for ev, cost, priced, sec in zip(events, costs, flags, at, strict=True):
            trace_of = (ev.tenant, ev.trace_id)
            tspans = spans.get(trace_of)
            if tspans is None:
                tspans = spans[trace_of] = {}
            if loops_on:
                f = loop_features(ev, cost)
                if f is not None:
                    tf = feats.get(trace_of)
                    if tf is None:
                        tf = feats[trace_of] = []
                    tf.append(f)
            if type(ev) is ScreenEvent:  # decided by the trace's owner in stage two (screens)
                sf = screen_features(ev)
                if sf is not None:
                    screened.setdefault(trace_of, []).append(sf)
                qf = source_flag(ev)
                if qf is not None:  # counted by the source's owner (quarantine alerts)
                    self._delta(deltas, qf[0]).flag(*qf)
            old = tspans.get(ev.span_id)
            parent = ev.parent_span_id or (old[0] if old else None)
            if not is_usage(ev):
                if old is None or (parent and not old[0]):
                    tspans[ev.span_id] = (parent, old[1] if old else ZERO)
                continue
            tspans[ev.span_id] = (parent, (old[1] if old else ZERO) + cost)
            gk = (ev.tenant, ev.agent, ev.agent_version, ev.workflow, ev.trace_id, ev.provider, ev.model,
                  user_of(ev), conversation_of(ev), sec)  # fmt: skip
            t = groups.get(gk)
            if t is None:
                t = groups[gk] = Totals()
            t.add(cost, ev.input_tokens + ev.output_tokens, 1 if priced else 0, 0 if priced else 1)
        for (tenant, agent, version, workflow, trace, provider, model, user, conv, sec), t in groups.items():
            keys = [f"tenant/{tenant}", f"agent/{tenant}/{agent}", f"trace/{tenant}/{trace}",
                    f"provider/{provider}/{model}"]  # fmt: skip
            if version is not None:
                keys.append(f"agent_version/{tenant}/{agent}/{version}")
            if workflow is not None:
                keys.append(f"workflow/{tenant}/{workflow}")
            if user is not None:
                keys.append(f"user/{tenant}/{user}")
            if conv is not None:
                keys.append(f"conversation/{tenant}/{conv}")
            for k in keys:
                self._delta(deltas, k).add(k, sec, t.cost, t.tokens, t.calls, t.unpriced)
        trace_keys: dict[tuple[str, str], str] = {}
        for trace_of, tspans in spans.items():
            k = trace_keys[trace_of] = f"trace/{trace_of[0]}/{trace_of[1]}"
            into = self._delta(deltas, k).spans(k)
            for span_id, (parent, cost) in tspans.items():
                into[span_id] = [parent, cost]
        for group in (feats, screened):
            for trace_of, fs in group.items():
                k = trace_keys[trace_of]
                self._delta(deltas, k).loops.setdefault(k, []).extend(fs)

    def _budgets(
        self, events: list[StageEvent], costs: list[Decimal], at: list[int], deltas: dict[int, Delta]
    ) -> None:
        """Per policy and scope: the (event id, amount) contributions in order (stage two
        evaluates the budget with them) and, for a selector finer than its scope, the
        policy's own counter ``policy/<id>|<scope>``; both go to the scope's partition."""
        for p in self.engine.policies.values():
            if not p.enabled:
                continue
            coarse = is_coarse(p.selector)
            contributions: dict[str, tuple[ScopeRef, list[list[str]]]] = {}
            matches: dict[tuple[str, str, str | None, str | None, str | None, str | None], bool] = {}
            who = p.selector.user != "*" or p.selector.conversation != "*"
            for ev, cost, sec in zip(events, costs, at, strict=True):
                if not is_usage(ev):
                    continue
                # for a coarse selector matching the event's fields is matching its scope;
                # memoised per envelope: most events of an envelope share these fields
                mk = (ev.tenant, ev.agent, ev.agent_version, ev.workflow,
                      user_of(ev) if who else None, conversation_of(ev) if who else None)  # fmt: skip
                hit = matches.get(mk)
                if hit is None:
                    hit = matches[mk] = selector_matches_event(p.selector, ev)
                if not hit:
                    continue
                ref = scope_for(ev, p.selector.per, ev.provider, ev.model)
                if ref is None:
                    continue
                tokens = ev.input_tokens + ev.output_tokens
                amount = cost if p.unit is LimitUnit.USD else Decimal(tokens)
                entry = contributions.get(ref.key)
                if entry is None:
                    entry = contributions[ref.key] = (ref, [])
                entry[1].append([ev.event_id, str(amount)])
                if not coarse:  # a selector finer than its scope keeps its own counter
                    ck = f"policy/{p.policy_id}|{ref.key}"
                    self._delta(deltas, ck).add(ck, sec, cost, tokens, 1, 0)
            for ref, contrib in contributions.values():
                self._delta(deltas, ref.key).budgets.append(
                    [p.policy_id, deltas_mod.ref_fields(ref), contrib]
                )

    def _loops(self, feats: list[list[Any]], now_s: float, out: Output, trace: Rollup | None = None) -> None:
        now = datetime.fromtimestamp(now_s, UTC)
        ttl = timedelta(seconds=self.loops.settings.kill_ttl_s)
        state = self.loops.state_in(trace) if trace is not None else None
        for f in feats:
            if f[0] == SCREEN:
                out.add(self.screens.kill(f, now_s))
                continue
            verdict = self.loops.observe_features(f, state)
            if verdict is None:
                continue
            self.counters["loops"] += 1
            ref = ScopeRef(ScopeKind.TRACE, tenant=verdict.tenant, trace_id=verdict.trace_id)
            desire = Desire(Action.KILL, f"runaway loop: {verdict.reason}", kill_reason="loop",
                            cause_event_id=verdict.cause_event_id, expires_at=now + ttl)  # fmt: skip
            cmd = self.enforcer.want(ref, "loop", desire, now)
            em = Emitted(commands=[cmd] if cmd else [])
            em.alerts.append(
                AlertEvent(
                    alert_id=new_id(),
                    dedup_key=f"loop:{ref.key}"[:255],
                    ts=now,
                    rule="runaway_loop",
                    entity=ref.key,
                    tenant=verdict.tenant,
                    state=AlertState.ALERT,
                    severity=Severity.ERROR,
                    summary=f"trace {verdict.trace_id} of {verdict.agent} killed: {verdict.reason}"[:1024],
                    figures={"agent": verdict.agent, "cause_event_id": verdict.cause_event_id},
                    command_id=cmd.command_id if cmd else None,
                )
            )
            out.add(em)

    # -- trace deadlines (worker.deadlines; docs/adr/0019) ----------------------------------

    def _deadline_rows(self, events: list[StageEvent], at: list[int], deltas: dict[int, Delta]) -> None:
        """Stage one: what the deadline watch needs of each trace, to the trace's partition."""
        if not self.deadlines.policies:
            return
        for (tenant, trace), rows in deadline_rows(events, at).items():
            k = f"trace/{tenant}/{trace}"
            self._delta(deltas, k).deadlines[k] = rows

    def _observe_deadlines(self, doc: dict[str, list[list[Any]]] | None, fresh: set[str]) -> None:
        """Stage two: a delta's deadline rows (a replayed one was dropped with its rollup)."""
        for trace_key, rows in (doc or {}).items():
            if trace_key in fresh:
                _, tenant, trace_id = trace_key.split("/", 2)
                self.deadlines.observe(tenant, trace_id, rows)

    def _deadline_kills(self, now_s: float, out: Output) -> None:
        """The timer: kill (trace scope) every open trace past its deadline, with an alert."""
        due = self.deadlines.due(now_s, None if self.held is None else self.holds)
        for tenant, trace_id in self.deadlines.take_released():  # the kill stays until it expires
            self.enforcer.forget(ScopeRef(ScopeKind.TRACE, tenant=tenant, trace_id=trace_id), "deadline")
        if not due:
            return
        now = datetime.fromtimestamp(now_s, UTC)
        ttl = timedelta(seconds=self.loops.settings.kill_ttl_s)
        for v in due:
            self.counters["deadlines"] += 1
            ref = ScopeRef(ScopeKind.TRACE, tenant=v.tenant, trace_id=v.trace_id)
            desire = Desire(Action.KILL, v.reason, v.policy_id, kill_reason="other",
                            cause_event_id=v.cause_event_id, expires_at=now + ttl)  # fmt: skip
            cmd = self.enforcer.want(ref, "deadline", desire, now)
            em = Emitted(commands=[cmd] if cmd else [])
            em.alerts.append(
                AlertEvent(
                    alert_id=new_id(), dedup_key=f"deadline:{ref.key}"[:255], ts=now, rule="trace_deadline",
                    entity=ref.key, tenant=v.tenant, state=AlertState.ALERT, severity=Severity.ERROR,
                    summary=f"trace {v.trace_id} of {v.agent} killed: {v.reason}"[:1024], policy_id=v.policy_id,
                    figures={"agent": v.agent, "deadline_s": v.deadline_s, "cause_event_id": v.cause_event_id},
                    command_id=cmd.command_id if cmd else None,
                )
            )  # fmt: skip
            out.add(em)

    def _unknown_models(self, now_s: float, out: Output) -> None:
        for provider, model in self.book.take_new_unknown():
            alert = AlertEvent(
                alert_id=new_id(), dedup_key=f"unpriced:{provider}/{model}"[:255],
                ts=datetime.fromtimestamp(now_s, UTC), rule="unpriced_model", entity=f"{provider}/{model}"[:512],
                state=AlertState.WARN, severity=Severity.WARNING,
                summary=f"no price for {provider}/{model}: its usage is counted as unpriced (never $0); "
                "add it to the price overrides file",
            )  # fmt: skip
            out.alerts.append((alert.dedup_key.encode(), dump(alert)))

    # -- control topic read-back --------------------------------------------------------------

    def observe_command(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.enforcer.observe(key, None)
            return
        try:
            cmd = ControlCommand.model_validate_json(value)
        except ValueError:
            return  # not ours to judge; the API validates what it writes
        self.enforcer.observe(key, cmd)

    def adopt_commands(self, now_s: float) -> int:
        """After a restart: take back the budget commands we left on the control topic, so a
        killed scope (which sends nothing any more) is still resumed when its window rolls
        over. Returns how many were adopted."""
        now = datetime.fromtimestamp(now_s, UTC)
        adopted = 0
        for cmd in list(self.enforcer.current.values()):
            if adopt_trace_kill(self.enforcer, cmd, now):  # a screen or loop kill (screens)
                adopted += 1
                continue
            if cmd.issued_by != ISSUER or cmd.policy_id is None or not cmd.active(now):
                continue
            if cmd.action not in (Action.KILL, Action.THROTTLE, Action.DOWNGRADE):
                continue
            policy = self.engine.policies.get(cmd.policy_id)
            ref = ScopeRef.from_scope(cmd.scope)
            pair = self.engine.pair(cmd.policy_id, ref)
            hard = len(policy.thresholds) + 1 if policy is not None else 1
            if cmd.action is Action.DOWNGRADE:  # at least the first downgrade level
                ats = [
                    i
                    for i, th in enumerate(policy.thresholds if policy else [], 1)
                    if th.action == "downgrade"
                ]
                level = ats[0] if ats else 1
            else:
                level = hard if cmd.action is Action.KILL else max(1, hard - 1)
            pair.level = max(pair.level, level)
            p = cmd.params
            desire = Desire(cmd.action, cmd.reason, cmd.policy_id, p.rate_per_s, p.kill_reason, cmd.cause_event_id,
                            model=p.model, from_models=tuple(p.from_models) if p.from_models else None)  # fmt: skip
            self.enforcer.adopt(ref, f"policy:{cmd.policy_id}", desire)
            adopted += 1
        return adopted

    def observe_policy(self, key: str, value: bytes | None) -> None:
        self._observe_any_policy(key, value)
        if value is None:
            self.engine.delete(key)
            self._tombstones.update(self.budget_keys.get(key, {}))
            return
        try:
            p = Policy.model_validate_json(value)
        except ValueError:
            self.counters["bad_policies"] += 1
            return
        if p.is_budget:
            self.engine.upsert(p)
        else:  # a deadline or call timeout alone: no budget (any it had is lifted)
            self.engine.delete(p.policy_id)

    def _observe_any_policy(self, key: str, value: bytes | None) -> None:
        """Every policy, budgets or not, for the deadline watch."""
        if value is None:
            self.policies.pop(key, None)
        else:
            try:
                self.policies[key] = Policy.model_validate_json(value)
            except ValueError:
                return
        self.deadlines.set_policies(self.policies.values())

    # -- budgets topic read-back: a deleted policy leaves no live budget behind --------------

    def observe_budget(self, key: str, value: bytes | None, now_s: float) -> None:
        """A record of the compacted budgets topic (key ``policy_id|scope key``)."""
        policy_id = key.partition("|")[0]
        if value is None:
            keys = self.budget_keys.get(policy_id)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.budget_keys[policy_id]
            return
        self.budget_keys.setdefault(policy_id, {})[key] = now_s

    def budget_tombstones(self, now_s: float) -> list[Tombstoned]:
        """Tombstones for the live budgets of deleted policies: every key on the topic when the
        deletion arrived, and statuses of unknown policies older than ``ORPHAN_GRACE_S``. A key
        whose policy exists again (deleted, then created anew) is left alone."""
        known = self.engine.policies
        for policy_id, keys in self.budget_keys.items():
            if policy_id not in known:
                self._tombstones.update(k for k, seen in keys.items() if now_s - seen >= ORPHAN_GRACE_S)
        gone = sorted(k for k in self._tombstones if k.partition("|")[0] not in known)
        self._tombstones.clear()
        for k in gone:
            self.observe_budget(k, None, now_s)
        self.counters["budget_tombstones"] += len(gone)
        return [(k.encode(), None) for k in gone]
