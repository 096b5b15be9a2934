"""The provider-SDK hook: one line, ``al.instrument()``, and every openai / anthropic call in
the process obeys the control topic and records its exact usage, whatever framework made it.

It wraps the SDK resource methods (as OpenLLMetry and OpenInference do):
``chat.completions.create``, ``responses.create``, ``messages.create`` and
``messages.stream``, sync and async. Before a call: resolve the caller (``naming``), route a
rollback, ask the Guard (kill raises ``AgentKilled`` and nothing is sent; a throttle waits or
raises), rewrite the model while a downgrade applies, then send the call to the failover
target if one is active. After it: usage from
the provider's own response (streamed chunks included), one usage event whose ``event_id``
derives from the response id. Telemetry failure never raises into agent code; only the
Guard's decisions do.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentledger.errors import AgentLedgerError

from . import _backoff, _ids, frameworks, keys, screen_policy
from . import client as api
from ._bodytap import BodyTap
from .exceptions import AgentKilled, Throttled
from .naming import (
    Caller,
    current_call,
    end_recording_call,
    from_request,
    recording_call,
    resolve,
    track_open_spans,
    usage_event_id,
)
from .usage import Usage, openai_usage, usage_from_anthropic, usage_from_openai

log = logging.getLogger("agentledger.collectors")


class FailoverUnavailable(AgentLedgerError):
    """A failover applies to this call but it cannot be sent to the fallback (the reason says
    why: no fallback configured, or a fallback with another API shape)."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where calls go while a failover to this provider name is active.

    ``api`` is the request shape the fallback speaks (``"openai"`` for any OpenAI-compatible
    endpoint, Azure OpenAI included; ``"anthropic"``). Give ``base_url`` (+ ``api_key`` or the
    name of the variable holding it, ``api_key_env``), or ``azure_endpoint`` + ``api_version``,
    or ready clients. ``model`` replaces the request's model (fallbacks rarely share names).
    """

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    model: str | None = None
    api: str = "openai"
    azure_endpoint: str | None = None
    api_version: str | None = None
    client: Any = field(default=None, repr=False)
    async_client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.api not in ("openai", "anthropic"):
            raise ValueError(f"Fallback api must be 'openai' or 'anthropic', not {self.api!r}")


@dataclass(frozen=True, slots=True)
class _Target:
    """One SDK method the hook wraps."""

    module: str
    cls: str
    method: str
    sdk: str  # "openai" | "anthropic": the request shape
    operation: str  # "chat" | "responses" | "messages"
    is_async: bool
    path: tuple[str, ...]  # where the resource sits on a client (for the failover client)


_CHAT, _RESPONSES, _MESSAGES = ("chat", "completions"), ("responses",), ("messages",)
_AN_BETA, _BETA_MESSAGES = "anthropic.resources.beta.messages.messages", ("beta", "messages")
_OA_CHAT, _OA_RESP, _AN_MSG = (
    "openai.resources.chat.completions", "openai.resources.responses", "anthropic.resources.messages",
)  # fmt: skip
TARGETS = (
    _Target(_OA_CHAT, "Completions", "create", "openai", "chat", False, _CHAT),
    _Target(_OA_CHAT, "AsyncCompletions", "create", "openai", "chat", True, _CHAT),
    _Target(_OA_RESP, "Responses", "create", "openai", "responses", False, _RESPONSES),
    _Target(_OA_RESP, "AsyncResponses", "create", "openai", "responses", True, _RESPONSES),
    # parse() (structured outputs) posts on its own, not through create()
    _Target(_OA_CHAT, "Completions", "parse", "openai", "chat", False, _CHAT),
    _Target(_OA_CHAT, "AsyncCompletions", "parse", "openai", "chat", True, _CHAT),
    _Target(_OA_RESP, "Responses", "parse", "openai", "responses", False, _RESPONSES),
    _Target(_OA_RESP, "AsyncResponses", "parse", "openai", "responses", True, _RESPONSES),
    _Target(_AN_MSG, "Messages", "create", "anthropic", "messages", False, _MESSAGES),
    _Target(_AN_MSG, "AsyncMessages", "create", "anthropic", "messages", True, _MESSAGES),
    _Target(_AN_MSG, "Messages", "stream", "anthropic", "messages", False, _MESSAGES),
    _Target(_AN_MSG, "AsyncMessages", "stream", "anthropic", "messages", True, _MESSAGES),
    # the beta namespace (Pydantic AI's Anthropic model calls client.beta.messages.create)
    _Target(_AN_BETA, "Messages", "create", "anthropic", "messages", False, _BETA_MESSAGES),
    _Target(_AN_BETA, "AsyncMessages", "create", "anthropic", "messages", True, _BETA_MESSAGES),
    _Target(_AN_BETA, "Messages", "stream", "anthropic", "messages", False, _BETA_MESSAGES),
    _Target(_AN_BETA, "AsyncMessages", "stream", "anthropic", "messages", True, _BETA_MESSAGES),
)

# Shared backoff (``_backoff``): the SDK client methods every attempt passes. ``_prepare_request``
# is overridden by some clients (openai.OpenAI), so it is wrapped where each client class
# resolves it; ``_sleep_for_retry`` lives on the SDKs' base clients only.
_BACKOFF_CLIENTS = (
    ("openai", "OpenAI", False), ("openai", "AsyncOpenAI", True),
    ("anthropic", "Anthropic", False), ("anthropic", "AsyncAnthropic", True),
)  # fmt: skip
_BACKOFF_METHODS = ("_prepare_request", "_sleep_for_retry")


# OpenAI-compatible APIs reached through the openai SDK, by host: their usage is recorded
# (and priced) under the provider's own name, not "openai".
PROVIDER_HOSTS = {
    "api.groq.com": "groq", "api.deepseek.com": "deepseek", "api.mistral.ai": "mistral",
    "api.together.xyz": "together", "openrouter.ai": "openrouter", "api.x.ai": "x-ai",
    "api.fireworks.ai": "fireworks", "generativelanguage.googleapis.com": "google",
}  # fmt: skip


_NUMBER = (int, float)
_PROVIDER_SEEN_MAX = 256  # distinct base URLs remembered by provider_of (then it starts over)


class Hook:
    """The installed hook's settings and its per-call work (one per process)."""

    def __init__(
        self,
        emitter: Any,
        guard: Any,
        throttle: str,
        fallbacks: Mapping[str, Fallback],
        versions: Mapping[str, Mapping[str, Any]],
        stream_usage: bool,
        providers: Mapping[str, str],
    ) -> None:
        if throttle not in ("wait", "raise"):
            raise ValueError(f"throttle must be 'wait' or 'raise', not {throttle!r}")
        self.emitter = emitter
        self.guard = guard
        self.wait = throttle == "wait"
        self.fallbacks = dict(fallbacks)
        self.versions = {k: dict(v) for k, v in versions.items()}
        self.stream_usage = stream_usage
        self.providers = {**PROVIDER_HOSTS, **providers}
        self.recorded = 0
        self.failed = 0
        self._clients: dict[tuple[str, bool], Any] = {}
        # (id(base_url), sdk, client class) -> (base_url, provider); a new Hook (instrument()) starts empty
        self._provider_seen: dict[tuple[int, str, type], tuple[Any, str]] = {}
        self._lock = threading.Lock()
        from .guard import Guard

        # The Guard's "nothing applies" per caller key: the index it was true of (from
        # Guard.unaffected); only a Guard's own check (a guard object of another type, a subclass
        # overriding check/acheck or an instance with a patched one is always asked).
        # One entry per caller, not one slot: threads or tasks of different callers taking turns
        # would otherwise each miss, and a miss costs the check twice.
        kind = type(guard)
        self.stamps = (
            isinstance(guard, Guard)
            and (kind.check, kind.acheck) == (Guard.check, Guard.acheck)
            and not {"check", "acheck"} & set(vars(guard))
        )
        self.clear: dict[tuple[Any, ...], Any] = {}
        self.clear_index: Any = None  # the index every entry of ``clear`` was stamped under

    def em(self) -> Any:
        return self.emitter or api._emitter or api.get_emitter()

    # -- before the call ---------------------------------------------------------------

    def caller(self) -> Caller | None:
        try:
            return resolve(self.em())
        except Exception:  # naming must never break the agent's call
            log.exception("agentledger hook could not resolve the caller; the call goes on unrecorded")
            return None

    def route_version(self, caller: Caller, kwargs: dict[str, Any]) -> None:
        """Rollback: the version the control plane routes this agent to, and its request
        settings (``versions={"v1": {"model": ...}}``)."""
        if self.guard is None:
            return
        target = self.guard.version(caller.agent, caller.tenant, caller.trace_id)
        if target is None or target == caller.agent_version:
            return
        caller.agent_version = target
        kwargs.update(self.versions.get(target, {}))

    def provider_of(self, resource: Any, target: _Target) -> str:
        """The provider a call goes to: named by its host (``providers``), else by the SDK.

        Remembered per base URL object (the SDKs' URLs are immutable; a client given a new
        ``base_url`` holds a new object): reading the host costs a few µs a call."""
        client = getattr(resource, "_client", None)
        # What both SDKs' base_url property returns; the property itself costs an import
        # statement per read in recent openai versions.
        url = getattr(client, "_base_url", None) or getattr(client, "base_url", None)
        key = (id(url), target.sdk, type(client))
        seen = self._provider_seen.get(key)
        if seen is not None and seen[0] is url:  # the same object, not a new one at a reused id
            return seen[1]
        provider = self._provider_of(client, url, target)
        if len(self._provider_seen) >= _PROVIDER_SEEN_MAX:
            self._provider_seen.clear()
        self._provider_seen[key] = (url, provider)
        return provider

    def _provider_of(self, client: Any, url: Any, target: _Target) -> str:
        if self.providers:
            host = getattr(url, "host", None)
            named = self.providers.get(str(host)) if host else None
            if named is not None:
                return named
        if target.sdk == "anthropic":
            return "anthropic"
        return "azure" if type(client).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI") else "openai"

    def downgrade(self, caller: Caller, kwargs: dict[str, Any]) -> None:
        """A downgrade in force for this caller: the request's model becomes the cheaper one
        (calls that name no model, e.g. a prompt-id Responses call, are left alone)."""
        if self.guard is None:
            return
        model = kwargs.get("model")
        if not isinstance(model, str):
            return
        cheaper = self.guard.downgrade(
            model, caller.tenant, caller.agent, caller.workflow, caller.trace_id, caller.agent_version,
            caller.user, caller.conversation,
        )  # fmt: skip
        if cheaper is not None and cheaper != model:
            kwargs["model"] = cheaper
            caller.downgraded_from = model

    def reroute(
        self, resource: Any, target: _Target, provider: str, kwargs: dict[str, Any]
    ) -> tuple[Any, str]:
        """(resource to call, provider recorded): the fallback's while a failover is active."""
        if self.guard is None:
            return resource, provider
        goal = self.guard.provider(provider, kwargs.get("model"))
        if goal == provider:
            return resource, provider
        fallback = self.fallbacks.get(goal)
        if fallback is None:
            raise FailoverUnavailable(
                f"agentledger: failover {provider} -> {goal} is active, but no fallback named {goal!r} "
                f"is configured: pass instrument(fallbacks={{{goal!r}: Fallback(base_url=...)}})"
            )
        if fallback.api != target.sdk:
            raise FailoverUnavailable(
                f"agentledger: failover {provider} -> {goal} is active, but {goal!r} speaks the "
                f"{fallback.api} API and this is a {target.sdk} {target.operation} call: the request "
                f"cannot be rerouted without translating it (configure an {target.sdk}-compatible fallback)"
            )
        client = self._fallback_client(goal, fallback, target)
        rerouted = client
        for name in target.path:
            rerouted = getattr(rerouted, name)
        if fallback.model:
            kwargs["model"] = fallback.model
        return rerouted, goal

    def _fallback_client(self, name: str, fallback: Fallback, target: _Target) -> Any:
        key = (name, target.is_async)
        client = self._clients.get(key)
        if client is not None:
            return client
        given = fallback.async_client if target.is_async else fallback.client
        with self._lock:
            if given is None:
                given = _build_client(fallback, target.is_async)
            self._clients[key] = given
        return given

    # -- after the call ----------------------------------------------------------------

    def record(
        self, caller: Caller, usage: Usage | None, response_id: str | None, provider: str, via: str | None
    ) -> None:
        """Record a call whose usage is known (a stream's, at its end)."""
        if usage is not None:
            self._defer(self._usage_event, caller, usage, response_id, provider, via)

    def record_response(
        self, caller: Caller, target: _Target, result: Any, provider: str, via: str | None
    ) -> None:
        """Record a call from its response: its usage object, id and model are handed over (not
        the response: its content can be large, and in an outage the sender's queue holds up to
        ``max_queue`` of them) and normalised off the agent's thread."""
        try:
            usage = getattr(result, "usage", None)
            if usage is None:
                return
            response_id, model = getattr(result, "id", None), getattr(result, "model", None)
        except Exception:  # telemetry never raises into agent code
            self.failed += 1
            log.exception("agentledger hook could not read usage from a %s response", target.operation)
            return
        self._defer(self._response_event, caller, target.sdk, usage, response_id, model, provider, via)

    def _defer(self, build: Callable[..., dict[str, Any] | None], *args: Any) -> None:
        """Hand the sender thread what the event is built from; the event is built there, when
        the sender takes it (``BatchSender._take``), not on the agent's thread. Only what can
        change after the call is read now: the time and the context's key fingerprint. Inside a
        real call the event's building costs several times what it costs in a tight loop (its
        code and data are out of the CPU caches by then): docs/hook.md, "Cost"."""
        try:
            fp = keys.current_fingerprint.get() if keys._POOLS else None
            em = self.emitter or api._emitter or api.get_emitter()  # em(), without its call
            em._worker.put(functools.partial(build, *args, fp, time.time_ns()))
        except Exception:  # telemetry never raises into agent code
            self.failed += 1
            log.exception("agentledger hook could not record usage")

    def _response_event(
        self,
        caller: Caller,
        sdk: str,
        raw_usage: Any,
        response_id: str | None,
        model: Any,
        provider: str,
        via: str | None,
        fp: str | None,
        ts: int,
    ) -> dict[str, Any] | None:
        # Handing the normaliser a dict, not the SDK object, spares it a dozen lookups of
        # attributes the object does not have (each an exception inside pydantic: ~10 µs a call).
        try:
            if sdk == "anthropic":
                usage = usage_from_anthropic({"usage": raw_usage, "model": model})
            else:
                usage = openai_usage(raw_usage, str(model or "unknown"))
        except Exception:  # telemetry never raises (the sender logs what its builders raise, too)
            self.failed += 1
            log.exception("agentledger hook could not read usage from a %s response", sdk)
            return None
        return self._usage_event(caller, usage, response_id, provider, via, fp, ts)

    def _usage_event(
        self,
        caller: Caller,
        usage: Usage | None,
        response_id: str | None,
        provider: str,
        via: str | None,
        fp: str | None,
        ts: int,
    ) -> dict[str, Any] | None:
        """The usage event (on the sender's thread); None when the response carried no usage."""
        if usage is None:
            return None
        try:
            trace_id, span_id = caller.trace_id, caller.span_id
            if trace_id is None or span_id is None:
                both = "%048x" % (_ids._rng.getrandbits(192) | 1 << 64 | 1)
                trace_id, span_id = trace_id or both[:32], span_id or both[32:]
            attributes: dict[str, Any] = {}
            if response_id:
                attributes["gen_ai.response.id"] = response_id[:256]
            if via is not None:
                attributes["agentledger.failover_from"] = via
            if caller.downgraded_from is not None:
                attributes["agentledger.downgraded_from"] = caller.downgraded_from[:256]
            if caller.user is not None:
                attributes["user.id"] = caller.user
            if caller.conversation is not None:
                attributes["gen_ai.conversation.id"] = caller.conversation
            if fp is not None:
                attributes["agentledger.key_fingerprint"] = fp
            if caller.attempts > 1:  # the SDK's retries (ours waited; the SDK retried)
                attributes["agentledger.retries"] = caller.attempts - 1
            if caller.waited_s:
                attributes["agentledger.backoff_wait_ms"] = round(caller.waited_s * 1000)
            event = {
                "event_id": usage_event_id(response_id, caller),
                "type": "usage", "ts": ts, "tenant": caller.tenant, "agent": caller.agent,
                "agent_version": caller.agent_version, "workflow": caller.workflow, "trace_id": trace_id,
                "span_id": span_id, "parent_span_id": caller.parent_span_id, "provider": provider,
                "model": usage.model, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
                "reasoning_tokens": usage.reasoning_tokens, "attributes": attributes,
            }  # fmt: skip
        except Exception:  # telemetry never raises (the sender logs what its builders raise, too)
            self.failed += 1
            log.exception("agentledger hook could not record usage")
            return None
        self.recorded += 1
        return event

    def record_error(
        self, caller: Caller, provider: str, model: Any, start: int, exc: BaseException, cause: str
    ) -> None:
        """A call that failed (e.g. timed out): an LLM span in error, with the cause."""
        em = self.em()
        trace_id, span_id, parent = caller.trace_id, caller.span_id, caller.parent_span_id
        if trace_id is None:
            trace_id = "%032x" % (_ids._rng.getrandbits(128) | 1)
        # the hook's own span for the call, under the caller's span when there is one
        parent, span_id = (span_id, _ids.span_id()) if span_id is not None else (parent, _ids.span_id())
        attributes: dict[str, Any] = {"agentledger.error.cause": cause, "error.type": type(exc).__name__}
        if caller.timeout_s is not None:
            attributes["agentledger.call_timeout_s"] = caller.timeout_s
        if caller.attempts:
            attributes["agentledger.attempts"] = caller.attempts
        event = {
            "event_id": _ids.event_id(), "type": "span", "ts": time.time_ns(), "tenant": caller.tenant,
            "agent": caller.agent, "agent_version": caller.agent_version, "workflow": caller.workflow,
            "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
            "name": f"chat {model}" if isinstance(model, str) else "chat", "kind": "llm",
            "start": start, "end": max(start, time.time_ns()), "status": "error",
            "error_type": type(exc).__name__, "provider": provider, "attributes": attributes,
        }  # fmt: skip
        if isinstance(model, str):
            event["model"] = model[:256]
        em._worker.put(event)


