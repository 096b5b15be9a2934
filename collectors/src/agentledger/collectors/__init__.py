"""agentledger.collectors: the tiny client agents emit through, and the Guard that enforces.

    from agentledger import collectors as al
    al.configure(tenant="acme", agent="planner", bootstrap="localhost:9092")
    with al.span("answer", kind="agent"):
        al.record_usage("openai", "gpt-4o", input_tokens=1200, output_tokens=80, cache_read_tokens=1000)

Recording only enqueues; a daemon thread batches and sends. Nothing here raises into agent
code because telemetry failed. Transports and the Guard load aiokafka only when used.
"""

from __future__ import annotations

from .client import (
    configure,
    flush,
    get_emitter,
    record_quality,
    record_tool_call,
    record_usage,
    shutdown,
    span,
    stats,
)
from .context import SpanContext, attach, current, detach
from .emitter import Emitter, hash_args
from .exceptions import (
    AgentKilled,
    BudgetKilled,
    ControlUnavailable,
    LoopKilled,
    ManualKill,
    Throttled,
    ToolDenied,
)
from .guard import Guard, guarded
from .hook import FailoverUnavailable, Fallback, instrument, uninstrument
from .http import HttpTransport
from .kafka import KafkaTransport
from .keys import CommandKeys, EnvKeys, FileKeys, KeyPool, fingerprint
from .propagation import extract, extracted, inject, traceparent
from .screen_model import LinearDetector, RulesAndModel
from .screen_policy import InjectionBlocked, Screening
from .screening import Detector, RuleDetector, Verdict
from .spans import SpanScope
from .toolcheck import guarded_tool, tool_allowed
from .transport import MemoryTransport, NoOpTransport
from .usage import Usage, usage_from_anthropic, usage_from_openai

__all__ = [
    "AgentKilled",
    "BudgetKilled",
    "CommandKeys",
    "ControlUnavailable",
    "Detector",
    "Emitter",
    "EnvKeys",
    "FailoverUnavailable",
    "Fallback",
    "FileKeys",
    "Guard",
    "HttpTransport",
    "InjectionBlocked",
    "KafkaTransport",
    "KeyPool",
    "LinearDetector",
    "LoopKilled",
    "ManualKill",
    "MemoryTransport",
    "NoOpTransport",
    "RuleDetector",
    "RulesAndModel",
    "Screening",
    "SpanContext",
    "SpanScope",
    "Throttled",
    "ToolDenied",
    "Usage",
    "Verdict",
    "attach",
    "configure",
    "current",
    "detach",
    "extract",
    "extracted",
    "fingerprint",
    "flush",
    "get_emitter",
    "guarded",
    "guarded_tool",
    "hash_args",
    "inject",
    "instrument",
    "record_quality",
    "record_tool_call",
    "record_usage",
    "shutdown",
    "span",
    "stats",
    "tool_allowed",
    "traceparent",
    "uninstrument",
    "usage_from_anthropic",
    "usage_from_openai",
]
