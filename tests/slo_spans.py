"""Synthetic LLM spans for the SLO tests (unit and integration): one builder, one call each."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from agentledger.events import SpanEvent, SpanKind, SpanStatus

_RUN = uuid.uuid4().hex[:8]  # ids stay unique across runs on a shared broker
_seq = itertools.count(1)


def llm_span(
    ts: float,
    latency_ms: float,
    *,
    ok: bool = True,
    tenant: str = "acme",
    agent: str = "planner",
    agent_version: str | None = "v1",
    provider: str = "openai",
    model: str = "gpt-4o",
) -> SpanEvent:
    """One LLM call that ended at ``ts`` (epoch seconds) after ``latency_ms``, OK or in error."""
    n = next(_seq)
    end = datetime.fromtimestamp(ts, UTC)
    return SpanEvent(
        event_id=f"slo-{_RUN}-{n:012d}", ts=end, tenant=tenant, agent=agent, agent_version=agent_version,
        trace_id=f"{_RUN}{n:024x}", span_id=f"{n:016x}", name=f"chat {model}", kind=SpanKind.LLM,
        start=end - timedelta(milliseconds=latency_ms), end=end,
        status=SpanStatus.OK if ok else SpanStatus.ERROR, provider=provider, model=model,
    )  # fmt: skip