def _build_client(fallback: Fallback, is_async: bool) -> Any:
    key = fallback.api_key or (os.environ.get(fallback.api_key_env) if fallback.api_key_env else None)
    if fallback.api == "anthropic":
        import anthropic

        cls: Any = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return cls(base_url=fallback.base_url, api_key=key or "unset")
    import openai

    if fallback.azure_endpoint:
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        return cls(azure_endpoint=fallback.azure_endpoint, api_version=fallback.api_version, api_key=key)
    if not fallback.base_url:
        raise FailoverUnavailable("agentledger: a Fallback needs base_url, azure_endpoint or a client")
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(base_url=fallback.base_url, api_key=key or "unset")


# -- usage from responses and streams --------------------------------------------------


class _Tally:
    """What a stream has shown so far: the response id and the items that carry usage."""

    __slots__ = ("done", "hide_usage_chunk", "items", "operation", "response_id")

    def __init__(self, operation: str, hide_usage_chunk: bool) -> None:
        self.operation = operation
        self.hide_usage_chunk = hide_usage_chunk
        self.items: list[Any] = []
        self.response_id: str | None = None
        self.done = False

    def add(self, item: Any) -> bool:
        """Take one chunk/event; False when the agent must not see it (a usage chunk the hook asked for)."""
        if self.operation == "chat":
            if self.response_id is None:
                self.response_id = item.id
            if item.usage is not None:
                self.items.append({"usage": item.usage, "model": item.model})
                if self.hide_usage_chunk and not item.choices:
                    return False
            return True
        kind = item.type
        if self.operation == "responses":  # the final event carries the whole response
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.response_id = item.response.id
                self.items.append({"usage": item.response.usage, "model": item.response.model})
        elif kind == "message_start":
            self.response_id = item.message.id
            self.items.append(item)
        elif kind == "message_delta":
            self.items.append(item)
        return True

    def usage(self) -> Usage | None:
        if not self.items:
            return None
        if self.operation == "messages":
            return usage_from_anthropic(self.items)
        return usage_from_openai(self.items[-1])


