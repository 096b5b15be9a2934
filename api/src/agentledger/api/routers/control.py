"""``POST /v1/control``: kill, resume, throttle... a scope by hand, recorded with who did it;
``GET /v1/control``: the commands in force (the compacted control topic), with their lane and
authority.

A human's command goes on the scope's ``manual`` key in its lane. A human's ``resume`` lifts
the lane for every authority: it is also written on each key of that scope and lane that holds
a kill, throttle, rollback or failover in force (the budget and health workers' keys), so the
scope runs again; a worker may decide again later (a budget still over its limit kills anew).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from agentledger.api.auth import require
from agentledger.api.errors import ConflictError, ForbiddenError, responses
from agentledger.api.kafka import Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ContractError
from agentledger.events import (
    Action,
    Authority,
    CommandParams,
    ControlCommand,
    Lane,
    Scope,
    ScopeKind,
    lane_of,
    parse_control_key,
)
from agentledger.lanes import ControlRecords
from agentledger.wire import dump

router = APIRouter(prefix="/v1/control", tags=["control"])


class ControlRequest(BaseModel):
    """What a person asks for; the API adds the id, the time and who issued it."""

    model_config = ConfigDict(extra="forbid")

    command_id: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-:.]+$",
        description="Your id for this command (8-64 of A-Z a-z 0-9 _ - : .). Sending the same id "
        "again (a retry after a 503) does not issue a second command. Default: a new id.",
    )
    scope: Scope
    action: Action
    reason: str = Field(min_length=1, max_length=1024)
    params: CommandParams = Field(default_factory=CommandParams)
    expires_at: datetime | None = Field(default=None, description="Timezone-aware; the command lapses then.")
    lane: Lane | None = Field(
        default=None,
        description="A `resume`: the lane it lifts (`admission`, `routing`, `downgrade`, `provider`; "
        "default: `provider` on a provider scope, else `admission`).",
    )


class ControlInForce(ControlCommand):
    """A command in force, with the key it sits on and whose decision it is."""

    control_key: str = Field(description="Its key on the control topic: `<lane>.<authority>:<scope key>`.")
    authority: Authority = Field(description="`budget`, `health` (the workers) or `manual` (a human).")


def in_force(state: ApiState) -> dict[str, ControlCommand]:
    """The command in force per control key (records from before lanes read as their lane)."""
    records = ControlRecords()
    for key, command in state.control.items().items():
        records.apply(key, command)
    return records.current


def _lifted_keys(state: ApiState, command: ControlCommand) -> list[str]:
    """The keys a human's ``resume`` is written on: its own, and every key of the scope and
    lane whose command is still in force."""
    keys = [command.key]
    now = datetime.now(UTC)
    for key, held in in_force(state).items():
        parsed = parse_control_key(key)
        if parsed is None or key in keys:
            continue
        lane, _, scope_key = parsed
        same = scope_key == command.scope.key and lane is command.in_lane
        if same and held.action is not Action.RESUME and held.active(now):
            keys.append(key)
    return keys


def _visible(key: ApiKey, command: ControlCommand) -> bool:
    """A tenant key sees its tenant's commands and the global provider commands (they apply
    to it), never another tenant's."""
    scope = command.scope
    if key.tenant is None or scope.tenant == key.tenant:
        return True
    return scope.kind is ScopeKind.PROVIDER and scope.tenant is None


def _check_scope(key: ApiKey, scope: Scope) -> None:
    """A tenant key commands its own tenant only. A provider scope without a tenant reaches
    every tenant's Guard, so it needs an all-tenant admin key; with a tenant it reaches that
    tenant's Guards only."""
    if key.tenant is None or scope.tenant == key.tenant:
        return
    if scope.kind is ScopeKind.PROVIDER and scope.tenant is None:
        raise ForbiddenError(
            "a provider scope without a tenant applies to every tenant's agents and needs an "
            f'all-tenant admin key; this key is bound to tenant {key.tenant!r}: add "tenant": '
            f"{key.tenant!r} to the scope to apply it to that tenant only"
        )
    raise ForbiddenError(f"this key is bound to tenant {key.tenant!r}; the scope names {scope.tenant!r}")


def _same_request(command: ControlCommand, body: ControlRequest) -> bool:
    return (command.scope, command.action, command.reason, command.params, command.expires_at) == (
        body.scope,
        body.action,
        body.reason,
        body.params,
        body.expires_at,
    )


@router.post(
    "", status_code=202, response_model=ControlCommand, responses=responses(401, 403, 409, 415, 422, 503)
)
async def post_control(
    body: ControlRequest, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> ControlCommand:
    """Publish a command keyed by its scope; agents' Guards obey it within a second.

    Idempotent by ``command_id``: a retry with the id of a command already written answers it
    again and writes nothing, even after a later command replaced it; the same id with a
    different request is 409.
    """
    _check_scope(key, body.scope)

    if body.lane is not None and body.action is not Action.RESUME:
        own = lane_of(body.action, body.scope.kind)
        if body.lane is not own:
            raise ContractError(
                f"a {body.action.value} belongs to the {own.value} lane, not {body.lane.value}"
            )

    async def write(command_id: str) -> ControlCommand:
        try:
            command = ControlCommand(
                command_id=command_id,
                ts=datetime.now(UTC),
                scope=body.scope,
                action=body.action,
                reason=body.reason,
                params=body.params,
                expires_at=body.expires_at,
                issued_by=f"key:{key.name}:{key.key_id}"[:128],
                lane=body.lane if body.action is Action.RESUME else None,
            )
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise ContractError(str(exc).splitlines()[-1] if str(exc) else "invalid command") from None
        # keyed by scope, lane and authority: a human's kill is never replaced by a worker's
        # resume, and a rollback never replaces a kill
        keys = _lifted_keys(state, command) if command.action is Action.RESUME else [command.key]
        value = dump(command)
        await state.publisher.send([Record(state.topics.control, k, value) for k in keys])
        for k in keys:
            state.control.put(k, command)  # known by its id from now on
        return command

    if body.command_id is None:
        return await write(f"manual-{uuid.uuid4().hex[:16]}")
    command_id = body.command_id
    # claimed before the produce: a retry racing this request answers its outcome
    held: ControlCommand
    held, written = await state.command_ids.once(command_id, state.control.by_id, lambda: write(command_id))
    if not written and (not _visible(key, held) or not _same_request(held, body)):
        raise ConflictError(f"command_id {command_id!r} is already used by another command")
    return held


@router.get("", response_model=list[ControlInForce], responses=responses(401, 403))
async def list_control(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ControlInForce]:
    """The latest command per scope, lane and authority that this key may see (its tenant's,
    and the provider commands without a tenant, which apply to every tenant), oldest first."""
    out = []
    for k, c in in_force(state).items():
        if not _visible(key, c):
            continue
        parsed = parse_control_key(k)
        lane, authority = (parsed[0], parsed[1]) if parsed is not None else (c.in_lane, c.decided_by)
        fields = {**c.model_dump(), "lane": lane, "control_key": k, "authority": authority}
        out.append(ControlInForce.model_validate(fields))
    return sorted(out, key=lambda c: c.ts)
