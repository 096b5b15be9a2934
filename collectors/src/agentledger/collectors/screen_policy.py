"""What the hook does with injection screening: which messages of a request it screens, the
policy per channel, and the ``screen`` event each verdict becomes.

Screened: what flows into an LLM call from outside the agent's own instructions. OpenAI chat
``role: tool`` (and legacy ``function``) messages and Responses ``function_call_output``
items, Anthropic ``tool_result`` blocks (channel ``tool``, source: the tool's name when the
request names it); user messages (channel ``user``); user or assistant messages carrying a
``name`` other than the calling agent's (channel ``agent``, source: that name, as multi-agent
frameworks mark another agent's turn). Not screened: system / developer prompts,
``instructions``, Anthropic ``system``, the agent's own unnamed assistant turns.

Policy per channel: ``record`` (an event), ``alert`` (an event and a WARNING log line),
``block`` (an event, and the call raises ``InjectionBlocked``: nothing is sent), ``kill``
(as block, and every later call of the same trace in this process raises too). Telemetry
failure never raises into agent code; only a block or kill does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _ids
from .exceptions import AgentKilled
from .screen_model import RulesAndModel
from .screening import CHANNELS, Detector, Verdict

log = logging.getLogger("agentledger.collectors")

ACTIONS = ("record", "alert", "block", "kill")


class InjectionBlocked(AgentKilled):
    """A screened message was flagged and its channel's policy blocks the call (or killed its
    trace): nothing was sent to the provider. ``channel``, ``source`` and ``verdict`` say what."""

    def __init__(self, message: str, *, channel: str, source: str | None, verdict: Verdict | None) -> None:
        super().__init__(message, reason="injection")
        self.channel = channel
        self.source = source
        self.verdict = verdict


@dataclass(frozen=True)
class Screening:
    """Injection-screening settings: ``al.configure(screening=Screening(...))``.

    ``policy``: channel (``user``, ``tool``, ``agent``) -> action (``record``, ``alert``,
    ``block``, ``kill``); channels not named get ``default``. ``detector``: any ``Detector``
    (default ``RulesAndModel()``: the rules, or the packaged linear model). ``include_text``: put the first 1,024 characters of a flagged
    message in its event (off: events carry a SHA-256 of the text, never the text).
    ``record_clean``: an event for clean verdicts too (off: only flagged ones)."""

    policy: Mapping[str, str] = field(default_factory=dict)
    default: str = "record"
    detector: Detector | None = None
    include_text: bool = False
    record_clean: bool = False
    cache_size: int = 4096

    def __post_init__(self) -> None:
        for channel, action in {**self.policy, "*": self.default}.items():
            if channel != "*" and channel not in CHANNELS:
                raise ValueError(f"screening channel must be one of {CHANNELS}, not {channel!r}")
            if action not in ACTIONS:
                raise ValueError(f"screening action must be one of {ACTIONS}, not {action!r}")
        if self.cache_size < 0:
            raise ValueError("cache_size must be >= 0")


class Screener:
    """The active settings, a verdict cache (a conversation's history is sent again with every
    call; each distinct message is screened once) and the traces killed in this process."""

    def __init__(self, settings: Screening) -> None:
        self.settings = settings
        self.detector: Detector = settings.detector if settings.detector is not None else RulesAndModel()
        self.screened = 0
        self.flagged = 0
        self.failed = 0
        self._cache: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._killed: set[str] = set()
        self._lock = threading.Lock()

    def action(self, channel: str) -> str:
        return self.settings.policy.get(channel, self.settings.default)

    def check(self, caller: Any, sdk: str, kwargs: Mapping[str, Any], emitter: Any) -> None:
        """Screen the request's outside messages; raises ``InjectionBlocked`` only."""
        trace = getattr(caller, "trace_id", None)
        if trace is not None and trace in self._killed:
            raise InjectionBlocked(
                f"agentledger: trace {trace} was killed after a flagged message; nothing was sent",
                channel="trace", source=None, verdict=None,
            )  # fmt: skip
        try:
            found = list(outside_messages(sdk, kwargs, getattr(caller, "agent", None)))
        except Exception:
            self.failed += 1
            log.exception("agentledger screening could not read the request; the call goes on unscreened")
            return
        for channel, source, text in found:
            if not text:
                continue
            verdict, new = self._verdict(channel, text)
            if verdict is None:
                continue
            action = self.action(channel)
            stops = verdict.flagged and action in ("block", "kill")
            if (new and (verdict.flagged or self.settings.record_clean)) or stops:
                self._emit(
                    emitter, caller, channel, source, text, verdict, action if verdict.flagged else "record"
                )
            if not verdict.flagged:
                continue
            if action == "alert" and new:
                log.warning(
                    "agentledger screening flagged a %s message (source %s, score %.2f, %s) for agent %s",
                    channel, source, verdict.score, ",".join(verdict.reasons), getattr(caller, "agent", None),
                )  # fmt: skip
            if stops:
                if action == "kill" and trace is not None:
                    with self._lock:
                        self._killed.add(trace)
                raise InjectionBlocked(
                    f"agentledger: a {channel} message{f' from {source}' if source else ''} was flagged as a "
                    f"prompt injection (score {verdict.score:.2f}: {', '.join(verdict.reasons)}); the "
                    f"{channel} policy is {action}, so nothing was sent",
                    channel=channel, source=source, verdict=verdict,
                )  # fmt: skip

    def _verdict(self, channel: str, text: str) -> tuple[Verdict | None, bool]:
        key = (channel, text)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, False
        try:
            verdict = self.detector.screen(text, channel)
        except Exception:
            self.failed += 1
            log.exception(
                "agentledger screening: detector %s failed; the message is unscreened", self.detector.name
            )
            return None, False
        self.screened += 1
        self.flagged += verdict.flagged
        if self.settings.cache_size:
            with self._lock:
                self._cache[key] = verdict
                if len(self._cache) > self.settings.cache_size:
                    self._cache.popitem(last=False)
        return verdict, True

    def _emit(
        self,
        emitter: Any,
        caller: Any,
        channel: str,
        source: str | None,
        text: str,
        verdict: Verdict,
        action: str,
    ) -> None:
        try:
            trace_id, span_id = caller.trace_id, caller.span_id
            if trace_id is None or span_id is None:
                both = "%048x" % (_ids._rng.getrandbits(192) | 1 << 64 | 1)
                trace_id, span_id = trace_id or both[:32], span_id or both[32:]
            event: dict[str, Any] = {
                "event_id": _ids.event_id(), "type": "screen", "ts": time.time_ns(), "tenant": caller.tenant,
                "agent": caller.agent, "agent_version": caller.agent_version, "workflow": caller.workflow,
                "trace_id": trace_id, "span_id": span_id, "parent_span_id": caller.parent_span_id,
                "channel": channel, "source": source[:128] if source else None, "detector": verdict.detector[:64],
                "score": min(1.0, max(0.0, float(verdict.score))), "flagged": verdict.flagged, "action": action,
                "reasons": ",".join(verdict.reasons)[:256] or None,
                "text_sha256": hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(),
            }  # fmt: skip
            if self.settings.include_text and verdict.flagged:
                event["excerpt"] = text[:1024]
            emitter._worker.put(event)
        except Exception:  # telemetry never raises into agent code
            self.failed += 1
            log.exception("agentledger screening could not record a verdict")


