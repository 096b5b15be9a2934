"""The only place topic names, keys, partition counts and retention live."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def topic_config(self, min_insync: int | None = None) -> dict[str, str]:
        cfg = {"cleanup.policy": "compact" if self.compacted else "delete", **self.config}
        if min_insync is not None:
            cfg["min.insync.replicas"] = str(min_insync)
        return cfg


# Hot topics share one partition count: Faust needs source topics and table changelogs to
# have equal partition counts (DESIGN.md, Faust notes).
PARTITIONS = 4
_WEEK_MS = str(7 * 24 * 3600 * 1000)
# Compacted topics: a restarted reader learns the current state per key. Small segments and
# a low dirty ratio so compaction actually runs on a low-volume topic.
_COMPACT = {"segment.ms": "60000", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "60000"}

EVENTS = TopicSpec("agentledger.events.v1", "tenant/agent", PARTITIONS, config={"retention.ms": _WEEK_MS})
PRICED = TopicSpec(
    "agentledger.events.priced.v1", "tenant/agent", PARTITIONS, config={"retention.ms": _WEEK_MS}
)
DLQ = TopicSpec("agentledger.events.dlq.v1", "original key", PARTITIONS, config={"retention.ms": _WEEK_MS})
POLICIES = TopicSpec("agentledger.policies.v1", "policy id", 1, compacted=True, config=_COMPACT)
CONTROL = TopicSpec("agentledger.control.v1", "lane.authority:scope key", 1, compacted=True, config=_COMPACT)
BUDGETS = TopicSpec("agentledger.budgets.v1", "policy_id|scope key", 1, compacted=True, config=_COMPACT)
ROLLOUTS = TopicSpec("agentledger.rollouts.v1", "tenant/agent", 1, compacted=True, config=_COMPACT)
SCOPE_DELTAS = TopicSpec(
    "agentledger.scope-deltas.v1",
    "destination partition (CRC-32 of the scope key mod partitions, chosen by the worker)",
    PARTITIONS,
    config={"retention.ms": _WEEK_MS},
)
"""The worker's repartition topic: stage one's per-scope deltas, partitioned by scope
(docs/adr/0011-two-stage-worker.md). Same partition count as the events topic."""
TOOLS = TopicSpec("agentledger.tools.v1", "policy:<id> | approval:<id>", 1, compacted=True, config=_COMPACT)
ALERTS = TopicSpec("agentledger.alerts.v1", "alert dedup key", PARTITIONS, config={"retention.ms": _WEEK_MS})
# The health worker's repartition topic: each events record's LLM calls, aggregated per
# provider/model and second, keyed by provider so one partition sees every call to it (ADR 0012).
HEALTH_PROVIDERS = TopicSpec(
    "agentledger.health.providers.v1", "provider", PARTITIONS, config={"retention.ms": str(24 * 3600 * 1000)}
)

OBJECTIVES = TopicSpec("agentledger.objectives.v1", "objective id", 1, compacted=True, config=_COMPACT)

ALL: tuple[TopicSpec, ...] = (
    EVENTS,
    PRICED,
    DLQ,
    POLICIES,
    CONTROL,
    BUDGETS,
    ALERTS,
    SCOPE_DELTAS,
    ROLLOUTS,
    OBJECTIVES,
    HEALTH_PROVIDERS,
    TOOLS,
)


def with_prefix(spec: TopicSpec, prefix: str) -> TopicSpec:
    """The same topic under a prefix (tests and side-by-side deployments)."""
    if not prefix:
        return spec
    return TopicSpec(prefix + spec.name, spec.key, spec.partitions, spec.compacted, dict(spec.config))


def name(spec: TopicSpec, prefix: str = "") -> str:
    return prefix + spec.name


# What each long-running service reads or writes: checked at its start (admin.require_topics),
# because a missing topic stalls it and a compacted topic created as delete-policy loses state.
NEEDED_BY: dict[str, tuple[TopicSpec, ...]] = {
    "worker": (EVENTS, PRICED, DLQ, POLICIES, CONTROL, BUDGETS, ALERTS, SCOPE_DELTAS, TOOLS),
    "health": (EVENTS, PRICED, CONTROL, ALERTS, ROLLOUTS, OBJECTIVES, HEALTH_PROVIDERS),
    "sink": (PRICED, CONTROL, ALERTS, DLQ),
    "alerts": (ALERTS,),
    "api": (EVENTS, POLICIES, CONTROL, BUDGETS, ROLLOUTS, OBJECTIVES, TOOLS),
    # commands that read one compacted topic: a missing one is a clear line, not a timeout
    "policies": (POLICIES,),
    "objectives": (OBJECTIVES,),
    "budgets": (BUDGETS,),
    "guard": (CONTROL,),
    "rollout": (ROLLOUTS, CONTROL),
}
