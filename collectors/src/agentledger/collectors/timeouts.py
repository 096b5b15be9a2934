"""Per-call timeouts set by policies (``Policy.call_timeout_s``; docs/adr/0019).

The Guard follows the compacted policies topic (key: policy id) next to the control and tools
topics and keeps here the enabled policies that set ``call_timeout_s``. The hook asks
``CallTimeouts.for_call`` before each call: the shortest timeout of the policies whose selector
matches the call (tenant, agent, version, workflow, provider, model), or None (then the
``configure()`` value applies).
"""

from __future__ import annotations

import threading
from fnmatch import fnmatchcase

from agentledger.events import Policy

_CACHE_MAX = 4096

CallKey = tuple[str, str, str | None, str | None, str | None, str | None]
"""(tenant, agent, version, workflow, provider, model)"""


def _match(pattern: str, value: str | None) -> bool:
    return pattern == "*" or (value is not None and fnmatchcase(value, pattern))


def policy_matches(p: Policy, key: CallKey) -> bool:
    s = p.selector
    tenant, agent, version, workflow, provider, model = key
    return (
        _match(s.tenant, tenant)
        and _match(s.agent, agent)
        and _match(s.agent_version, version)
        and _match(s.workflow, workflow)
        and _match(s.provider, provider)
        and _match(s.model, model)
    )


class CallTimeouts:
    """The call-timeout policies in force (a record of the policies topic at a time)."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}
        self._cache: dict[CallKey, float | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._policies)

    def apply(self, key: str | None, raw: bytes | None) -> bool:
        """One record of the policies topic; False for one that is not a policy."""
        if key is None:
            return False
        policy: Policy | None = None
        if raw is not None:
            try:
                policy = Policy.model_validate_json(raw)
            except ValueError:
                return False
        with self._lock:
            if policy is None or not policy.enabled or policy.call_timeout_s is None:
                if self._policies.pop(key, None) is None:
                    return True  # a budget or deadline alone: nothing for the hook
            else:
                self._policies[key] = policy
            self._cache = {}
        return True

    def for_call(
        self,
        tenant: str,
        agent: str,
        agent_version: str | None = None,
        workflow: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> float | None:
        """The timeout a policy sets for this call (the shortest of those matching), or None."""
        if not self._policies:
            return None
        key = (tenant, agent, agent_version, workflow, provider, model)
        cache = self._cache
        if key in cache:
            return cache[key]
        best: float | None = None
        for p in list(self._policies.values()):
            t = p.call_timeout_s
            if t is not None and (best is None or t < best) and policy_matches(p, key):
                best = t
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = best
        return best
