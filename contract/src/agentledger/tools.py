"""Tool permissions: which tools an agent may call (issue #17, docs/adr/0018).

A ``ToolPolicy`` names a selector (tenant, optionally agent and agent version) and rules: an
fnmatch pattern over tool names, a decision (OpenTelemetry's ``gen_ai.tool.call.decision``
values ``allow``, ``deny``, ``require_approval``) and an optional maximum of calls per trace.
An ``Approval`` is one request to run a tool that a policy holds for a human. Both live on the
compacted tools topic (``policy:<id>`` and ``approval:<id>`` keys), which the API writes and
every Guard follows. ``decide`` is the one pure rule the Guard applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from agentledger.events import Name, ToolName, UtcDatetime


class ToolDecision(StrEnum):
    """``gen_ai.tool.call.decision``: what a policy says about one tool call."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSelector(_Model):
    """Which agents a policy applies to: a tenant, optionally one agent, optionally one version."""

    tenant: Name
    agent: Name | None = None
    agent_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ToolRule(_Model):
    tool: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="fnmatch pattern over tool names, e.g. `shell_*` or `*`."
    )
    decision: ToolDecision
    max_calls_per_trace: int | None = Field(
        default=None, ge=0, description="Calls of a matching tool allowed per trace; more are denied."
    )


class ToolPolicy(_Model):
    kind: Literal["tool_policy"] = "tool_policy"
    policy_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    selector: ToolSelector
    rules: list[ToolRule] = Field(min_length=1, max_length=256)
    approval_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    on_timeout: Literal["allow", "deny"] = Field(
        default="deny", description="What an unanswered approval request becomes after the timeout."
    )


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class ApprovalRequest(_Model):
    """What an agent sends to ``POST /v1/approvals``."""

    tenant: Name
    agent: Name
    agent_version: Annotated[str, Field(max_length=64)] | None = None
    trace_id: Annotated[str, Field(max_length=64)] | None = None
    tool: ToolName
    args_hash: str = Field(
        pattern=r"^[0-9a-f]{16,64}$", description="Hex hash of the args (the args never leave the agent)."
    )
    policy_id: Annotated[str, Field(max_length=128)] | None = None
    reason: Annotated[str, Field(max_length=512)] | None = None


class Approval(_Model):
    kind: Literal["approval"] = "approval"
    approval_id: Annotated[str, Field(min_length=8, max_length=64)]
    request: ApprovalRequest
    state: ApprovalState = ApprovalState.PENDING
    created_at: UtcDatetime
    decided_at: UtcDatetime | None = None
    decided_by: Annotated[str, Field(max_length=128)] | None = None


ToolRecord = Annotated[ToolPolicy | Approval, Field(discriminator="kind")]
TOOL_RECORD: TypeAdapter[ToolPolicy | Approval] = TypeAdapter(ToolRecord)


def record_key(record: ToolPolicy | Approval) -> str:
    """The tools topic key of a record: ``policy:<id>`` or ``approval:<id>``."""
    if isinstance(record, ToolPolicy):
        return f"policy:{record.policy_id}"
    return f"approval:{record.approval_id}"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: ToolDecision
    policy_id: str | None = None
    reason: str = ""
    approval_timeout_s: float = 300.0
    on_timeout: str = "deny"


_ALLOWED = Verdict(ToolDecision.ALLOW, None, "no tool policy applies")
_STRICTNESS = {ToolDecision.ALLOW: 0, ToolDecision.REQUIRE_APPROVAL: 1, ToolDecision.DENY: 2}


def _specificity(sel: ToolSelector) -> int:
    return 2 if sel.agent_version is not None else 1 if sel.agent is not None else 0


def applies(policy: ToolPolicy, tenant: str, agent: str, agent_version: str | None) -> bool:
    sel = policy.selector
    return (
        sel.tenant == tenant
        and (sel.agent is None or sel.agent == agent)
        and (sel.agent_version is None or sel.agent_version == agent_version)
    )


def decide(
    policies: Iterable[ToolPolicy],
    tenant: str,
    agent: str,
    agent_version: str | None,
    tool: str,
    calls_in_trace: int = 0,
) -> Verdict:
    """The decision for one call of ``tool``; ``calls_in_trace`` counts the earlier calls of
    that tool in the same trace.

    Within a policy the first rule whose pattern matches the tool decides. Across policies the
    most specific selector that has a matching rule decides (version over agent over tenant), so
    an agent's policy can open a tool its tenant denies; between policies of equal specificity
    the strictest decision wins (deny over require_approval over allow). A rule's
    ``max_calls_per_trace`` turns its decision into a deny once the trace has made that many
    calls. No matching rule: allowed."""
    best: tuple[int, int, Verdict] | None = None
    for policy in policies:
        if not applies(policy, tenant, agent, agent_version):
            continue
        rule = next((r for r in policy.rules if fnmatchcase(tool, r.tool)), None)
        if rule is None:
            continue
        if rule.max_calls_per_trace is not None and calls_in_trace >= rule.max_calls_per_trace:
            verdict = Verdict(
                ToolDecision.DENY,
                policy.policy_id,
                f"{tool!r} called {calls_in_trace} times in this trace; policy {policy.policy_id!r} "
                f"allows {rule.max_calls_per_trace}",
            )
        else:
            verdict = Verdict(
                rule.decision,
                policy.policy_id,
                f"policy {policy.policy_id!r}: {rule.tool!r} is {rule.decision.value}",
                policy.approval_timeout_s,
                policy.on_timeout,
            )
        rank = (_specificity(policy.selector), _STRICTNESS[verdict.decision])
        if best is None or rank > (best[0], best[1]):
            best = (rank[0], rank[1], verdict)
    return best[2] if best is not None else _ALLOWED


def pending(approvals: Iterable[Approval]) -> list[Approval]:
    """The approvals still waiting for a human, oldest first."""
    return sorted((a for a in approvals if a.state is ApprovalState.PENDING), key=lambda a: a.created_at)
