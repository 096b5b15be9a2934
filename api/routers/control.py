"""``POST /v1/control``: kill, resume, throttle... a scope by hand, recorded with who did it;
``GET /v1/control``: the commands in force (the compacted control topic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from agentledger.api.auth import require
from agentledger.api.errors import ForbiddenError, responses
from agentledger.api.kafka import Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ContractError
from agentledger.events import Action, CommandParams, ControlCommand, Scope
from agentledger.wire import dump

router = APIRouter(prefix="/v1/control", tags=["control"])


class ControlRequest(BaseModel):
    """What a person asks for; the API adds the id, the time and who issued it."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    action: Action
    reason: str = Field(min_length=1, max_length=1024)
    params: CommandParams = Field(default_factory=CommandParams)
    expires_at: datetime | None = Field(default=None, description="Timezone-aware; the command lapses then.")


def _visible(key: ApiKey, command: ControlCommand) -> bool:
    return key.tenant is None or command.scope.tenant == key.tenant


@router.post("", status_code=202, response_model=ControlCommand, responses=responses(401, 403, 422, 503))
async def post_control(
    body: ControlRequest, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> ControlCommand:
    """Publish a command keyed by its scope; agents' Guards obey it within a second."""
    if key.tenant is not None and body.scope.tenant != key.tenant:
        raise ForbiddenError(
            f"this key is bound to tenant {key.tenant!r}; the scope names {body.scope.tenant!r}"
        )
    try:
        command = ControlCommand(
            command_id=f"manual-{uuid.uuid4().hex[:16]}",
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
    await state.publisher.send([Record(state.topics.control, command.scope.key, dump(command))])
    state.control.put(command.scope.key, command)
    return command


@router.get("", response_model=list[ControlCommand], responses=responses(401, 403))
async def list_control(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ControlCommand]:
    """The latest command per scope that this key may see."""
    return sorted((c for c in state.control.items().values() if _visible(key, c)), key=lambda c: c.ts)
