"""The budget authority: one command per scope and lane for every budget source (each policy,
the loop detector), published only when the merged wish differs from what the control topic says.

The control topic is compacted by key, and a key names scope, lane and authority
(``admission.budget:agent/acme/writer``), so the budget worker is the only writer of its keys:
the health worker's throttles and rollbacks and a human's kills sit on keys of their own, and
the Guard combines them. Within our key two policies must not overwrite each other (a
throttle after a kill would undo the kill), hence the merge: kill beats throttle, the slowest
throttle wins. We only resume what we issued ourselves: after a human's ``resume`` on our key
we kill again only when a policy asks anew.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from agentledger.events import (
    BUDGET_ISSUER,
    Action,
    Authority,
    CommandParams,
    ControlCommand,
    Lane,
    ScopeKind,
    control_key,
    lane_of,
)
from agentledger.lanes import ControlRecords
from agentledger.streams.worker.scopes import ScopeRef

ISSUER = BUDGET_ISSUER

KillReason = Literal["budget", "loop", "manual", "quality", "other"]
WantLane = Literal["admission", "downgrade"]


@dataclass(frozen=True, slots=True)
class Desire:
    action: Action  # KILL or THROTTLE (admission lane), DOWNGRADE (its own lane)
    reason: str
    policy_id: str | None = None
    rate_per_s: float | None = None
    kill_reason: KillReason | None = None
    cause_event_id: str | None = None
    expires_at: datetime | None = None
    model: str | None = None  # DOWNGRADE: the cheaper model
    from_models: tuple[str, ...] | None = None  # DOWNGRADE: only calls to these models

    @property
    def strength(self) -> tuple[int, float]:
        if self.action is Action.KILL:
            return (2, 0.0)
        if self.action is Action.DOWNGRADE:  # alone in its lane: the first wish stands
            return (0, 0.0)
        return (1, -(self.rate_per_s or 0.0))


def new_id() -> str:
    return uuid.uuid4().hex


class Enforcer:
    def __init__(self) -> None:
        self._desires: dict[str, dict[str, Desire]] = {}
        self._refs: dict[str, ScopeRef] = {}
        self.records = ControlRecords()

    @property
    def current(self) -> dict[str, ControlCommand]:
        """The command in force per control key, as on the control topic (ours and others');
        a record from before lanes counts under the key its content names."""
        return self.records.current

    def observe(self, key: str, cmd: ControlCommand | None) -> None:
        """A record read back from the control topic (``None``: a tombstone)."""
        self.records.apply(key, cmd)

    def adopt(self, ref: ScopeRef, source: str, desire: Desire) -> None:
        """Remember a wish without deciding (state re-learnt from the control topic at start)."""
        key = control_key(ref.key, lane_of(desire.action, ref.kind), Authority.BUDGET)
        self._desires.setdefault(key, {})[source] = desire
        self._refs[key] = ref

    def forget(self, ref: ScopeRef, source: str, lane: Lane = Lane.ADMISSION) -> None:
        """Drop a source's wish without deciding anything: the command it caused stays in force
        until it expires (a trace deadline's kill, once the trace is forgotten)."""
        key = control_key(ref.key, lane, Authority.BUDGET)
        wishes = self._desires.get(key)
        if wishes is not None:
            wishes.pop(source, None)
            if not wishes:
                del self._desires[key]
                self._refs.pop(key, None)

    def merged(self, key: str) -> Desire | None:
        wishes = self._desires.get(key)
        if not wishes:
            return None
        return max(wishes.values(), key=lambda d: d.strength)

    def want(
        self, ref: ScopeRef, source: str, desire: Desire | None, now: datetime, lane: WantLane = "admission"
    ) -> ControlCommand | None:
        """Record what ``source`` wants for ``ref`` in ``lane``; return the command to publish, if any."""
        key = control_key(
            ref.key, Lane.DOWNGRADE if lane == "downgrade" else Lane.ADMISSION, Authority.BUDGET
        )
        wishes = self._desires.setdefault(key, {})
        if desire is None:
            wishes.pop(source, None)
        else:
            wishes[source] = desire
            self._refs[key] = ref
        for gone in [s for s, d in wishes.items() if d.expires_at is not None and d.expires_at <= now]:
            del wishes[gone]  # an expired kill (loop, screen) is no wish: it must not come back
        if not wishes:
            del self._desires[key]
        if lane == "downgrade":
            return self._decide_downgrade(ref, key, now)
        return self._decide(ref, key, now)

    def _decide_downgrade(self, ref: ScopeRef, key: str, now: datetime) -> ControlCommand | None:
        """The downgrade lane: a downgrade (ours or a human's) stands until it expires; we
        lift only ours, by publishing it again with ``expires_at`` = now."""
        want = self.merged(key)
        cur = self.current.get(key)
        active = cur is not None and cur.action is Action.DOWNGRADE and cur.active(now)
        if want is None:
            if not active or cur is None or cur.issued_by != ISSUER:
                return None
            cmd = cur.model_copy(
                update={"command_id": new_id(), "ts": now, "reason": f"lifted: {cur.reason}"[:1024],
                        "expires_at": now, "cause_event_id": None}
            )  # fmt: skip
        else:
            if active and cur is not None:
                same = cur.params.model == want.model and cur.params.from_models == (
                    list(want.from_models) if want.from_models is not None else None
                )
                if same or cur.issued_by != ISSUER:
                    return None
            cmd = ControlCommand(
                command_id=new_id(),
                ts=now,
                scope=ref.to_scope(),
                action=Action.DOWNGRADE,
                reason=want.reason[:1024],
                policy_id=want.policy_id,
                params=CommandParams(
                    model=want.model, from_models=list(want.from_models) if want.from_models else None
                ),
                expires_at=want.expires_at,
                issued_by=ISSUER,
                cause_event_id=want.cause_event_id,
            )
        self.records.put(key, cmd)
        return cmd

    def _decide(self, ref: ScopeRef, key: str, now: datetime) -> ControlCommand | None:
        want = self.merged(key)
        cur = self.current.get(key)
        active = cur is not None and cur.action in (Action.KILL, Action.THROTTLE) and cur.active(now)
        if want is None:
            if not active or cur is None or cur.issued_by != ISSUER:
                return None
            cmd = ControlCommand(
                command_id=new_id(),
                ts=now,
                scope=ref.to_scope(),
                action=Action.RESUME,
                reason=f"lifted: {cur.reason}"[:1024],
                policy_id=cur.policy_id,
                issued_by=ISSUER,
                lane=Lane.ADMISSION if ref.kind is ScopeKind.PROVIDER else None,  # else the default
            )
        else:
            if active and cur is not None:
                same = cur.action is want.action and (
                    want.action is Action.KILL or cur.params.rate_per_s == want.rate_per_s
                )
                if same or (cur.action is Action.KILL and cur.issued_by != ISSUER):
                    return None
            cmd = ControlCommand(
                command_id=new_id(),
                ts=now,
                scope=ref.to_scope(),
                action=want.action,
                reason=want.reason[:1024],
                policy_id=want.policy_id,
                params=CommandParams(rate_per_s=want.rate_per_s, kill_reason=want.kill_reason),
                expires_at=want.expires_at,
                issued_by=ISSUER,
                cause_event_id=want.cause_event_id,
            )
        self.records.put(key, cmd)
        return cmd