_ACTIVE: Screener | None = None


def set_screening(value: Screening | Mapping[str, Any] | bool | None) -> Screener | None:
    """``None`` / ``False``: off. ``True``: record every channel. A mapping: ``Screening``'s
    fields, or a bare channel -> action map. Returns the active screener."""
    global _ACTIVE
    if value is None or value is False:
        _ACTIVE = None
        return None
    if value is True:
        settings = Screening()
    elif isinstance(value, Screening):
        settings = value
    elif isinstance(value, Mapping):
        fields = set(Screening.__dataclass_fields__)
        if set(value) <= set(CHANNELS):
            settings = Screening(policy=dict(value))
        elif set(value) <= fields:
            settings = Screening(**value)
        else:
            raise ValueError(f"screening: unknown keys {sorted(set(value) - fields - set(CHANNELS))}")
    else:
        raise ValueError("screening must be a Screening, a mapping, True or None")
    _ACTIVE = Screener(settings)
    return _ACTIVE


def active() -> Screener | None:
    return _ACTIVE


# -- what a request carries from outside ---------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    """A field of a message or block: a dict, or the SDK's own object (an agent often appends
    ``response.choices[0].message`` or ``response.content`` to its history as is)."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _text(content: Any) -> str:
    """Text of a message content: a string, or a list of text parts / blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif _get(part, "type") != "tool_result":
                value = _get(part, "text")
                if isinstance(value, str):
                    parts.append(value)
        return "\n".join(parts)
    return ""


def outside_messages(
    sdk: str, kwargs: Mapping[str, Any], agent: str | None
) -> Iterator[tuple[str, str | None, str]]:
    """(channel, source, text) of every message of the request that comes from outside the
    agent's own instructions, in request order."""
    if sdk == "anthropic":
        yield from _anthropic(kwargs.get("messages"))
    elif "messages" in kwargs:
        yield from _chat(kwargs.get("messages"), agent)
    else:
        yield from _responses(kwargs.get("input"), agent)


