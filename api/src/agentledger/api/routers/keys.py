"""``POST /v1/keys/rotate``: move every running agent's key pool for a provider off a key
(docs/security.md, "Rotating a key").

The command goes on the control topic in a lane of its own (``keys.manual:provider/<p>/*``, or
``keys.manual:provider@<tenant>/<p>/*``), which every Guard follows: within the enforcement
bound each process re-reads its key source and moves off the named key (by fingerprint), or
off the one it is using. The command never holds a key: only a fingerprint.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from agentledger.api.auth import require
from agentledger.api.errors import responses
from agentledger.api.kafka import Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.routers.control import _check_scope
from agentledger.api.state import ApiState, get_state
from agentledger.events import Action, CommandParams, ControlCommand, Name, Scope, ScopeKind
from agentledger.wire import dump

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(
        min_length=1, max_length=128, description="As the hook records it: `openai`, `anthropic`..."
    )
    tenant: Name | None = Field(
        default=None, description="Only this tenant's agents (a tenant-bound key must name its own)."
    )
    fingerprint: str | None = Field(
        default=None,
        pattern=r"^k-[0-9a-f]{12}$",
        description="The key to move off, by fingerprint (as events and alerts name it); default: "
        "the key each process is using. Never the key itself.",
    )
    reason: str = Field(default="key rotation", min_length=1, max_length=1024)


@router.post(
    "/rotate", status_code=202, response_model=ControlCommand, responses=responses(401, 403, 422, 503)
)
async def rotate(
    body: RotateRequest, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> ControlCommand:
    """Publish a ``rotate`` command; running Guards obey it within a second."""
    scope = Scope(kind=ScopeKind.PROVIDER, provider=body.provider, tenant=body.tenant)
    _check_scope(key, scope)
    command = ControlCommand(
        command_id=f"rotate-{uuid.uuid4().hex[:16]}",
        ts=datetime.now(UTC),
        scope=scope,
        action=Action.ROTATE,
        reason=body.reason,
        params=CommandParams(fingerprint=body.fingerprint),
        issued_by=f"key:{key.name}:{key.key_id}"[:128],
    )
    await state.publisher.send([Record(state.topics.control, command.key, dump(command))])
    state.control.put(command.key, command)
    return command
