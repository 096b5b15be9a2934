"""Token usage from OpenAI and Anthropic responses, normalised once, here, at the edge.

OpenAI (chat completions and responses, streamed or not): the prompt/input count already
includes cached tokens (``prompt_tokens_details.cached_tokens`` /
``input_tokens_details.cached_tokens``) and the completion/output count includes reasoning.
Anthropic: ``input_tokens`` excludes cache reads and cache writes, so the contract's
``input_tokens`` is ``input + cache_read + cache_creation``; thinking tokens are inside ``output_tokens``
(reported apart as ``output_tokens_details.thinking_tokens`` by newer APIs). Works on SDK objects, their dicts, and lists of
stream events/chunks; duck-typed, so neither SDK is needed at runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emitter import Emitter


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    # The SDKs' pydantic objects keep their fields in __dict__ and extra fields apart; asking
    # them with getattr() for a field they lack costs an exception inside pydantic (µs each).
    fields = getattr(obj, "__dict__", None)
    if fields is not None:
        if name in fields:
            return fields[name]
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra is not None:
            return extra.get(name)
    return getattr(obj, name, None)


# Tuples, not ``int | float``: a union written in the call is built anew on every call.
_NUMBER, _SEQUENCE = (int, float), (list, tuple)


def _int(value: Any) -> int:
    if type(value) is int:  # the usual case, one test
        return value
    return int(value) if isinstance(value, _NUMBER) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalised usage of one call (the contract's counting rules)."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def record(self, emitter: Emitter | None = None) -> str:
        """Record it on ``emitter`` (default: the process-wide one). Returns the event id."""
        from .client import get_emitter

        return (emitter or get_emitter()).record_usage(
            self.provider, self.model, self.input_tokens, self.output_tokens,
            self.cache_read_tokens, self.cache_write_tokens, self.reasoning_tokens,
        )  # fmt: skip


def _is_stream(obj: Any) -> bool:
    return isinstance(obj, _SEQUENCE)


def usage_from_openai(response: Any, model: str | None = None, provider: str = "openai") -> Usage | None:
    """From a ChatCompletion, a Responses ``Response``, a usage object, a list of stream
    chunks/events (the last one carrying usage wins), or their dicts. None when no usage."""
    if _is_stream(response):
        found = None
        for item in response:
            got = usage_from_openai(item, model, provider)
            model = model or _model_of(item)
            if got is not None:
                found = got
        return found
    if _get(response, "type") in ("response.completed", "response.incomplete", "response.failed"):
        response = _get(response, "response")  # Responses API stream event
    usage = _get(response, "usage")
    if usage is None and (
        _get(response, "prompt_tokens") is not None or _get(response, "input_tokens") is not None
    ):
        usage = response  # a bare usage object
    if usage is None:
        return None
    return openai_usage(usage, model or _model_of(response) or "unknown", provider)


def _fields(obj: Any) -> dict[str, Any] | None:
    """A pydantic object's fields when ``_get`` would read every name from them alone: its
    ``__dict__``, with an empty extra-fields dict (a name absent from both reads as None)."""
    fields = getattr(obj, "__dict__", None)
    extra = getattr(obj, "__pydantic_extra__", None)
    return fields if fields is not None and type(extra) is dict and not extra else None


def _chat_fast(usage: Any, model: str, provider: str) -> Usage | None:
    """The usual case in one function: a chat ``CompletionUsage`` (an SDK pydantic object)
    whose counts are plain ints, read from its fields with no per-field calls. The provider
    hook's usage events are built on the sender's thread, which holds the GIL meanwhile.
    None: anything else, for the general path (same result where both apply)."""
    fields = _fields(usage)
    if fields is None:
        return None
    inp, out = fields.get("prompt_tokens"), fields.get("completion_tokens")
    if type(inp) is not int or type(out) is not int:
        return None
    read = write = reasoning = 0
    details = fields.get("prompt_tokens_details")
    if details is not None:
        d = _fields(details)
        if d is None:
            return None
        read, write = d.get("cached_tokens") or 0, d.get("cache_write_tokens") or 0
        if type(read) is not int or type(write) is not int:
            return None
    completion = fields.get("completion_tokens_details")
    if completion is not None:
        d = _fields(completion)
        if d is None:
            return None
        reasoning = d.get("reasoning_tokens") or 0
        if type(reasoning) is not int:
            return None
    read = min(read, inp)
    return Usage(provider, model, inp, out, read, min(write, inp - read), min(reasoning, out))


def openai_usage(usage: Any, model: str, provider: str = "openai") -> Usage:
    """From the usage object itself (``CompletionUsage`` or ``ResponseUsage``, or its dict)."""
    if type(usage) is not dict:
        fast = _chat_fast(usage, model, provider)
        if fast is not None:
            return fast
    prompt = _get(usage, "prompt_tokens")
    if prompt is not None:  # chat completions: CompletionUsage
        inp, out = _int(prompt), _int(_get(usage, "completion_tokens"))
        details = _get(usage, "prompt_tokens_details")
        reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    else:  # responses API: ResponseUsage
        inp, out = _int(_get(usage, "input_tokens")), _int(_get(usage, "output_tokens"))
        details = _get(usage, "input_tokens_details")
        reasoning = _int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens"))
    # Both are part of the prompt count already (OpenAI counts cached and cache-written
    # prompt tokens inside prompt_tokens / input_tokens).
    read = min(_int(_get(details, "cached_tokens")), inp)
    write = min(_int(_get(details, "cache_write_tokens")), inp - read)
    return Usage(provider, model, inp, out, read, write, min(reasoning, out))


def _model_of(obj: Any) -> str | None:
    model = _get(obj, "model") or _get(_get(obj, "message"), "model") or _get(_get(obj, "response"), "model")
    return str(model) if model else None


def usage_from_anthropic(message: Any, model: str | None = None, provider: str = "anthropic") -> Usage | None:
    """From a ``Message``, a ``Usage``, a list of stream events (``message_start`` then
    ``message_delta``), or their dicts. None when no usage is found."""
    if _is_stream(message):
        return _from_anthropic_stream(message, model, provider)
    usage = _get(message, "usage")
    if usage is None and _get(message, "input_tokens") is not None:
        usage = message
    if usage is None:
        return None
    return _normalise_anthropic(usage, None, model or _model_of(message) or "unknown", provider)


def _from_anthropic_stream(events: Iterable[Any], model: str | None, provider: str) -> Usage | None:
    start = delta = None
    for event in events:
        kind = _get(event, "type")
        if kind == "message_start":
            start = _get(_get(event, "message"), "usage")
            model = model or _model_of(event)
        elif kind == "message_delta" and _get(event, "usage") is not None:
            delta = _get(event, "usage")  # cumulative: the last one is the total
    if start is None and delta is None:
        return None
    return _normalise_anthropic(start, delta, model or "unknown", provider)


def _normalise_anthropic(usage: Any, delta: Any, model: str, provider: str) -> Usage:
    def pick(name: str) -> int:
        later = _get(delta, name)  # a message_delta's counts (when present) supersede the start's
        return _int(later) if later is not None else _int(_get(usage, name))

    uncached = pick("input_tokens")
    read = pick("cache_read_input_tokens")
    write = pick("cache_creation_input_tokens")
    if not write:  # newer payloads break writes down by TTL
        detail = _get(usage, "cache_creation")
        write = _int(_get(detail, "ephemeral_5m_input_tokens")) + _int(
            _get(detail, "ephemeral_1h_input_tokens")
        )
    out = pick("output_tokens")
    thinking = _get(_get(delta, "output_tokens_details"), "thinking_tokens")
    if thinking is None:
        thinking = _get(_get(usage, "output_tokens_details"), "thinking_tokens")
    return Usage(provider, model, uncached + read + write, out, read, write, min(_int(thinking), out))
