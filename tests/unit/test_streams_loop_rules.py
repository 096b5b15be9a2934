"""Loop detector rules and the policies file (our keys; other helpers' keys ignored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agentledger.errors import ConfigError
from agentledger.events import QualityEvent, ToolCallEvent, UsageEvent
from agentledger.streams.policyfile import LoopSettings, load_policy_file
from agentledger.streams.worker.loops import LoopDetector

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
_n = iter(range(1_000_000))


def common(trace: str, s: float) -> dict[str, object]:
    return {"event_id": f"ev-{next(_n):08d}", "ts": T0 + timedelta(seconds=s), "tenant": "acme", "agent": "a",
            "trace_id": trace, "span_id": "b" * 16}  # fmt: skip


def tool(trace: str, s: float, args: str = "f" * 16) -> ToolCallEvent:
    return ToolCallEvent(tool="search", args_hash=args, **common(trace, s))  # type: ignore[arg-type]


def llm(trace: str, s: float, tokens: int = 100) -> UsageEvent:
    return UsageEvent(
        provider="openai", model="gpt-4o", input_tokens=tokens, output_tokens=0, **common(trace, s)
    )  # type: ignore[arg-type]


def test_same_call_n_times_within_m_seconds() -> None:
    d = LoopDetector(LoopSettings(repeat_calls=3, repeat_window_s=10))
    assert d.observe(tool("1" * 32, 0)) is None
    assert d.observe(tool("1" * 32, 11)) is None  # the first one fell out of the window
    assert d.observe(tool("2" * 32, 12)) is None  # another trace
    assert d.observe(tool("1" * 32, 12)) is None
    v = d.observe(tool("1" * 32, 13))
    assert v is not None and v.trace_id == "1" * 32 and "3 times" in v.reason
    assert d.observe(tool("1" * 32, 14)) is None  # one verdict per trace


def test_llm_call_rate_and_token_velocity() -> None:
    d = LoopDetector(LoopSettings(max_llm_calls_per_min=5, max_tokens_per_min=10**9))
    verdicts = [d.observe(llm("3" * 32, i)) for i in range(6)]
    assert verdicts[:5] == [None] * 5 and verdicts[5] is not None
    d = LoopDetector(LoopSettings(max_tokens_per_min=1000))
    assert d.observe(llm("4" * 32, 0, 600)) is None
    assert d.observe(llm("4" * 32, 61, 600)) is None  # a minute later: the first is gone
    assert d.observe(llm("4" * 32, 62, 600)) is not None


def test_spend_without_new_output() -> None:
    d = LoopDetector(LoopSettings(no_progress_usd=Decimal("1"), no_progress_calls=3))
    t = "5" * 32
    assert d.observe(llm(t, 0), Decimal("0.5")) is None
    assert d.observe(llm(t, 1), Decimal("0.5")) is None
    q = QualityEvent(metric="m", score=1.0, **common(t, 2))  # type: ignore[arg-type]
    assert d.observe(q) is None  # output: the counters restart
    assert d.observe(llm(t, 3), Decimal("0.5")) is None
    assert d.observe(tool(t, 3, "a" * 16)) is None  # new arguments are output too
    assert [d.observe(llm(t, 4 + i), Decimal("0.5")) is None for i in range(3)] == [True, True, False]


def test_policy_file_ignores_other_helpers_keys(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "policies:\n  - {policy_id: a, window: 1h, limit: 5}\nloops: {repeat_calls: 7}\nalerts: {x: 1}\n"
    )
    policies, loops = load_policy_file(f)
    assert [p.policy_id for p in policies] == ["a"] and loops.repeat_calls == 7
    f.write_text("policies:\n  - {policy_id: a, window: 2h, limit: 5}\n")
    with pytest.raises(ConfigError, match="window"):
        load_policy_file(f)
    f.write_text("loops: {repeat_calls: 1}\n")
    with pytest.raises(ConfigError, match="repeat_calls"):
        load_policy_file(f)


def test_example_policies_file_is_valid() -> None:
    policies, loops = load_policy_file(Path(__file__).resolve().parents[2] / "examples" / "policies.yaml")
    assert len(policies) >= 3 and loops.enabled