def _observe(it: Any, tally: _Tally, finish: Callable[[], None]) -> Any:
    try:
        for item in it:
            try:
                keep = tally.add(item)
            except Exception:  # noqa: BLE001 - a chunk we cannot read is still the agent's
                keep = True
            if keep:
                yield item
    finally:
        finish()


async def _aobserve(it: Any, tally: _Tally, finish: Callable[[], None]) -> Any:
    try:
        async for item in it:
            try:
                keep = tally.add(item)
            except Exception:  # noqa: BLE001
                keep = True
            if keep:
                yield item
    finally:
        finish()


def _watch_stream(
    hook: Hook, caller: Caller, target: _Target, stream: Any, provider: str, via: str | None, hide: bool
) -> Any:
    """Observe the SDK's own Stream in place (its iterator is swapped, the object is the same:
    ``isinstance`` checks, ``with``, ``close()`` and ``.response`` keep working)."""
    tally = _Tally(target.operation, hide)

    def finish() -> None:
        if tally.done:
            return
        tally.done = True
        try:
            usage = tally.usage()
        except Exception:  # noqa: BLE001
            usage = None
        if usage is None:
            log.debug("agentledger hook: a streamed %s call ended without usage", target.operation)
        hook.record(caller, usage, tally.response_id, provider, via)

    try:
        inner = stream._iterator
        stream._iterator = (
            _aobserve(inner, tally, finish) if target.is_async else _observe(inner, tally, finish)
        )
    except Exception:  # noqa: BLE001 - an SDK whose stream we cannot observe: the call goes on
        log.warning("agentledger hook cannot observe %s streams of this SDK version", target.operation)
    return stream


