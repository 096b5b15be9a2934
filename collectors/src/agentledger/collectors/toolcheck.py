"""Tool permissions inside the agent process (docs/adr/0018).

The Guard's reader thread feeds ``ToolState.apply`` with the tools topic's records (tool
policies and approvals); ``check`` decides one tool call with ``agentledger.tools.decide``,
asks the API for an approval when a policy says ``require_approval`` and waits for the
human's answer to arrive on the topic, and records the decision as a ``tool_call`` event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from typing import Any

from agentledger.settings import get_settings
from agentledger.tools import TOOL_RECORD, Approval, ApprovalState, ToolDecision, ToolPolicy, Verdict, decide

from .exceptions import ToolDenied

log = logging.getLogger("agentledger.collectors")
_MAX_TRACES = 10_000  # per-trace call counts kept for this many (tool, trace) pairs, oldest dropped
DECISION = "gen_ai.tool.call.decision"


class ToolState:
    """Tool policies and approvals as read from the tools topic, and the calls made per trace."""

    def __init__(self) -> None:
        self.policies: dict[str, ToolPolicy] = {}
        self.approvals: dict[str, Approval] = {}
        self.decisions = 0
        self._changed = threading.Condition()
        self._calls: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._calls_lock = threading.Lock()
        settings = get_settings()
        self.api_url: str = settings.api_url
        self.api_key: str | None = settings.api_key

    def apply(self, key: str | None, raw: bytes | None) -> bool:
        """One record of the tools topic (None: a tombstone). False: not a valid record."""
        with self._changed:
            if raw is None:
                if key and key.startswith("policy:"):
                    self.policies.pop(key.removeprefix("policy:"), None)
                elif key and key.startswith("approval:"):
                    self.approvals.pop(key.removeprefix("approval:"), None)
                return True
            try:
                record = TOOL_RECORD.validate_json(raw)
            except ValueError as exc:
                log.warning("ignoring an invalid tools record (key %r): %s", key, exc)
                return False
            if isinstance(record, ToolPolicy):
                self.policies[record.policy_id] = record
            else:
                self.approvals[record.approval_id] = record
            self._changed.notify_all()
            return True

    def quick_allow(self, agent: str | None) -> bool:
        """No tool policy at all: every tool is allowed without a look at the caller."""
        del agent
        return not self.policies

    # -- one decision ------------------------------------------------------------------

    def check(
        self,
        tool: str,
        args: Any = None,
        *,
        agent: str | None = None,
        trace: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        if not self.policies:
            return ToolDecision.ALLOW.value
        from . import client as api
        from . import naming

        emitter = api._emitter or api.get_emitter()
        caller = naming.resolve(emitter)
        who = (naming._framework_name(agent) if agent else None) or caller.agent
        trace_key = trace or caller.trace_id or ""
        count_key = (trace_key, tool)
        with self._calls_lock:
            calls = self._calls.get(count_key, 0)
        verdict = decide(self.policies.values(), caller.tenant, who, caller.agent_version, tool, calls)
        if verdict.policy_id is None:  # no policy speaks about this tool: not a decision
            self._count(count_key)
            return ToolDecision.ALLOW.value
        approval_id: str | None = None
        decision, reason = verdict.decision, verdict.reason
        if decision is ToolDecision.REQUIRE_APPROVAL:
            decision, reason, approval_id = self._approval(
                verdict, tool, args, caller.tenant, who, caller.agent_version, caller.trace_id, timeout_s
            )
        self._record(emitter, tool, args, who, decision, reason, verdict, approval_id)
        if decision is not ToolDecision.ALLOW:
            raise ToolDenied(
                f"agentledger: tool {tool!r} denied ({reason})",
                tool=tool,
                policy_id=verdict.policy_id,
                approval_id=approval_id,
            )
        self._count(count_key)
        return decision.value

    def _count(self, key: tuple[str, str]) -> None:
        with self._calls_lock:
            self._calls[key] = self._calls.pop(key, 0) + 1
            while len(self._calls) > _MAX_TRACES:
                self._calls.popitem(last=False)

    def _record(
        self,
        emitter: Any,
        tool: str,
        args: Any,
        agent: str,
        decision: ToolDecision,
        reason: str,
        verdict: Verdict,
        approval_id: str | None,
    ) -> None:
        self.decisions += 1
        attributes = {DECISION: decision.value, "agentledger.tool.reason": reason[:512]}
        if verdict.policy_id:
            attributes["agentledger.tool.policy_id"] = verdict.policy_id
        if approval_id:
            attributes["agentledger.tool.approval_id"] = approval_id
        try:
            emitter.record_tool_call(
                tool,
                args,
                status="ok" if decision is ToolDecision.ALLOW else "error",
                attributes=attributes,
                agent=agent,
            )
        except Exception:
            log.warning("agentledger: could not record the tool decision for %r", tool, exc_info=True)

    # -- approvals ---------------------------------------------------------------------

    def _approval(
        self,
        verdict: Verdict,
        tool: str,
        args: Any,
        tenant: str,
        agent: str,
        agent_version: str | None,
        trace_id: str | None,
        timeout_s: float | None,
    ) -> tuple[ToolDecision, str, str | None]:
        """Ask for an approval, wait for its answer; (decision, reason, approval id)."""
        from .emitter import hash_args

        timeout = timeout_s if timeout_s is not None else verdict.approval_timeout_s
        on_timeout = ToolDecision(verdict.on_timeout)
        body = {
            "tenant": tenant,
            "agent": agent,
            "agent_version": agent_version,
            "trace_id": trace_id,
            "tool": tool,
            "args_hash": hash_args(args),
            "policy_id": verdict.policy_id,
            "reason": verdict.reason[:512],
        }
        try:
            approval_id = self._post_approval(body)
        except Exception as exc:  # noqa: BLE001 - no API: the default applies, and we say why
            log.warning("agentledger: cannot ask %s for an approval of %r: %s", self.api_url, tool, exc)
            return on_timeout, f"no approval could be requested ({exc}); default {on_timeout.value}", None
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                approval = self.approvals.get(approval_id)
                if approval is not None and approval.state is not ApprovalState.PENDING:
                    decision = (
                        ToolDecision.ALLOW if approval.state is ApprovalState.APPROVED else ToolDecision.DENY
                    )
                    return (
                        decision,
                        f"approval {approval_id} {approval.state.value} by {approval.decided_by}",
                        approval_id,
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    return (
                        on_timeout,
                        f"approval {approval_id} unanswered after {timeout:g}s; default {on_timeout.value}",
                        approval_id,
                    )
                self._changed.wait(min(left, 1.0))

    def _post_approval(self, body: dict[str, Any]) -> str:
        request = urllib.request.Request(
            self.api_url.rstrip("/") + "/v1/approvals",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key or ''}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise RuntimeError(f"HTTP {exc.code}: {detail}") from None
        return str(answer["approval_id"])


def tool_allowed(tool: str, args: Any = None, *, agent: str | None = None, trace: str | None = None) -> str:
    """``al.tool_allowed``: the process-wide Guard's ``tool`` check (raises ``ToolDenied``)."""
    from .guard import get_guard

    return get_guard().tool(tool, args, agent=agent, trace=trace)


def guarded_tool(name: str | None = None) -> Any:
    """``@al.guarded_tool()``: check the tool policy before each call of the decorated
    function (sync or async); a denied call raises ``ToolDenied`` and the body does not run."""
    import functools
    import inspect

    from .guard import get_guard

    def wrap(fn: Any) -> Any:
        tool = name or fn.__name__

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                await get_guard().atool(tool, kwargs or list(args))
                return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            get_guard().tool(tool, kwargs or list(args))
            return fn(*args, **kwargs)

        return wrapper

    return wrap
