"""The pure tool-policy rule (agentledger.tools.decide) and the tools topic's records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agentledger.tools import (
    TOOL_RECORD,
    Approval,
    ApprovalRequest,
    ApprovalState,
    ToolDecision,
    ToolPolicy,
    decide,
    pending,
    record_key,
)


def policy(pid: str, rules: list[tuple[str, str, int | None]], **selector: str) -> ToolPolicy:
    return ToolPolicy(
        policy_id=pid,
        selector={"tenant": "acme", **selector},
        rules=[{"tool": t, "decision": d, "max_calls_per_trace": m} for t, d, m in rules],
    )


TENANT_WIDE = policy("tenant", [("shell_*", "deny", None), ("send_email", "require_approval", None)])


def test_no_policy_or_no_matching_rule_allows() -> None:
    assert decide([], "acme", "writer", None, "search").decision is ToolDecision.ALLOW
    verdict = decide([TENANT_WIDE], "acme", "writer", None, "search")
    assert verdict.decision is ToolDecision.ALLOW and verdict.policy_id is None


def test_fnmatch_patterns_decide_and_other_tenants_are_untouched() -> None:
    assert decide([TENANT_WIDE], "acme", "writer", None, "shell_exec").decision is ToolDecision.DENY
    assert (
        decide([TENANT_WIDE], "acme", "writer", None, "send_email").decision is ToolDecision.REQUIRE_APPROVAL
    )
    assert decide([TENANT_WIDE], "globex", "writer", None, "shell_exec").decision is ToolDecision.ALLOW
    # fnmatch is case-sensitive here: a tool name is an identifier
    assert decide([TENANT_WIDE], "acme", "writer", None, "SHELL_exec").decision is ToolDecision.ALLOW


def test_first_matching_rule_of_a_policy_wins() -> None:
    p = policy("p", [("shell_ls", "allow", None), ("shell_*", "deny", None)])
    assert decide([p], "acme", "a", None, "shell_ls").decision is ToolDecision.ALLOW
    assert decide([p], "acme", "a", None, "shell_rm").decision is ToolDecision.DENY


def test_a_more_specific_selector_wins_and_equals_take_the_strictest() -> None:
    opened = policy("ops", [("shell_*", "allow", None)], agent="ops")
    assert decide([TENANT_WIDE, opened], "acme", "ops", None, "shell_ls").decision is ToolDecision.ALLOW
    assert decide([TENANT_WIDE, opened], "acme", "writer", None, "shell_ls").decision is ToolDecision.DENY
    v2 = policy("v2", [("shell_*", "require_approval", None)], agent="ops", agent_version="2")
    verdict = decide([TENANT_WIDE, opened, v2], "acme", "ops", "2", "shell_ls")
    assert verdict.decision is ToolDecision.REQUIRE_APPROVAL and verdict.policy_id == "v2"
    lax = policy("lax", [("*", "allow", None)])
    assert decide([lax, TENANT_WIDE], "acme", "x", None, "shell_ls").decision is ToolDecision.DENY
    assert decide([TENANT_WIDE, lax], "acme", "x", None, "shell_ls").decision is ToolDecision.DENY


def test_max_calls_per_trace_denies_the_call_past_the_limit() -> None:
    p = policy("p", [("search", "allow", 2)])
    assert [decide([p], "acme", "a", None, "search", n).decision for n in range(4)] == [
        ToolDecision.ALLOW,
        ToolDecision.ALLOW,
        ToolDecision.DENY,
        ToolDecision.DENY,
    ]
    assert "allows 2" in decide([p], "acme", "a", None, "search", 2).reason


def test_records_round_trip_by_kind_and_key() -> None:
    approval = Approval(
        approval_id="a" * 24,
        request=ApprovalRequest(tenant="acme", agent="w", tool="send_email", args_hash="0" * 16),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    for record in (TENANT_WIDE, approval):
        assert TOOL_RECORD.validate_json(record.model_dump_json()) == record
    assert record_key(TENANT_WIDE) == "policy:tenant" and record_key(approval) == "approval:" + "a" * 24
    done = approval.model_copy(update={"approval_id": "b" * 24, "state": ApprovalState.APPROVED})
    assert pending([done, approval]) == [approval]


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValidationError):
        policy("p", [("x", "maybe", None)])
    with pytest.raises(ValidationError):
        ToolPolicy(policy_id="p", selector={"tenant": "acme"}, rules=[])
    with pytest.raises(ValidationError):  # the args themselves are never sent
        ApprovalRequest(tenant="acme", agent="w", tool="t", args_hash="secret args")