def _want_stream_usage(hook: Hook, target: _Target, kwargs: dict[str, Any]) -> bool:
    """Chat streams report usage only when asked: ask, and hide the extra chunk from the agent."""
    if target.operation != "chat" or not kwargs.get("stream") or not hook.stream_usage:
        return False
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        return False
    kwargs["stream_options"] = {**(options if isinstance(options, Mapping) else {}), "include_usage": True}
    return True


# -- the wrappers ----------------------------------------------------------------------

_HOOK: Hook | None = None
_RAW_HEADER = "X-Stainless-Raw-Response"  # both SDKs' marker of a with_raw_response call
_PATCHED: list[tuple[type, str, Any, Any]] = []  # (class, method, original, wrapper)
_STATE_LOCK = threading.Lock()


def _wrap(target: _Target, original: Any) -> Any:
    if target.method == "stream":
        return _wrap_manager(target, original)
    if target.is_async:

        @functools.wraps(original)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            hook = _HOOK
            caller = hook.caller() if hook is not None else None
            if hook is None or caller is None:
                return await original(self, *args, **kwargs)
            _prepare(hook, caller, kwargs, self, target)
            if hook.guard is not None:
                await _acheck(hook, caller)
            if screen_policy._ACTIVE is not None:
                _screen(hook, caller, target, kwargs)
            resource, provider, via, hide = _before(hook, caller, target, self, kwargs)
            token = recording_call(caller)
            start = time.time_ns()
            try:
                if keys._POOLS:
                    result = await _asend_keyed(original, resource, target, provider, args, kwargs)
                else:
                    result = await original(resource, *args, **kwargs)
            except Exception as exc:
                _failed(hook, caller, resource, provider, kwargs, start, exc)
                raise
            finally:
                end_recording_call(token)
            streamed = bool(kwargs.get("stream"))
            mode = None if kwargs.get("extra_headers") is None else _raw_mode(kwargs)
            if mode is None:
                if not streamed:  # _after's usual case, without its call
                    hook.record_response(caller, target, result, provider, via)
                    return result
                return _after(hook, caller, target, result, provider, via, hide, streamed)
            if mode == "stream" and streamed:
                return _tap_body(hook, caller, target, result, provider, via, hide)
            parsed = _parse_raw(result, kwargs)
            if inspect.isawaitable(parsed):  # anthropic's async raw response parses in a coroutine
                parsed = await _awaited(parsed)
            if parsed is not None:
                _after(hook, caller, target, parsed, provider, via, hide, streamed)
            return result

        async_wrapper.__agentledger_hook__ = True  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        hook = _HOOK
        caller = hook.caller() if hook is not None else None
        if hook is None or caller is None:
            return original(self, *args, **kwargs)
        _prepare(hook, caller, kwargs, self, target)
        if hook.guard is not None:
            _check(hook, caller)
        if screen_policy._ACTIVE is not None:
            _screen(hook, caller, target, kwargs)
        resource, provider, via, hide = _before(hook, caller, target, self, kwargs)
        token = recording_call(caller)
        start = time.time_ns()
        try:
            if keys._POOLS:
                result = _send_keyed(original, resource, target, provider, args, kwargs)
            else:
                result = original(resource, *args, **kwargs)
        except Exception as exc:
            _failed(hook, caller, resource, provider, kwargs, start, exc)
            raise
        finally:
            end_recording_call(token)
        streamed = bool(kwargs.get("stream"))
        mode = None if kwargs.get("extra_headers") is None else _raw_mode(kwargs)
        if mode is None:
            if not streamed:  # _after's usual case, without its call
                hook.record_response(caller, target, result, provider, via)
                return result
            return _after(hook, caller, target, result, provider, via, hide, streamed)
        if mode == "stream" and streamed:
            return _tap_body(hook, caller, target, result, provider, via, hide)
        parsed = _parse_raw(result, kwargs)
        if parsed is not None:
            _after(hook, caller, target, parsed, provider, via, hide, streamed)
        return result

    wrapper.__agentledger_hook__ = True  # type: ignore[attr-defined]
    return wrapper


