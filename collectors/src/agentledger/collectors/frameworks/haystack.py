"""Haystack: which agent an LLM call belongs to.

In Haystack an agent (an ``Agent`` component, or a chat generator used directly) is named by
its component name in the pipeline: ``pipe.add_component("researcher", Agent(...))``. Every
component run goes through Haystack's tracer (``haystack.component.run``, tagged
``haystack.component.name``) whether tracing is on or not; the adapter wraps the global
tracer's ``trace`` so the running component's name is the current agent meanwhile. It keeps
working when tracing is turned on later (``enable_tracing`` replaces the tracer *inside* the
global one) and for ``AsyncPipeline`` (components in tasks, sync ones in ``to_thread``).

An ``Agent`` run on its own, outside a pipeline, has no name: its calls go to the agent of an
enclosing ``al.span``, else the configured one (or the OpenTelemetry rules).

Haystack's own tracer records usage only inside JSON content blobs, and only with content
tracing on, so over OpenTelemetry alone its calls are not priced; with the hook they are
priced exactly from the provider's response. A kill inside a pipeline reaches the caller of
``Pipeline.run`` as Haystack's ``PipelineRuntimeError`` (it names the component) whose
``__cause__`` is the ``AgentKilled``; an ``Agent`` run on its own raises ``AgentKilled``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._scope import AgentScope

SCOPE = AgentScope("haystack")
_COMPONENT_RUN = "haystack.component.run"
_NAME_TAG = "haystack.component.name"


def install() -> bool:
    from haystack import tracing

    proxy = tracing.tracer  # the global ProxyTracer every component run goes through
    original = proxy.trace
    var = SCOPE.var

    @contextlib.contextmanager
    def trace(
        operation_name: str, tags: dict[str, Any] | None = None, parent_span: Any = None
    ) -> Iterator[Any]:
        name = tags.get(_NAME_TAG) if operation_name == _COMPONENT_RUN and tags else None
        with original(operation_name, tags=tags, parent_span=parent_span) as span:
            if not name:
                yield span
                return
            token = var.set(str(name))
            try:
                yield span
            finally:
                var.reset(token)

    SCOPE.patch(proxy, "trace", trace)
    SCOPE.install()
    return True


def uninstall() -> None:
    SCOPE.uninstall()
