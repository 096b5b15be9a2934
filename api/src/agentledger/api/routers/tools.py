"""Tool permissions: tool policies and approval requests (docs/adr/0018).

Both are records of the compacted tools topic, which every Guard follows: a policy change
reaches running agents as a control command does; an approval's answer reaches the waiting
agent the same way (it does not poll the API). An approval decided more than
``approvals_keep_s`` ago, or left pending that long past its policy's timeout, is deleted from
the topic (a tombstone) whenever approvals are requested, listed or answered, so the topic does
not grow with every request ever made.

Who may read, write and delete a tool policy is the rule every selector record follows
(``agentledger.api.tenancy``, as for budget policies and objectives).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query, Response

from agentledger.api.auth import check_tenant, require
from agentledger.api.errors import ConflictError, responses
from agentledger.api.kafka import CompactedView, Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.api.tenancy import EVERY_TENANT, delete_owned, get_visible, put_owned, visible
from agentledger.errors import ContractError, NotFoundError
from agentledger.tools import Approval, ApprovalRequest, ApprovalState, ToolPolicy, record_key
from agentledger.wire import dump

router = APIRouter(tags=["tools"])
NOUN = "tool policy"


class _PolicyView:
    """The tool policies of the tools topic's view by policy id (the topic keys them
    ``policy:<id>``, beside the approvals): what the tenancy rules read and write."""

    def __init__(self, view: CompactedView[ToolPolicy | Approval]) -> None:
        self._view = view

    def get(self, key: str) -> ToolPolicy | None:
        record = self._view.get(_topic_key(key))
        return record if isinstance(record, ToolPolicy) else None

    def put(self, key: str, value: ToolPolicy) -> None:
        self._view.put(_topic_key(key), value)

    def remove(self, key: str) -> None:
        self._view.remove(_topic_key(key))


def _topic_key(policy_id: str) -> str:
    return f"policy:{policy_id}"


def _policies(state: ApiState) -> dict[str, ToolPolicy]:
    return {v.policy_id: v for v in state.tools.items().values() if isinstance(v, ToolPolicy)}


def _approvals(state: ApiState) -> dict[str, Approval]:
    return {v.approval_id: v for v in state.tools.items().values() if isinstance(v, Approval)}


async def _sweep(state: ApiState) -> None:
    """Tombstones for approvals nobody waits for any more (decided, or pending past timeout)."""
    now = datetime.now(UTC)
    keep = timedelta(seconds=state.settings.approvals_keep_s)
    policies = _policies(state)
    done = []
    for approval in _approvals(state).values():
        if approval.state is not ApprovalState.PENDING:
            over = approval.decided_at is not None and approval.decided_at + keep <= now
        else:
            policy = policies.get(approval.request.policy_id or "")
            timeout = timedelta(seconds=policy.approval_timeout_s if policy is not None else 86_400.0)
            over = approval.created_at + timeout + keep <= now
        if over:
            done.append(record_key(approval))
    if done:
        await state.publisher.send([Record(state.topics.tools, key, None) for key in done])
        for key in done:
            state.tools.remove(key)


async def _write(state: ApiState, record: ToolPolicy | Approval) -> None:
    key = record_key(record)
    await state.publisher.send([Record(state.topics.tools, key, dump(record))])
    state.tools.put(key, record)


@router.get("/v1/tool-policies", response_model=list[ToolPolicy], responses=responses(401, 403))
async def list_tool_policies(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ToolPolicy]:
    """Every tool policy of the tenants this key sees."""
    return sorted(
        (p for p in _policies(state).values() if visible(key, p.selector.tenant)), key=lambda p: p.policy_id
    )


@router.get("/v1/tool-policies/{policy_id}", response_model=ToolPolicy, responses=responses(401, 403, 404))
async def get_tool_policy(
    policy_id: str, key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> ToolPolicy:
    """One tool policy."""
    return get_visible(key, _PolicyView(state.tools), policy_id, NOUN)


@router.put(
    "/v1/tool-policies/{policy_id}", response_model=ToolPolicy, responses=responses(401, 403, 415, 422, 503)
)
async def put_tool_policy(
    policy_id: str,
    policy: ToolPolicy,
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> ToolPolicy:
    """Create or replace a tool policy (idempotent by id); running Guards apply it when it
    reaches them on the tools topic."""
    if policy.policy_id != policy_id:
        raise ContractError(
            "policy_id in the body differs from the path", [("policy_id", "must match the path")]
        )
    if policy.selector.tenant == EVERY_TENANT:  # the tenancy rules would show it to every tenant
        raise ContractError(
            "a tool policy applies to one tenant; selector.tenant cannot be '*'",
            [("selector.tenant", "name one tenant")],
        )
    await put_owned(
        key,
        state.publisher,
        _PolicyView(state.tools),
        state.topics.tools,
        policy_id,
        policy,
        NOUN,
        topic_key=_topic_key(policy_id),
    )
    return policy


@router.delete("/v1/tool-policies/{policy_id}", status_code=204, responses=responses(401, 403, 404, 503))
async def delete_tool_policy(
    policy_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Response:
    await delete_owned(
        key,
        state.publisher,
        _PolicyView(state.tools),
        state.topics.tools,
        policy_id,
        NOUN,
        topic_key=_topic_key(policy_id),
    )
    return Response(status_code=204)


@router.post(
    "/v1/approvals", status_code=201, response_model=Approval, responses=responses(401, 403, 422, 503)
)
async def request_approval(
    body: ApprovalRequest,
    key: ApiKey = Depends(require(KeyScope.INGEST)),
    state: ApiState = Depends(get_state),
) -> Approval:
    """An agent asks a human whether it may run a tool (its Guard does this when a tool
    policy says ``require_approval``). The arguments are never sent, only their hash."""
    check_tenant(key, body.tenant, "tenant")
    await _sweep(state)
    approval = Approval(approval_id=secrets.token_hex(12), request=body, created_at=datetime.now(UTC))
    await _write(state, approval)
    return approval


@router.get("/v1/approvals", response_model=list[Approval], responses=responses(401, 403))
async def list_approvals(
    approval_state: ApprovalState | None = Query(None, alias="state"),
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> list[Approval]:
    """Approval requests (``?state=pending``: those waiting for a human), oldest first."""
    await _sweep(state)
    return sorted(
        (
            a
            for a in _approvals(state).values()
            if key.sees(a.request.tenant) and (approval_state is None or a.state is approval_state)
        ),
        key=lambda a: a.created_at,
    )


async def _answer(approval_id: str, answer: ApprovalState, key: ApiKey, state: ApiState) -> Approval:
    await _sweep(state)
    approval = _approvals(state).get(approval_id)
    if approval is None or not key.sees(approval.request.tenant):
        raise NotFoundError(f"no approval {approval_id!r}")
    if approval.state is answer:  # a retry of the same answer
        return approval
    if approval.state is not ApprovalState.PENDING:
        raise ConflictError(f"approval {approval_id!r} is already {approval.state.value}")
    decided = approval.model_copy(
        update={"state": answer, "decided_at": datetime.now(UTC), "decided_by": key.key_id}
    )
    await _write(state, decided)
    return decided


@router.post(
    "/v1/approvals/{approval_id}/approve",
    response_model=Approval,
    responses=responses(401, 403, 404, 409, 503),
)
async def approve(
    approval_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Approval:
    """A human lets the waiting tool call run."""
    return await _answer(approval_id, ApprovalState.APPROVED, key, state)


@router.post(
    "/v1/approvals/{approval_id}/deny", response_model=Approval, responses=responses(401, 403, 404, 409, 503)
)
async def deny(
    approval_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Approval:
    """A human refuses the waiting tool call: the agent gets ``ToolDenied``."""
    return await _answer(approval_id, ApprovalState.DENIED, key, state)