def _failed(
    hook: Hook,
    caller: Caller,
    resource: Any,
    provider: str,
    kwargs: dict[str, Any],
    start: int,
    exc: BaseException,
) -> None:
    """The SDK gave up on a call: a 429 it did not retry still pauses the key for everyone; a
    timeout is recorded as an LLM span in error, with its cause."""
    try:
        if getattr(exc, "status_code", None) == 429:
            _backoff.saw_response(getattr(resource, "_client", None), getattr(exc, "response", None))
        elif type(exc).__name__ == "APITimeoutError":  # both SDKs' name for it
            hook.record_error(caller, provider, kwargs.get("model"), start, exc, "timeout")
    except Exception:
        log.exception("agentledger hook could not record a failed call")


def _policy_timeout(
    hook: Hook, caller: Caller, kwargs: dict[str, Any], resource: Any, target: _Target
) -> float | None:
    """The per-call timeout a policy sets for this call (through the Guard, which follows the
    policies topic; docs/adr/0019), or None."""
    timeouts = getattr(hook.guard, "timeouts", None)
    if timeouts is None or not len(timeouts):
        return None
    model = kwargs.get("model")
    t = timeouts.for_call(
        caller.tenant, caller.agent, caller.agent_version, caller.workflow,
        hook.provider_of(resource, target), model if isinstance(model, str) else None,
    )  # fmt: skip
    return float(t) if t is not None else None


def _apply_timeout(
    hook: Hook, caller: Caller, kwargs: dict[str, Any], resource: Any, target: _Target
) -> None:
    """The per-call timeout as the SDK's ``timeout=``: a policy's first (the control plane),
    else the configured one (per-agent override first); a shorter number the agent gave itself
    is kept, and so is an ``httpx.Timeout`` it built."""
    em = hook.emitter or api._emitter or api.get_emitter()  # hook.em(), without its call
    default, per_agent = getattr(em, "call_timeout_s", None), getattr(em, "call_timeouts", None)
    limit = per_agent.get(caller.agent, default) if per_agent else default
    timeouts = getattr(hook.guard, "timeouts", None)
    if timeouts is not None and len(timeouts):  # a timeout policy in force (else no lookup)
        limit = _policy_timeout(hook, caller, kwargs, resource, target) or limit
    if limit is None:
        return
    given = kwargs.get("timeout")
    if isinstance(given, _NUMBER) and not isinstance(given, bool):
        if given <= limit:
            caller.timeout_s = float(given)
            return
    elif given is not None and type(given).__name__ not in ("NotGiven", "Omit"):
        return  # the agent's own timeout object
    kwargs["timeout"] = limit
    caller.timeout_s = limit


