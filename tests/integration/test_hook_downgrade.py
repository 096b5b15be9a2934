"""Downgrade end to end: a token budget with a soft downgrade threshold, applied with the CLI,
the real streams worker and broker, and the openai SDK hooked by ``al.instrument()`` against
the fake provider. Once an agent's spend crosses the threshold its next calls go out with
the cheaper model (at the provider and in the recorded usage); another agent keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
from _streams_harness import start_worker
from fakeprovider import FakeProvider, FixedUsage
from test_hook_sdk import MSGS, usage_events

from agentledger import collectors as al
from agentledger.collectors import Guard

# 1,200 tokens a call: the downgrade at 20 % of 10,000 is crossed by the second call.
POLICY = """
policies:
  - policy_id: agent-tokens
    selector: {tenant: acme, per: agent}
    window: 24h
    unit: tokens
    limit: 10000
    thresholds:
      - {at: 0.2, action: downgrade, model: gpt-4o-mini, from_models: ["gpt-4o"]}
    hard_action: kill
"""


def apply_policies(topics: Any, tmp_path: Path) -> None:
    f = tmp_path / "policies.yaml"
    f.write_text(POLICY)
    env = dict(
        os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix
    )
    subprocess.run([sys.executable, "-m", "agentledger", "policies", "apply", str(f)], env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


def test_an_agent_over_its_soft_threshold_calls_the_cheaper_model(topics: Any, tmp_path: Path) -> None:
    worker = start_worker(topics, tmp_path / "worker")
    guard = Guard(topics.bootstrap, topics.control)
    try:
        apply_policies(topics, tmp_path)
        assert guard.wait_ready(30)
        al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5)
        al.instrument(guard=guard)
        with FakeProvider(usage=FixedUsage(input_tokens=1000, output_tokens=200)) as fake:
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")

            def call(agent: str) -> str:
                with al.span("turn", kind="agent", agent=agent):
                    reply = client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                return reply.model

            assert [call("planner"), call("planner"), call("coder")] == ["gpt-4o"] * 3
            assert al.flush(10)
            deadline = time.monotonic() + 30
            while guard.downgrade("gpt-4o", "acme", "planner") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4o-mini", worker.log.read_text()[
                -2000:
            ]
            assert [call("planner"), call("planner"), call("coder")] == [
                "gpt-4o-mini",
                "gpt-4o-mini",
                "gpt-4o",
            ]
            sent = [body["model"] for _, body in fake.requests]
        assert sent == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
        assert al.flush(10)
        events = usage_events(topics.bootstrap, topics.events, expect=6)
        assert len(events) == 6
        seen = sorted((e.agent, e.model, e.attributes.get("agentledger.downgraded_from")) for e in events)
        assert seen == [
            ("coder", "gpt-4o", None), ("coder", "gpt-4o", None),
            ("planner", "gpt-4o", None), ("planner", "gpt-4o", None),
            ("planner", "gpt-4o-mini", "gpt-4o"), ("planner", "gpt-4o-mini", "gpt-4o"),
        ]  # fmt: skip
    finally:
        al.uninstrument()
        al.shutdown(5)
        guard.close()
        worker.kill()
