"""Framework adapters behind ``al.instrument()``: what the provider-SDK hook cannot see by
itself (which of a framework's agents is calling, how to stop it cleanly).

``ADAPTERS`` maps a framework's import name to the adapter module here. An adapter is loaded
only when its framework is installed, and exposes ``install() -> bool`` (idempotent) and
``uninstall() -> None``. A failing adapter is logged; it never breaks ``instrument()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

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