def _prepare(hook: Hook, caller: Caller, kwargs: dict[str, Any], resource: Any, target: _Target) -> None:
    """Before the Guard: the end user / conversation the request names, a rollback's route, and
    the per-call timeout."""
    try:
        from_request(caller, kwargs)
        guard = hook.guard
        if guard is not None:
            # The Guard's index says whether a rollback or a rollout is in force at all (the
            # usual case: none); then the version lookup is skipped, as _before skips others.
            index = getattr(guard, "_index", None)
            if index is None or index.rollbacks or index.routes:
                hook.route_version(caller, kwargs)
        _apply_timeout(hook, caller, kwargs, resource, target)
    except Exception:
        log.exception("agentledger hook could not route a rollback; the call goes on unchanged")


def _before(
    hook: Hook, caller: Caller, target: _Target, resource: Any, kwargs: dict[str, Any]
) -> tuple[Any, str, str | None, bool]:
    """After admission: the failover route, and the stream-usage request. Raises only
    ``FailoverUnavailable``; anything else going wrong leaves the call as it was."""
    frameworks.mark_hooked_call()  # the framework's span of this call: its usage is ours
    provider = hook.provider_of(resource, target)
    routed, goal = resource, provider
    guard = hook.guard
    if guard is not None:
        # The Guard's index says which kinds of command are in force: with no downgrade and
        # no failover (the usual case) their lookups are skipped, not made to answer "none".
        index = getattr(guard, "_index", None)
        if index is None or index.downgrades:
            try:
                hook.downgrade(caller, kwargs)
            except Exception:
                log.exception("agentledger hook could not apply a downgrade; the call keeps its model")
        if index is None or index.failovers:
            try:
                routed, goal = hook.reroute(resource, target, provider, kwargs)
            except FailoverUnavailable:
                raise
            except Exception:
                log.exception("agentledger hook could not route a call; it goes to %s unchanged", provider)
    hide = _want_stream_usage(hook, target, kwargs) if kwargs.get("stream") else False
    return routed, goal, (provider if goal != provider else None), hide


def _screen(hook: Hook, caller: Caller, target: _Target, kwargs: dict[str, Any]) -> None:
    """Injection screening of what the request carries from outside (docs/security.md): raises
    only ``InjectionBlocked``; any fault inside leaves the call unscreened."""
    screener = screen_policy._ACTIVE
    if screener is not None:
        screener.check(caller, target.sdk, kwargs, hook.em())


