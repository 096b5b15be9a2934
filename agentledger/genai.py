"""OpenTelemetry GenAI spans -> contract events: the ONE mapping shared by the in-process
bridge (``agentledger.collectors.otel``) and the API's OTLP endpoint (``agentledger.api``).

Input is a neutral ``OtelSpan`` (both sides convert to it: the SDK's ReadableSpan in-process,
OTLP protobuf/JSON in the API). See ../shared/OTEL_MAPPING.md for the attribute variants and
the traps (usage counted on LLM spans only, duplicate spans, cached tokens inside or outside
the input count, which agent, never storing message content).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentledger.wire import AnyEvent


@dataclass(slots=True)
class OtelSpan:
    """A finished span, independent of where it came from."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    status_error: bool = False
    error_type: str | None = None
    resource: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class MappingDefaults:
    """What to use when the spans do not say (tenant is never on a span)."""

    tenant: str = "default"
    agent: str = "unknown"
    agent_version: str | None = None
    workflow: str | None = None


def spans_to_events(spans: Sequence[OtelSpan], defaults: MappingDefaults) -> list[AnyEvent]:
    """Map a batch of spans (ideally a whole trace or export batch) to contract events.

    Implemented by the collectors' OpenTelemetry bridge work (issue 3).
    """
    raise NotImplementedError