def _chat(messages: Any, agent: str | None) -> Iterator[tuple[str, str | None, str]]:
    if not isinstance(messages, list | tuple):
        return
    tools: dict[str, str] = {}
    for msg in messages:
        role = _get(msg, "role")
        if role == "assistant":
            for call in _get(msg, "tool_calls") or ():
                function = _get(call, "function")
                if function is not None:
                    tools[str(_get(call, "id"))] = str(_get(function, "name"))
        name = _get(msg, "name")
        if role == "tool":
            yield "tool", tools.get(str(_get(msg, "tool_call_id"))), _text(_get(msg, "content"))
        elif role == "function":
            yield "tool", name if isinstance(name, str) else None, _text(_get(msg, "content"))
        elif role in ("user", "assistant") and isinstance(name, str) and name and name != agent:
            yield "agent", name, _text(_get(msg, "content"))
        elif role == "user":
            yield "user", None, _text(_get(msg, "content"))


def _responses(items: Any, agent: str | None) -> Iterator[tuple[str, str | None, str]]:
    if isinstance(items, str):
        yield "user", None, items
        return
    if not isinstance(items, list | tuple):
        return
    tools: dict[str, str] = {}
    for item in items:
        kind = _get(item, "type")
        role = _get(item, "role")
        if kind == "function_call":
            tools[str(_get(item, "call_id"))] = str(_get(item, "name"))
        elif kind == "function_call_output":
            output = _get(item, "output")
            source = tools.get(str(_get(item, "call_id")))
            yield "tool", source, output if isinstance(output, str) else _text(output)
        elif role in ("user", "assistant"):
            name = _get(item, "name")
            if isinstance(name, str) and name and name != agent:
                yield "agent", name, _text(_get(item, "content"))
            elif role == "user":
                yield "user", None, _text(_get(item, "content"))


def _anthropic(messages: Any) -> Iterator[tuple[str, str | None, str]]:
    if not isinstance(messages, list | tuple):
        return
    tools: dict[str, str] = {}
    for msg in messages:
        content = _get(msg, "content")
        role = _get(msg, "role")
        if role == "assistant":
            for block in content if isinstance(content, list | tuple) else ():
                if _get(block, "type") == "tool_use":
                    tools[str(_get(block, "id"))] = str(_get(block, "name"))
            continue
        if role != "user":
            continue
        if isinstance(content, str):
            yield "user", None, content
            continue
        if not isinstance(content, list | tuple):
            continue
        plain = []
        for block in content:
            if _get(block, "type") == "tool_result":
                yield "tool", tools.get(str(_get(block, "tool_use_id"))), _text(_get(block, "content"))
            else:
                text = _get(block, "text")
                if isinstance(text, str):
                    plain.append(text)
        if plain:
            yield "user", None, "\n".join(plain)
