"""Framework adapters behind ``al.instrument()``: what the provider-SDK hook cannot see by
itself (which of a framework's agents is calling, how to stop it cleanly).

``ADAPTERS`` maps a framework's import name to the adapter module here. An adapter is loaded
only when its framework is installed, and exposes ``install() -> bool`` (idempotent) and
``uninstall() -> None``; it registers its "which agent is running" with
``naming.add_agent_source``. A failing adapter is logged; it never breaks ``instrument()``.

``mark_hooked_call()`` (called by the hook for each call it will record) marks the
framework's OpenTelemetry LLM span of that call (``genai.HOOKED_CALL``) so the OTLP mapping
does not count its usage a second time: the current span when it is an LLM span, or the span
an adapter finds (``add_llm_span_source``: LangChain's OpenInference spans are never current).
Spans an instrumentation starts *inside* the call (OpenInference's span of the openai SDK's
request, under CrewAI) are marked by ``naming``'s open-span processor (``recording_call``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from agentledger.events import SpanKind
from agentledger.genai import HOOKED_CALL, _kind

from .. import naming

log = logging.getLogger("agentledger.collectors")

# framework import name -> adapter module (agentledger.collectors.frameworks.<module>)
ADAPTERS: dict[str, str] = {
    "langchain_core": "langchain",
    "pydantic_ai": "pydantic_ai",
    "smolagents": "smolagents",
    "crewai": "crewai",
    "agent_framework": "agent_framework",
    "haystack": "haystack",
}

_INSTALLED: dict[str, object] = {}
_LLM_SPAN_SOURCES: list[Callable[[], Any]] = []


def add_llm_span_source(source: Callable[[], Any]) -> None:
    """Register an adapter's "the OpenTelemetry LLM span of the call being made" (or None)."""
    if source not in _LLM_SPAN_SOURCES:
        _LLM_SPAN_SOURCES.append(source)


def remove_llm_span_source(source: Callable[[], Any]) -> None:
    if source in _LLM_SPAN_SOURCES:
        _LLM_SPAN_SOURCES.remove(source)


def mark_hooked_call() -> None:
    """Mark the framework's LLM span of the call the hook is about to send (see above)."""
    if not naming._OTEL.load():
        return
    try:
        span = None
        for source in _LLM_SPAN_SOURCES:
            span = source()
            if span is not None:
                break
        if span is None:
            current = naming._OTEL.get_current_span()
            # is_recording() first: with no span active (the usual case) it is False at once,
            # and the kind rules (a few µs) are not run for a span that cannot be marked.
            if current.is_recording() and _kind(getattr(current, "attributes", None) or {}) is SpanKind.LLM:
                span = current
        if span is not None and span.is_recording():
            span.set_attribute(HOOKED_CALL, True)
    except Exception:  # telemetry never breaks the agent's call
        log.debug("agentledger: could not mark the framework's LLM span", exc_info=True)


def _adapter(module: str) -> object | None:
    name = f"{__name__}.{module}"
    if importlib.util.find_spec(name) is None:  # no adapter for it (yet)
        return None
    return importlib.import_module(name)


def install() -> list[str]:
    """Install the adapter of every installed framework; returns the frameworks adapted."""
    for framework, module in ADAPTERS.items():
        if framework in _INSTALLED:
            continue
        try:
            if importlib.util.find_spec(framework) is None:
                continue
            adapter = _adapter(module)
            if adapter is not None and adapter.install():  # type: ignore[attr-defined]
                _INSTALLED[framework] = adapter
        except Exception:  # an adapter must never break instrument()
            log.exception(
                "agentledger: the %s adapter could not be installed; its calls are still hooked", framework
            )
    return sorted(_INSTALLED)


def uninstall() -> None:
    for framework, adapter in list(_INSTALLED.items()):
        try:
            adapter.uninstall()  # type: ignore[attr-defined]
        except Exception:
            log.exception("agentledger: the %s adapter could not be removed", framework)
        del _INSTALLED[framework]


def installed() -> list[str]:
    return sorted(_INSTALLED)
