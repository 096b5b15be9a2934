"""Module-level helpers on one process-wide ``Emitter`` (``configure()`` sets it up).

Until ``configure`` is called, the first helper used configures from ``AGENTLEDGER_*``
environment (with nothing set, events are discarded by a no-op transport).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .emitter import Emitter
from .spans import SpanScope

_lock = threading.Lock()
_emitter: Emitter | None = None


def configure(**kwargs: Any) -> Emitter:
    """Create the process-wide emitter (same arguments as ``Emitter``); replaces any previous one.

    ``screening=``: injection screening of hooked LLM calls (``Screening``, a channel -> action
    mapping, ``True`` to record everywhere, ``None`` off). ``keys=``: provider name -> ``KeyPool``,
    the keys the hook sends with each call (docs/security.md)."""
    global _emitter
    if "screening" in kwargs:
        from .screen_policy import set_screening

        set_screening(kwargs.pop("screening"))
    if "keys" in kwargs:
        from .keys import set_keys

        set_keys(kwargs.pop("keys"))
    new = Emitter(**kwargs)
    with _lock:
        old, _emitter = _emitter, new
    if old is not None:
        old.shutdown(2.0)
    return new


def get_emitter() -> Emitter:
    global _emitter
    em = _emitter
    if em is None:
        with _lock:
            if _emitter is None:
                _emitter = Emitter()
            em = _emitter
    return em


def span(
    name: str,
    kind: str = "agent",
    agent: str | None = None,
    workflow: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    provider: str | None = None,
    model: str | None = None,
    *,
    user: str | None = None,
    conversation: str | None = None,
) -> SpanScope:
    """A span as a context manager or decorator (sync and async); nests through contextvars.
    ``user`` and ``conversation`` (inherited by nested spans) name who the work is for: the
    Guard obeys commands on those scopes, and events carry them as ``user.id`` and
    ``gen_ai.conversation.id``."""
    em = _emitter or get_emitter()
    return SpanScope(em, name, kind, agent, workflow, attributes, provider, model, user, conversation)


def record_usage(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    *,
    reported_cost_usd: Decimal | float | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> str:
    """Token usage of one LLM call; ``input_tokens`` includes cache reads and writes."""
    return (_emitter or get_emitter()).record_usage(
        provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        reasoning_tokens, reported_cost_usd=reported_cost_usd, attributes=attributes,
    )  # fmt: skip


def record_quality(
    metric: str,
    score: float,
    evaluator: str | None = None,
    *,
    label: str | None = None,
    comment: str | None = None,
) -> str:
    return (_emitter or get_emitter()).record_quality(metric, score, evaluator, label=label, comment=comment)


def record_tool_call(tool: str, args: Any = None, status: str = "ok") -> str:
    return (_emitter or get_emitter()).record_tool_call(tool, args, status)


def flush(timeout: float = 10.0) -> bool:
    return _emitter.flush(timeout) if _emitter is not None else True


def shutdown(timeout: float = 5.0) -> bool:
    global _emitter
    with _lock:
        em, _emitter = _emitter, None
    return em.shutdown(timeout) if em is not None else True


def stats() -> dict[str, int]:
    if _emitter is not None:
        return _emitter.stats()
    return {"sent": 0, "dropped": 0, "failed": 0, "queued": 0, "rejected": 0}