def _keyed_kwargs(target: _Target, key: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    headers = dict(kwargs.get("extra_headers") or {})
    headers.update(keys.auth_headers(target.sdk, key))
    return {**kwargs, "extra_headers": headers}


def _key_attempts(
    target: _Target, provider: str, kwargs: dict[str, Any]
) -> Generator[dict[str, Any], BaseException, None]:
    """The attempts of one call with the provider's pool key (docs/security.md, "Provider
    keys"): yields each attempt's kwargs; the caller sends back the 401 or 429 an attempt
    raised and gets the next key's kwargs; it stops when no key is left (the last error is
    then the agent's). A provider without a pool keeps the client's own key: one attempt.
    One loop for the sync and the async caller (``_send_keyed``, ``_asend_keyed``)."""
    pool = keys.pool_for(provider)
    picked = pool.current() if pool is not None else None
    if pool is None or picked is None:
        keys.current_fingerprint.set(None)
        yield kwargs
        return
    while picked is not None:
        key, fp = picked
        keys.current_fingerprint.set(fp)
        exc = yield _keyed_kwargs(target, key, kwargs)
        pool.failed(fp, getattr(exc, "status_code", 0), keys.retry_after_s(exc))
        picked = pool.current()


def _next_attempt(
    attempts: Generator[dict[str, Any], BaseException, None], exc: BaseException
) -> dict[str, Any] | None:
    """The kwargs to retry with after ``exc``, or None: the error is the agent's."""
    if getattr(exc, "status_code", None) not in (401, 429):
        return None
    try:
        return attempts.send(exc)
    except StopIteration:  # no key left (or no pool: its one attempt is spent)
        return None


def _send_keyed(
    original: Any,
    resource: Any,
    target: _Target,
    provider: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    attempts = _key_attempts(target, provider, kwargs)
    attempt = next(attempts)
    while True:
        try:
            return original(resource, *args, **attempt)
        except Exception as exc:
            retry = _next_attempt(attempts, exc)
            if retry is None:
                raise
            attempt = retry


async def _asend_keyed(
    original: Any,
    resource: Any,
    target: _Target,
    provider: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    attempts = _key_attempts(target, provider, kwargs)
    attempt = next(attempts)
    while True:
        try:
            return await original(resource, *args, **attempt)
        except Exception as exc:
            retry = _next_attempt(attempts, exc)
            if retry is None:
                raise
            attempt = retry


_CLEAR_MAX = 1024  # caller keys remembered (one per agent and trace): then it starts over


def _remember(hook: Hook, key: tuple[Any, ...], stamp: Any) -> None:
    clear = hook.clear
    if stamp is None:
        clear.pop(key, None)
        return
    if stamp is not hook.clear_index:  # a new index: the entries of the old one can never hit
        clear.clear()
        hook.clear_index = stamp
    if len(clear) >= _CLEAR_MAX:
        clear.clear()
    clear[key] = stamp


def _check(hook: Hook, caller: Caller) -> None:
    try:
        c, guard = caller, hook.guard
        key = (c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, c.user, c.conversation)
        # A caller cleared under the index still in force, the Guard still ready: its answer
        # cannot have changed (Guard.unaffected), so it is not asked again.
        stamp = hook.clear.get(key)  # (None for a guard of another type: never remembered)
        if stamp is not None and stamp is guard._index and guard._is_ready:
            return
        guard.check(  # positional: no keyword dict built per call
            c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, hook.wait, c.user, c.conversation
        )
        if hook.stamps:
            stamp = guard.unaffected(
                c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, c.user, c.conversation
            )
            _remember(hook, key, stamp)
    except (AgentKilled, Throttled):
        raise
    except Exception:  # a Guard fault is not a decision
        log.exception("agentledger guard check failed; the call goes on")


async def _acheck(hook: Hook, caller: Caller) -> None:
    try:
        c, guard = caller, hook.guard
        key = (c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, c.user, c.conversation)
        stamp = hook.clear.get(key)
        if stamp is not None and stamp is guard._index and guard._is_ready:
            return  # as in _check
        await guard.acheck(  # positional: no keyword dict built per call
            c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, hook.wait, c.user, c.conversation
        )
        if hook.stamps:
            stamp = guard.unaffected(
                c.tenant, c.agent, c.workflow, c.trace_id, c.agent_version, c.user, c.conversation
            )
            _remember(hook, key, stamp)
    except (AgentKilled, Throttled):
        raise
    except Exception:
        log.exception("agentledger guard check failed; the call goes on")


def _after(
    hook: Hook,
    caller: Caller,
    target: _Target,
    result: Any,
    provider: str,
    via: str | None,
    hide: bool,
    streamed: bool,
) -> Any:
    if streamed:
        return _watch_stream(hook, caller, target, result, provider, via, hide)
    hook.record_response(caller, target, result, provider, via)
    return result


def _raw_mode(kwargs: dict[str, Any]) -> str | None:
    """``with_raw_response`` (LiteLLM, hence CrewAI and smolagents, calls this way) and
    ``with_streaming_response`` mark their calls with a header ("true" / "raw" / "stream");
    the SDK then returns the raw response instead of the parsed one."""
    headers = kwargs.get("extra_headers")
    if headers is None:  # the usual case: no isinstance() against the Mapping ABC
        return None
    return headers.get(_RAW_HEADER) if isinstance(headers, Mapping) else None


def _parse_raw(result: Any, kwargs: dict[str, Any]) -> Any:
    """The parsed body of a raw response: the SDK caches it (and the body's bytes), so the
    agent's own ``parse()``, ``json()`` or ``iter_bytes()`` gets the same (for a stream: the
    stream the hook observes). A ``with_streaming_response`` body that is not a stream is read
    here at once: it is complete on the provider's side, and read it is recorded even when the
    agent closes it unread. Its streams are tapped instead (``_tap_body``)."""
    try:
        return result.parse()
    except Exception:  # the agent's own parse() will raise it
        log.debug("agentledger hook could not parse a raw response", exc_info=True)
        return None


def _tap_body(
    hook: Hook, caller: Caller, target: _Target, result: Any, provider: str, via: str | None, hide: bool
) -> Any:
    """A ``with_streaming_response`` stream: the agent reads the body itself (bytes, lines or
    ``parse()``), all through the HTTP response's ``iter_bytes``; tap it there."""

    def finish(usage: Usage | None, response_id: str | None) -> None:
        if usage is None:
            log.debug("agentledger hook: a streamed %s body ended without usage", target.operation)
        hook.record(caller, usage, response_id, provider, via)

    tap = BodyTap(target.operation, hide, finish)
    try:
        http = result.http_response
        if target.is_async:
            inner_async = http.aiter_bytes

            async def aiter_bytes(chunk_size: int | None = None) -> Any:
                try:
                    async for chunk in inner_async(chunk_size):
                        out = tap.feed(chunk)
                        if out:
                            yield out
                    rest = tap.flush()
                    if rest:
                        yield rest
                finally:
                    tap.close()

            http.aiter_bytes = aiter_bytes
        else:
            inner = http.iter_bytes

            def iter_bytes(chunk_size: int | None = None) -> Any:
                try:
                    for chunk in inner(chunk_size):
                        out = tap.feed(chunk)
                        if out:
                            yield out
                    rest = tap.flush()
                    if rest:
                        yield rest
                finally:
                    tap.close()

            http.iter_bytes = iter_bytes
    except Exception:  # noqa: BLE001 - an SDK whose body we cannot tap: the call goes on
        log.warning("agentledger hook cannot read streamed bodies of this SDK version; not recorded")
    return result


async def _awaited(parsed: Any) -> Any:
    try:
        return await parsed
    except Exception:
        log.debug("agentledger hook could not parse a raw response", exc_info=True)
        return None


def _wrap_manager(target: _Target, original: Any) -> Any:
    """``messages.stream(...)`` returns a manager that sends on ``__enter__`` through its own
    request function: decide now, and observe the raw stream it opens."""

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        hook = _HOOK
        caller = hook.caller() if hook is not None else None
        if hook is None or caller is None:
            return original(self, *args, **kwargs)
        _prepare(hook, caller, kwargs, self, target)
        if hook.guard is not None:
            _check(hook, caller)  # a sync method even on the async client: the manager is built now
        if screen_policy._ACTIVE is not None:
            _screen(hook, caller, target, kwargs)
        resource, provider, via, _ = _before(hook, caller, target, self, kwargs)
        manager = original(resource, *args, **kwargs)
        attr = f"_{type(manager).__name__}__api_request"  # (Beta)(Async)MessageStreamManager's
        request = getattr(manager, attr, None)
        if request is None:
            log.warning("agentledger hook cannot observe messages.stream() of this anthropic version")
            return manager
        if target.is_async:

            async def opened() -> Any:
                token = recording_call(caller)
                try:
                    raw = await request
                finally:
                    end_recording_call(token)
                return _watch_stream(hook, caller, target, raw, provider, via, False)

            setattr(manager, attr, opened())
        else:

            def open_now() -> Any:
                token = recording_call(caller)
                try:
                    raw = request()
                finally:
                    end_recording_call(token)
                return _watch_stream(hook, caller, target, raw, provider, via, False)

            setattr(manager, attr, open_now)
        return manager

    wrapper.__agentledger_hook__ = True  # type: ignore[attr-defined]
    return wrapper


# -- install / uninstall ---------------------------------------------------------------


_OWN_GUARDS: dict[str, Any] = {}  # "bootstrap control-topic" -> Guard, when get_guard() cannot know it


def _default_guard(emitter: Any) -> Any:
    """The process-wide Guard when a Kafka bootstrap is known: from the environment
    (``get_guard()``), else the configured emitter's (``get_guard()`` reads only the
    environment today, so the hook keeps one Guard per such bootstrap itself)."""
    from agentledger.settings import get_settings

    from . import guard as guard_module

    if get_settings().kafka_bootstrap:
        return guard_module.get_guard()
    em = emitter if emitter is not None else api._emitter
    bootstrap = getattr(getattr(em, "transport", None), "bootstrap", None)
    if bootstrap:
        from agentledger import topics

        key = f"{bootstrap} {topics.name(topics.CONTROL, get_settings().topic_prefix)}"
        with _STATE_LOCK:
            if key not in _OWN_GUARDS:
                _OWN_GUARDS[key] = guard_module.Guard(bootstrap)
            return _OWN_GUARDS[key]
    log.info("agentledger hook: no Kafka bootstrap known, so no Guard: calls are recorded, not enforced")
    return None


def instrument(
    *,
    guard: Any = None,
    emitter: Any = None,
    throttle: str = "wait",
    fallbacks: Mapping[str, Fallback] | None = None,
    versions: Mapping[str, Mapping[str, Any]] | None = None,
    stream_usage: bool = True,
    enforce: bool = True,
    providers: Mapping[str, str] | None = None,
) -> list[str]:
    """Hook the openai and anthropic SDKs installed in this process; returns what was hooked.

    ``guard``: the Guard to obey (default: the process-wide one when a Kafka bootstrap is
    known; ``enforce=False`` records only). ``throttle``: ``"wait"`` on the token bucket or
    ``"raise"`` ``Throttled``. ``fallbacks``: provider name (as a failover command names it)
    -> ``Fallback``. ``versions``: agent version -> request settings applied while a rollback
    routes to it. ``stream_usage``: ask chat streams for their usage chunk (hidden from the
    agent). ``providers``: API host -> provider name, for OpenAI-compatible endpoints (added to
    ``PROVIDER_HOSTS``); the name is what usage is recorded under and what a failover
    command names. Idempotent: a second call updates the settings and hooks nothing twice.
    """
    global _HOOK
    chosen = (guard if guard is not None else _default_guard(emitter)) if enforce else None
    hook = Hook(emitter, chosen, throttle, fallbacks or {}, versions or {}, stream_usage, providers or {})
    with _STATE_LOCK:
        _HOOK = hook
        if not _PATCHED:
            for target in TARGETS:
                try:
                    cls = getattr(importlib.import_module(target.module), target.cls)
                except (ImportError, AttributeError):
                    continue  # that SDK (or that API in this version) is not installed
                original = cls.__dict__.get(target.method)
                if original is None:
                    continue
                wrapper = _wrap(target, original)
                setattr(cls, target.method, wrapper)
                _PATCHED.append((cls, target.method, original, wrapper))
            _patch_backoff()
        hooked = [
            f"{cls.__module__}.{cls.__name__}.{name}"
            for cls, name, _, _ in _PATCHED
            if name not in _BACKOFF_METHODS
        ]
    track_open_spans()
    frameworks.install()  # adapters of the installed frameworks (their agents, a clean stop)
    return hooked


def _patch_backoff() -> None:
    """Wrap the client methods the shared backoff needs, where each client class resolves them."""
    for module, name, is_async in _BACKOFF_CLIENTS:
        try:
            client_cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        for method in _BACKOFF_METHODS:
            owner = next((k for k in client_cls.__mro__ if method in k.__dict__), None)
            if owner is None or any(c is owner and m == method for c, m, _, _ in _PATCHED):
                continue
            original = owner.__dict__[method]
            if method == "_prepare_request":
                wrapper = _backoff.wrap_prepare(original, is_async, current_call)
            else:
                wrapper = _backoff.wrap_sleep(original, is_async)
            setattr(owner, method, wrapper)
            _PATCHED.append((owner, method, original, wrapper))


def uninstrument() -> None:
    """Restore the SDK methods (a method wrapped again by someone else since is left alone)."""
    global _HOOK
    frameworks.uninstall()
    with _STATE_LOCK:
        _HOOK = None
        for cls, name, original, wrapper in reversed(_PATCHED):
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
            else:
                log.warning(
                    "agentledger: %s.%s was wrapped again after instrument(); left as is", cls.__name__, name
                )
        _PATCHED.clear()
    _backoff.reset()


def installed() -> Hook | None:
    """The active hook (its ``recorded`` and ``failed`` counters), or None."""
    return _HOOK
