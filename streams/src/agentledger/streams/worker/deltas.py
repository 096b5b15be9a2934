"""The records between the worker's two stages (docs/adr/0011-two-stage-worker.md).

Stage one (source: the events topic, keyed ``tenant/agent``) turns each record into per-scope
deltas and sends them to the scope-deltas topic, **one record per destination partition**
holding every delta of that record for that partition (per-record cost is the ceiling: keep
records fat). The destination of a scope key is ``partition_for`` (a stable hash, computed by
us, so every process and every restart agrees); a policy counter ``policy/<id>|<scope>``
lives with its scope.

A record carries its origin, the (events partition, offset) it came from. Stage two keeps,
inside each scope's table value, the highest origin offset applied per events partition and
drops a delta at or below it: a replay of stage one (after a crash or a rebalance) is dropped
exactly, because the totals and the mark are one value in one changelog record.

The value (orjson)::

    {"o": [events partition, offset] | null,
     "r": {scope key: [[[second, cost, tokens, calls, unpriced], ...], {span: [parent, cost]} | null]},
     "b": [[policy id, scope ref fields, [[event id, amount], ...]], ...],
     "l": {trace key: [loop features, ...]},
     "d": {trace key: [deadline rows, ...]},   (worker.deadlines; only with deadline policies)
     "q": {source key: [tenant, channel, source, [[ts, trace, event id], ...]]}}   (worker.screens)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from agentledger.events import ScopeKind
from agentledger.streams.worker.scopes import ScopeRef

Row = list[Any]
"""[second, cost (str), tokens, calls, unpriced]"""


def home_key(key: str) -> str:
    """The scope a table key belongs to: a policy counter ``policy/<id>|<scope>`` lives with
    ``<scope>`` (stage two evaluates the policy's budget there)."""
    if key.startswith("policy/"):
        return key.partition("|")[2]
    return key


def partition_for(key: str, partitions: int) -> int:
    """The scope-deltas (and rollups changelog) partition of a table key: CRC-32 of its home
    scope key modulo the partition count. Stable across processes and Python runs."""
    return zlib.crc32(home_key(key).encode()) % partitions


def ref_fields(ref: ScopeRef) -> list[str | None]:
    return [ref.kind.value, ref.tenant, ref.agent, ref.agent_version, ref.workflow, ref.trace_id, ref.provider,
            ref.model, ref.user, ref.conversation]  # fmt: skip


def ref_of(fields: list[str | None]) -> ScopeRef:
    kind, *rest = fields
    return ScopeRef(ScopeKind(str(kind)), *rest)


@dataclass(slots=True)
class Delta:
    """Everything one events record does to the scopes of one destination partition."""

    rollups: dict[str, tuple[dict[int, list[Any]], dict[str, list[Any]] | None]] = field(default_factory=dict)
    budgets: list[list[Any]] = field(default_factory=list)
    loops: dict[str, list[list[Any]]] = field(default_factory=dict)
    deadlines: dict[str, list[list[Any]]] = field(default_factory=dict)
    flags: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, key: str, sec: int, cost: Decimal, tokens: int, calls: int, unpriced: int) -> None:
        entry = self.rollups.get(key)
        if entry is None:
            entry = self.rollups[key] = ({}, None)
        row = entry[0].get(sec)
        if row is None:
            entry[0][sec] = [cost, tokens, calls, unpriced]
        else:
            row[0] += cost
            row[1] += tokens
            row[2] += calls
            row[3] += unpriced

    def flag(self, key: str, head: tuple[str, str, str], row: list[Any]) -> None:
        """A flagged screen verdict of the source ``key`` (an empty rollup entry carries the
        replay mark for it)."""
        if key not in self.rollups:
            self.rollups[key] = ({}, None)
        entry = self.flags.get(key)
        if entry is None:
            entry = self.flags[key] = [*head, []]
        entry[3].append(row)

    def spans(self, key: str) -> dict[str, list[Any]]:
        entry = self.rollups.get(key)
        if entry is None:
            entry = self.rollups[key] = ({}, {})
        elif entry[1] is None:
            entry = self.rollups[key] = (entry[0], {})
        assert entry[1] is not None
        return entry[1]

    def dumps(self, origin: tuple[int, int] | None) -> bytes:
        r = {
            k: [
                [[s, str(c), t, n, u] for s, (c, t, n, u) in rows.items()],
                {sp: [p, str(c)] for sp, (p, c) in spans.items()} if spans else None,
            ]
            for k, (rows, spans) in self.rollups.items()
        }
        doc: dict[str, Any] = {"o": list(origin) if origin is not None else None, "r": r}
        if self.budgets:
            doc["b"] = self.budgets
        if self.loops:
            doc["l"] = self.loops
        if self.deadlines:
            doc["d"] = self.deadlines
        if self.flags:
            doc["q"] = self.flags
        return orjson.dumps(doc)


def loads(raw: bytes) -> dict[str, Any]:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict) or "r" not in doc:
        raise ValueError("not a scope-deltas record")
    return doc
