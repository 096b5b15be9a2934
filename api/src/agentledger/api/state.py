"""What the running app holds: the key store, the Kafka clients and views, topic names."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from agentledger import topics
from agentledger.api.config import ApiSettings
from agentledger.api.idempotency import IdClaims
from agentledger.api.kafka import CompactedView, Publisher
from agentledger.api.keys import KeyStore
from agentledger.api.ratelimit import EventRateLimiter
from agentledger.events import BudgetStatus, ControlCommand, ObjectivePolicy, Policy
from agentledger.rollout import RolloutPolicy
from agentledger.tools import Approval, ToolPolicy
from agentledger.warehouse.reader import WarehouseReader


@dataclass(frozen=True, slots=True)
class TopicNames:
    events: str
    policies: str
    control: str
    budgets: str
    rollouts: str
    objectives: str
    tools: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        return cls(
            events=prefix + topics.EVENTS.name,
            policies=prefix + topics.POLICIES.name,
            control=prefix + topics.CONTROL.name,
            budgets=prefix + topics.BUDGETS.name,
            rollouts=prefix + topics.ROLLOUTS.name,
            objectives=prefix + topics.OBJECTIVES.name,
            tools=prefix + topics.TOOLS.name,
        )


@dataclass
class ApiState:
    settings: ApiSettings
    keys: KeyStore
    limiter: EventRateLimiter
    topics: TopicNames
    publisher: Publisher
    policies: CompactedView[Policy]
    budgets: CompactedView[BudgetStatus]
    control: CompactedView[ControlCommand]
    rollouts: CompactedView[RolloutPolicy]
    objectives: CompactedView[ObjectivePolicy]
    tools: CompactedView[ToolPolicy | Approval]  # tool policies and approvals (docs/adr/0018)
    warehouse: WarehouseReader
    command_ids: IdClaims[ControlCommand] = field(default_factory=IdClaims)
    """``command_id`` claimed before the produce: a racing retry writes nothing."""
    extras: dict[str, object] = field(default_factory=dict)


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.ledger
    return state
