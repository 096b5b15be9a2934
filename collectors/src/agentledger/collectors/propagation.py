"""W3C ``traceparent`` across agents and processes: HTTP headers, Kafka headers, any dict.

``inject(carrier)`` writes the current span as ``traceparent``; ``extract(carrier)`` returns
a ``SpanContext`` to ``attach`` (or pass to ``span``'s caller via ``with extracted(carrier):``)
so the receiving agent's spans join the same trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from .context import _CURRENT, SpanContext

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")


def traceparent(ctx: SpanContext | None = None) -> str | None:
    """``00-<trace>-<span>-01`` for ``ctx`` (default: the current span), or None outside spans."""
    ctx = ctx or _CURRENT.get()
    if ctx is None:
        return None
    return f"00-{ctx.trace_id}-{ctx.span_id}-01"


def inject(carrier: Any) -> Any:
    """Add ``traceparent`` to a dict (HTTP headers) or a list of (str, bytes) (Kafka headers).

    Returns the carrier; does nothing outside a span.
    """
    value = traceparent()
    if value is None:
        return carrier
    if isinstance(carrier, MutableMapping):
        carrier["traceparent"] = value
    elif isinstance(carrier, list):
        carrier[:] = [h for h in carrier if h[0] != "traceparent"]
        carrier.append(("traceparent", value.encode()))
    else:
        raise TypeError("carrier must be a mutable mapping or a list of (key, bytes) headers")
    return carrier


def _find(carrier: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> str | None:
    if carrier is None:
        return None
    if isinstance(carrier, Mapping):
        for key, value in carrier.items():
            if key.lower() == "traceparent":
                return value.decode() if isinstance(value, bytes) else str(value)
        return None
    for key, value in carrier:
        if key.lower() == "traceparent":
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def extract(
    carrier: Mapping[str, Any] | Sequence[tuple[str, Any]] | None, agent: str | None = None
) -> SpanContext | None:
    """The remote parent named by ``traceparent`` in ``carrier``, or None if absent/invalid."""
    raw = _find(carrier)
    if not raw:
        return None
    match = _TRACEPARENT.match(raw.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace, span = match.group(2), match.group(3)
    if trace == "0" * 32 or span == "0" * 16:
        return None
    return SpanContext(trace, span, None, agent, None, None, True)


@contextmanager
def extracted(carrier: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> Iterator[SpanContext | None]:
    """``with extracted(headers): ...``: spans inside join the remote trace (no-op if absent)."""
    ctx = extract(carrier)
    if ctx is None:
        yield None
        return
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
