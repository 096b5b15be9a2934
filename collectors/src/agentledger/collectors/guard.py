"""The Guard: obeys the control topic inside the agent process.

A daemon thread reads the compacted control topic from the start (``wait_ready`` returns once
it has caught up with the end offsets seen at start) and then follows live commands, with a
short fetch wait so a new command is visible within tens of milliseconds. Each batch of
records rebuilds a small index and swaps it in; ``check`` only reads it (no locks, a dict
lookup when nothing applies to the tenant).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from agentledger import topics
from agentledger.events import Action, ControlCommand
from agentledger.rollout import pick
from agentledger.settings import get_settings

from .context import _CURRENT
from .control import ControlIndex, ControlState, downgrade, failover, matching
from .exceptions import ControlUnavailable, Throttled
from .timeouts import CallTimeouts
from .toolcheck import ToolState

log = logging.getLogger("agentledger.collectors")
_PROBE_EVERY_S = 1.0  # how often a following Guard makes sure the broker still answers
_PROBE_TIMEOUT_S = 2.0
_MISSING_AFTER_S = 5.0  # the control topic absent from the metadata this long: it does not exist
F = TypeVar("F", bound=Callable[..., Any])
_GUARDS: weakref.WeakSet[Guard] = weakref.WeakSet()


def _current_trace_id() -> str | None:
    """The trace of the active agentledger span, else of the active OpenTelemetry span."""
    cur = _CURRENT.get()
    if cur is not None:
        return cur.trace_id
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class Guard:
    """Enforcement hook: ``check`` raises ``AgentKilled`` or waits out a throttle."""

    def __init__(
        self,
        bootstrap: str | None = None,
        control_topic: str | None = None,
        *,
        tools_topic: str | None = None,
        policies_topic: str | None = None,
        start: bool = True,
        client_options: Mapping[str, Any] | None = None,
        fetch_max_wait_ms: int = 20,
        fail_open: bool | None = None,
        ready_timeout_s: float | None = None,
        lost_after_s: float | None = None,
    ) -> None:
        settings = get_settings()
        self.bootstrap = bootstrap or _configured_bootstrap() or settings.resolve_bootstrap()
        self.topic = control_topic or topics.name(topics.CONTROL, settings.topic_prefix)
        # tool policies and approvals (docs/adr/0018): a topic of their own, read by the same reader
        self.tools_topic = tools_topic or topics.name(topics.TOOLS, settings.topic_prefix)
        self.tools = ToolState()
        # per-call timeouts set by policies (docs/adr/0019): the policies topic, same reader
        self.policies_topic = policies_topic or topics.name(topics.POLICIES, settings.topic_prefix)
        self.timeouts = CallTimeouts()
        self.client_options = dict(client_options or settings.kafka_client_options())
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fail_open = settings.guard_fail_open if fail_open is None else fail_open
        self.ready_timeout_s = settings.guard_ready_timeout_s if ready_timeout_s is None else ready_timeout_s
        self.lost_after_s = settings.guard_lost_after_s if lost_after_s is None else lost_after_s
        if self.lost_after_s <= 0:
            raise ValueError("lost_after_s must be > 0")
        self.lost = 0  # times the Guard lost the control topic after having read it
        self.bad_records = 0
        self.records = 0
        self.unready_checks = 0  # checks answered before the control topic was read
        self.problem: str | None = None  # why the Guard is not (yet) ready, when it knows
        self._topic_missing = False
        self._last_unready_warning = -math.inf
        self._state = ControlState()
        self._index = ControlIndex()
        self.sticky_traces = 100_000
        self._sticky: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._is_ready = False  # plain bool mirror of _ready for the hot path
        self._lost = False  # read once, then out of reach for lost_after_s: not ready again
        self._last_contact = time.monotonic()
        self._ready_deadline = 0.0
        self._closing = False
        self._thread: threading.Thread | None = None
        if start:
            if not self.bootstrap:
                raise ValueError(
                    "Guard needs a Kafka bootstrap: pass bootstrap=, call al.configure(bootstrap=...) "
                    "first, set AGENTLEDGER_KAFKA_BOOTSTRAP, or run `agentledger kafka up`"
                )
            self.start()
        else:  # not following the topic: the state is whatever apply() gives it
            self._set_ready()
        _GUARDS.add(self)

    @classmethod
    def _unavailable(cls, problem: str, fail_open: bool | None = None) -> Guard:
        """A Guard that cannot read any control topic: every check fails open or closed."""
        guard = cls(start=False, fail_open=fail_open)
        guard._ready.clear()
        guard._is_ready = False
        guard.problem = problem
        return guard

    def _set_ready(self) -> None:
        self._ready.set()
        self._is_ready = True
        self.problem = None

    # -- state -------------------------------------------------------------------------

    def apply(self, command: ControlCommand | None, key: str | None = None) -> None:
        """Apply one command (or a tombstone for ``key``) as if read from the topic."""
        with self._lock:
            self._state.apply(key, command)
            self._index = self._state.index()
        if command is not None and command.action is Action.ROTATE:
            self._rotate([command])

    def _rotate(self, commands: list[ControlCommand]) -> None:
        """Key rotations (docs/security.md): the pool moves off a key; never raises."""
        from . import keys

        for command in commands:
            try:
                keys.obey(command, _configured_tenant(), live=self._is_ready)
            except Exception:  # a key pool fault is not the Guard's
                log.exception("agentledger guard could not apply rotate command %s", command.command_id)

    def _apply_raw(self, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
        rotations: list[ControlCommand] = []
        with self._lock:
            for topic, raw_key, raw_value in records:
                self.records += 1
                key = raw_key.decode(errors="replace") if raw_key is not None else None
                if topic == self.tools_topic:
                    if not self.tools.apply(key, raw_value):
                        self.bad_records += 1
                    continue
                if topic == self.policies_topic:
                    if not self.timeouts.apply(key, raw_value):
                        self.bad_records += 1
                    continue
                if raw_value is None:
                    self._state.apply(key, None)
                    continue
                try:
                    command = ControlCommand.model_validate_json(raw_value)
                except ValueError as exc:
                    self.bad_records += 1
                    log.warning("ignoring an invalid control record (key %r): %s", key, exc)
                    continue
                self._state.apply(key, command)
                if command.action is Action.ROTATE:
                    rotations.append(command)
            self._index = self._state.index()
        if rotations:
            self._rotate(rotations)

    def _expire(self) -> None:
        if time.time() >= self._index.next_expiry:
            with self._lock:
                self._index = self._state.index()

    @property
    def commands(self) -> dict[str, ControlCommand]:
        """The command in force per control key (a copy)."""
        with self._lock:
            return dict(self._state.commands)

    # -- the hot path ------------------------------------------------------------------

    def _delay(
        self,
        tenant: str,
        agent: str,
        workflow: str | None,
        trace_id: str | None,
        agent_version: str | None,
        wait: bool,
        user: str | None = None,
        conversation: str | None = None,
    ) -> float:
        index = self._index
        if index.kills:
            rules = index.kills.get(tenant)
            if rules is not None:
                now = time.time()
                for rule in matching(rules, agent, workflow, trace_id, agent_version, user, conversation):
                    if now < rule.expires:
                        raise rule.kill_error()
        if not index.throttles:
            return 0.0
        trules = index.throttles.get(tenant)
        if trules is None:
            return 0.0
        now, mono, delay = time.time(), time.monotonic(), 0.0
        for rule in matching(trules, agent, workflow, trace_id, agent_version, user, conversation):
            if now >= rule.expires or rule.bucket is None:
                continue
            if wait:
                delay = max(delay, rule.bucket.reserve(mono))
            else:
                retry = rule.bucket.try_take(mono)
                if retry > 0:
                    raise Throttled(
                        f"agentledger {rule.command.scope.key} throttled to "
                        f"{rule.command.params.rate_per_s}/s; retry in {retry:.3f}s",
                        retry_after_s=retry,
                        scope_key=rule.command.scope.key,
                    )
        return delay

    def check(
        self,
        tenant: str,
        agent: str,
        workflow: str | None = None,
        trace_id: str | None = None,
        agent_version: str | None = None,
        wait: bool = True,
        user: str | None = None,
        conversation: str | None = None,
    ) -> None:
        """Raise ``AgentKilled`` (a subclass names the cause) if a kill applies; wait for a
        throttle token (or raise ``Throttled`` when ``wait=False``). Returns at once otherwise.
        Commands on the tenant, agent, version, workflow, trace, user and conversation apply.

        Before the control topic has been read, waits for it (at most ``ready_timeout_s`` from
        the Guard's start), then fails open or closed as configured, and says so."""
        if not self._is_ready:
            remaining = self._wait_budget()
            if remaining > 0:
                self._ready.wait(remaining)
            if not self._ready.is_set():
                self._unready_verdict()
        delay = self._delay(tenant, agent, workflow, trace_id, agent_version, wait, user, conversation)
        if delay > 0:
            time.sleep(delay)

    def unaffected(
        self,
        tenant: str,
        agent: str,
        workflow: str | None,
        trace_id: str | None,
        agent_version: str | None,
        user: str | None = None,
        conversation: str | None = None,
    ) -> ControlIndex | None:
        """The index in force when the Guard is ready and that index holds no kill and no
        throttle for this caller, else None. ``check`` then returns at once for the same caller
        for as long as the same index is in force (it is immutable; a command or an expiry swaps
        in a new one) and the Guard stays ready: the hook keeps the stamp and skips the check
        while ``guard._index is stamp`` (one identity test, not a rule lookup per call)."""
        index = self._index
        if not self._is_ready:
            return None
        for table in (index.kills, index.throttles):
            rules = table.get(tenant) if table else None
            if rules is not None and matching(
                rules, agent, workflow, trace_id, agent_version, user, conversation
            ):
                return None
        return index

    async def acheck(
        self,
        tenant: str,
        agent: str,
        workflow: str | None = None,
        trace_id: str | None = None,
        agent_version: str | None = None,
        wait: bool = True,
        user: str | None = None,
        conversation: str | None = None,
    ) -> None:
        """``check`` for async code: waits with ``asyncio.sleep``."""
        if not self._is_ready:
            remaining = self._wait_budget()
            if remaining > 0:  # only until the first read: a thread wait keeps the loop free
                await asyncio.to_thread(self._ready.wait, remaining)
            if not self._ready.is_set():
                self._unready_verdict()
        delay = self._delay(tenant, agent, workflow, trace_id, agent_version, wait, user, conversation)
        if delay > 0:
            await asyncio.sleep(delay)

    def provider(self, preferred: str, model: str | None = None, tenant: str | None = None) -> str:
        """The provider to call: the failover target while a failover of ``preferred`` is in
        force, for ``tenant`` (default: the configured emitter's tenant) or for every tenant.
        The tenant's own failover comes first, then the global one."""
        failovers = self._index.failovers
        if not failovers:
            return preferred
        rule = failover(failovers, preferred, model, tenant or _configured_tenant(), time.time())
        if rule is None:
            return preferred
        return rule.command.params.fallback_provider or preferred

    def downgrade(
        self,
        model: str,
        tenant: str,
        agent: str,
        workflow: str | None = None,
        trace_id: str | None = None,
        agent_version: str | None = None,
        user: str | None = None,
        conversation: str | None = None,
    ) -> str | None:
        """The cheaper model a downgrade sends this call to (None: no downgrade applies)."""
        downgrades = self._index.downgrades
        if not downgrades:
            return None
        rules = downgrades.get(tenant)
        if rules is None:
            return None
        return downgrade(
            rules, model, agent, workflow, trace_id, agent_version, time.time(), user, conversation
        )

    def version(self, agent: str, tenant: str | None = None, trace_id: str | None = None) -> str | None:
        """The version to send this task of ``agent`` to (None: no rule, keep yours).

        A rollback wins. Else, during a rollout, the route's weight decides by a hash of the
        trace id (``agentledger.rollout.pick``: every process agrees, tasks spread evenly); the
        first answer for a trace is kept for that trace (``sticky_traces`` of them), so a task
        never changes version when the rollout steps up midway. Without a trace id (and no
        current span) the task goes to the baseline."""
        index = self._index
        if not index.rollbacks and not index.routes:
            return None
        now = time.time()
        for (rule_tenant, rule_agent), rule in index.rollbacks.items():
            if rule_agent == agent and (tenant is None or tenant == rule_tenant) and now < rule.expires:
                return rule.command.params.target_version
        for (rule_tenant, rule_agent), rule in index.routes.items():
            if rule_agent == agent and (tenant is None or tenant == rule_tenant) and now < rule.expires:
                return self._route(rule.command, rule_tenant, trace_id)
        return None

    def rollout(self, agent: str, tenant: str | None = None) -> ControlCommand | None:
        """The route command in force for ``agent`` (a rollout's share, step and reason), if any."""
        now = time.time()
        for (rule_tenant, rule_agent), rule in self._index.routes.items():
            if rule_agent == agent and (tenant is None or tenant == rule_tenant) and now < rule.expires:
                return rule.command
        return None

    def _route(self, cmd: ControlCommand, tenant: str, trace_id: str | None) -> str | None:
        p = cmd.params
        if p.target_version is None or p.baseline_version is None or p.weight is None:
            return None
        if trace_id is None:
            trace_id = _current_trace_id()
        if trace_id is None:
            return p.baseline_version
        salt = p.rollout_id or f"{tenant}/{cmd.scope.agent}"
        key = (salt, trace_id)
        with self._lock:
            held = self._sticky.get(key)
            if held is not None:
                self._sticky.move_to_end(key)
                return held
            chosen = pick(trace_id, salt, p.weight, p.baseline_version, p.target_version)
            self._sticky[key] = chosen
            if len(self._sticky) > self.sticky_traces:
                self._sticky.popitem(last=False)
            return chosen

    # -- tool permissions (docs/adr/0018) ---------------------------------------------------

    def tool(
        self,
        tool: str,
        args: Any = None,
        *,
        agent: str | None = None,
        trace: str | None = None,
        approval_timeout_s: float | None = None,
    ) -> str:
        """May ``tool`` run now? Returns the decision (``allow``; after an approval, too) or
        raises ``ToolDenied``. A ``require_approval`` asks the API (``POST /v1/approvals``) and
        waits for a human's answer on the tools topic, up to the policy's timeout (or
        ``approval_timeout_s``), then applies the policy's ``on_timeout`` (deny by default).
        The decision is recorded as a ``tool_call`` event with ``gen_ai.tool.call.decision``.
        The caller (tenant, agent, version, trace) is resolved as for an LLM call; ``agent``
        and ``trace`` override it (``trace`` keys the per-trace call counts)."""
        if not self._is_ready:
            remaining = self._wait_budget()
            if remaining > 0:
                self._ready.wait(remaining)
            if not self._ready.is_set():
                self._unready_verdict()
        return self.tools.check(tool, args, agent=agent, trace=trace, timeout_s=approval_timeout_s)

    async def atool(
        self,
        tool: str,
        args: Any = None,
        *,
        agent: str | None = None,
        trace: str | None = None,
        approval_timeout_s: float | None = None,
    ) -> str:
        """``tool`` for async code: any wait (the first read, an approval) runs in a thread."""
        if self._is_ready and self.tools.quick_allow(agent):  # no wait at all: stay on the loop
            return self.tool(tool, args, agent=agent, trace=trace, approval_timeout_s=approval_timeout_s)
        return await asyncio.to_thread(
            self.tool, tool, args, agent=agent, trace=trace, approval_timeout_s=approval_timeout_s
        )

    # -- before the first read ----------------------------------------------------------

    def call_timeout(
        self,
        tenant: str,
        agent: str,
        agent_version: str | None = None,
        workflow: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> float | None:
        """The per-call timeout a policy sets for this call (the shortest matching), or None:
        then the ``configure(call_timeout_s=)`` value applies."""
        return self.timeouts.for_call(tenant, agent, agent_version, workflow, provider, model)

    def _wait_budget(self) -> float:
        if self._thread is None or self._topic_missing:
            return 0.0
        return self._ready_deadline - time.monotonic()

    def _unready_verdict(self) -> None:
        """Count the check, warn (at most once a minute), and refuse when failing closed."""
        self.unready_checks += 1
        why = self.problem or f"still reading {self.topic}"
        now = time.monotonic()
        if now - self._last_unready_warning >= 60.0:
            self._last_unready_warning = now
            log.warning(
                "agentledger guard does not know the control topic's state (%s): failing %s "
                "(%d unchecked calls so far; see guard.unready_checks)",
                why,
                "open, the call runs" if self.fail_open else "closed, the call is refused",
                self.unready_checks,
            )
        if not self.fail_open:
            raise ControlUnavailable(
                f"agentledger guard cannot tell whether this call is allowed ({why}); "
                "it is set to fail closed"
            )

    # -- the consumer thread -----------------------------------------------------------

    def start(self) -> None:
        self._closing = False
        self._ready_deadline = time.monotonic() + self.ready_timeout_s
        self._thread = threading.Thread(target=self._main, name="agentledger-guard", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once the compacted state has been read up to the end seen at start.

        False (with a WARNING saying why) after ``timeout``, or as soon as the control topic
        is known not to exist (absent from the metadata for 5 s)."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._topic_missing or time.monotonic() >= deadline:
                log.warning(
                    "agentledger guard not ready after %.1fs: %s",
                    timeout - max(0.0, deadline - time.monotonic()),
                    self.problem or f"still reading {self.topic} on {self.bootstrap}",
                )
                return False
        return True

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _main(self) -> None:
        try:
            asyncio.run(self._follow())
        except Exception:
            log.exception("agentledger guard stopped unexpectedly")

    def _contact(self) -> None:
        """The broker answered: the state is current again once read up to the end."""
        self._last_contact = time.monotonic()

    def _no_contact(self, why: str) -> None:
        """No answer: after ``lost_after_s`` without one, a Guard that had read the topic stops
        trusting what it holds, and its checks fail open or closed as at the start."""
        silent = time.monotonic() - self._last_contact
        if self._lost or not self._ready.is_set() or silent < self.lost_after_s:
            return
        self._lost = True
        self.lost += 1
        self._is_ready = False
        self._ready.clear()
        self.problem = (
            f"no answer from {self.bootstrap} for {silent:.0f}s while following {self.topic} ({why})"
        )
        log.warning(
            "agentledger guard: %s; calls now fail %s until it is back",
            self.problem,
            "open" if self.fail_open else "closed",
        )

    async def _follow(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                await self._consume()
                return
            except Exception as exc:  # noqa: BLE001 - broker down at start: retry with backoff
                self._no_contact(repr(exc))
                if not self._ready.is_set() and not self._lost:  # never read yet
                    self.problem = f"cannot read {self.topic} on {self.bootstrap}: {exc!r}"
                log.warning(
                    "agentledger guard cannot read %s (%r); retrying in %.1fs", self.topic, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        from agentledger.compacted import CompactedReader

        from .kafka import install_aiokafka_filter

        install_aiokafka_filter()  # a broker outage must not flood the agent's logs

        reader = CompactedReader(
            self.bootstrap or "",  # set whenever the guard follows the topic (__init__)
            [self.topic, self.tools_topic, self.policies_topic],
            self.client_options,
            poll_ms=100,
            max_records=10_000,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await reader.start()
        try:
            parts: set[int] = set()
            looked = time.monotonic()
            while not parts and not self._closing:
                known = await reader.partitions()
                parts, tool_parts = known[self.topic], known[self.tools_topic]
                policy_parts = known[self.policies_topic]
                if not parts:  # topic not created yet: say so, keep looking
                    # a topic created a moment ago may not be in every broker's metadata yet
                    if not self._topic_missing and time.monotonic() - looked >= _MISSING_AFTER_S:
                        self.problem = (
                            f"the control topic {self.topic} does not exist on {self.bootstrap} "
                            "(create the topics: `agentledger topics create`)"
                        )
                        log.warning("agentledger guard: %s", self.problem)
                        self._topic_missing = True
                    await asyncio.sleep(0.5)
            self._topic_missing = False
            if self._closing or not parts:
                return
            if not tool_parts:  # a cluster from before tool permissions: no tool policy applies
                log.warning(
                    "agentledger guard: no tools topic %s (`agentledger topics create`): every tool is "
                    "allowed",
                    self.tools_topic,
                )
            await reader.assign(
                {self.topic: parts, self.tools_topic: tool_parts, self.policies_topic: policy_parts}
            )
            self._contact()
            probed = time.monotonic()
            while not self._closing:
                if not self._ready.is_set() and await reader.caught_up():
                    if self._lost:
                        self._lost = False
                        log.warning("agentledger guard: %s is back; calls are checked again", self.topic)
                    self._set_ready()
                records = [(r.topic, r.key, r.value) for r in await reader.poll()]
                if records:
                    self._apply_raw(records)
                else:
                    self._expire()
                if time.monotonic() - probed >= _PROBE_EVERY_S:
                    # A fetch from a broker that is gone just returns nothing: ask it something.
                    probed = time.monotonic()
                    try:
                        latest = await asyncio.wait_for(reader.end_offsets(), _PROBE_TIMEOUT_S)
                    except Exception as exc:  # noqa: BLE001 - out of reach: counts towards lost
                        self._no_contact(repr(exc) if str(exc) else type(exc).__name__)
                        if self._lost:
                            reader.expect(None)  # ready again only once read up to the end seen when back
                    else:
                        self._contact()
                        if self._lost:
                            reader.expect(latest)  # back: ready once read up to here
        finally:
            await reader.stop()

    def close(self, timeout: float = 5.0) -> None:
        """Stop following the control topic (the last known state stays in force)."""
        self._closing = True
        if self._thread is not None:
            self._thread.join(timeout)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._thread is not None and not self._closing:
            self._ready = threading.Event()
            self._is_ready = False
            self._lost = False
            self.start()


def _reinit_after_fork() -> None:
    for guard in list(_GUARDS):
        guard._after_fork()


os.register_at_fork(after_in_child=_reinit_after_fork)

_default_guard: Guard | None = None
_default_lock = threading.Lock()


def _configured_bootstrap() -> str | None:
    from . import client as api

    em = api._emitter
    return em.bootstrap if em is not None else None


def _configured_tenant() -> str:
    """The tenant ``guarded()`` defaults to: the configured emitter's, else the settings'."""
    from . import client as api

    em = api._emitter
    return em.tenant if em is not None else get_settings().tenant


def get_guard() -> Guard:
    """The process-wide Guard, on the configured emitter's cluster (else ``AGENTLEDGER_*``, else
    the local broker). With no cluster at all its checks fail open or closed, and say so."""
    global _default_guard
    with _default_lock:
        if _default_guard is None:
            try:
                _default_guard = Guard()
            except ValueError as exc:
                _default_guard = Guard._unavailable(str(exc))
        return _default_guard


class GuardedScope:
    """``with guarded(...)`` / ``async with`` / ``@guarded(...)``: check before the work runs."""

    def __init__(
        self,
        guard: Guard | None,
        tenant: str | None,
        agent: str | None,
        workflow: str | None,
        agent_version: str | None,
        wait: bool,
    ) -> None:
        self.guard = guard
        self.tenant = tenant
        self.agent = agent
        self.workflow = workflow
        self.agent_version = agent_version
        self.wait = wait

    def _args(self) -> dict[str, Any]:
        from . import client as api

        em = api._emitter
        settings = get_settings()
        cur = _CURRENT.get()
        return {
            "tenant": self.tenant or (em.tenant if em else settings.tenant),
            "agent": self.agent
            or (cur.agent if cur and cur.agent else None)
            or (em.agent if em else settings.agent),
            "workflow": self.workflow or (cur.workflow if cur else None) or (em.workflow if em else None),
            "trace_id": cur.trace_id if cur else None,
            "agent_version": self.agent_version or (em.agent_version if em else settings.agent_version),
            "wait": self.wait,
            "user": (cur.user if cur else None) or (em.user if em else None),
            "conversation": (cur.conversation if cur else None) or (em.conversation if em else None),
        }

    def __enter__(self) -> GuardedScope:
        (self.guard or get_guard()).check(**self._args())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def __aenter__(self) -> GuardedScope:
        await (self.guard or get_guard()).acheck(**self._args())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(F, wrapper)


def guarded(
    guard: Guard | None = None,
    *,
    tenant: str | None = None,
    agent: str | None = None,
    workflow: str | None = None,
    agent_version: str | None = None,
    wait: bool = True,
) -> GuardedScope:
    """Check the Guard before a block or each call. Tenant/agent default to the configured
    emitter; the trace is the current span's, so a trace-scoped kill stops that trace only."""
    return GuardedScope(guard, tenant, agent, workflow, agent_version, wait)
