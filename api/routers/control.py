"""``POST /v1/control``: kill, resume, throttle... a scope by hand, recorded with who did it;
``GET /v1/control``: the commands in force (the compacted control topic)."""

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
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind
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
            )
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise ContractError(str(exc).splitlines()[-1] if str(exc) else "invalid command") from None
        # keyed by scope and lane: a downgrade never replaces the scope's kill, nor the reverse
        await state.publisher.send([Record(state.topics.control, command.key, dump(command))])
        state.control.put(command.key, command)  # known by its id from now on
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


@router.get("", response_model=list[ControlCommand], responses=responses(401, 403))
async def list_control(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ControlCommand]:
    """The latest command per scope that this key may see (its tenant's, and the provider
    commands without a tenant, which apply to every tenant)."""
    return sorted((c for c in state.control.items().values() if _visible(key, c)), key=lambda c: c.ts)
