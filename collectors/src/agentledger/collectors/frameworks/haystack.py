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

Tool permissions (docs/security.md): ``install`` also wraps ``Tool.invoke`` and
``Tool.invoke_async`` (every tool an ``Agent`` calls: function tools, ``ComponentTool``,
``PipelineTool``...), so each call is checked with the Guard's tool policy before it runs. A
denied tool does not run: it fails as a Haystack tool fails, with a ``ToolInvocationError``
saying agentledger denied it and why (its ``__cause__`` is the ``ToolDenied``). The ``Agent``
gives that text to the model as an error tool result and goes on; with
``raise_on_tool_invocation_failure=True`` the run stops with it, as on any failed tool.
"""

from __future__ import annotations

import contextlib
import functools
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
    _guard_tools()
    SCOPE.install()
    return True


DENIED_PREFIX = "agentledger denied this tool call: "


def _guard_tools() -> None:
    from haystack.tools import Tool
    from haystack.tools.errors import ToolInvocationError

    from agentledger.collectors.exceptions import ToolDenied
    from agentledger.collectors.guard import get_guard

    original_invoke = Tool.__dict__["invoke"]
    original_async = Tool.__dict__["invoke_async"]

    @functools.wraps(original_invoke)
    def invoke(self: Any, **kwargs: Any) -> Any:
        try:
            get_guard().tool(str(self.name), kwargs)
        except ToolDenied as exc:
            raise ToolInvocationError(DENIED_PREFIX + str(exc), tool_name=self.name) from exc
        return original_invoke(self, **kwargs)

    @functools.wraps(original_async)
    async def invoke_async(self: Any, **kwargs: Any) -> Any:
        if getattr(self, "async_function", None) is None:  # Haystack runs invoke (checked) in a thread
            return await original_async(self, **kwargs)
        try:
            await get_guard().atool(str(self.name), kwargs)
        except ToolDenied as exc:
            raise ToolInvocationError(DENIED_PREFIX + str(exc), tool_name=self.name) from exc
        return await original_async(self, **kwargs)

    SCOPE.patch(Tool, "invoke", invoke)
    SCOPE.patch(Tool, "invoke_async", invoke_async)


def uninstall() -> None:
    SCOPE.uninstall()
