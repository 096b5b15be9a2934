"""A kill already on the control topic when an agent process starts is obeyed by that process's
very first hooked call: the Guard behind ``al.instrument()`` reads the compacted topic before
it answers (at most ``AGENTLEDGER_GUARD_READY_TIMEOUT_S`` from its start)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import command, produce

from agentledger.events import Action, CommandParams, ScopeKind

SCRIPT = textwrap.dedent(
    """
    import sys

    import openai

    from agentledger import collectors as al

    bootstrap, base_url = sys.argv[1], sys.argv[2]
    al.configure(tenant="acme", agent="planner", **({"bootstrap": bootstrap} if bootstrap else {}))
    al.instrument()
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake")
    ask = [{"role": "user", "content": "2 + 2?"}]
    try:
        client.chat.completions.create(model="gpt-4o", messages=ask)
        print("planner: sent")
    except al.AgentKilled as exc:
        print(f"planner: {type(exc).__name__} {exc.command_id}")
    with al.span("turn", kind="agent", agent="coder"):
        client.chat.completions.create(model="gpt-4o", messages=ask)
    print("coder: sent")
    al.flush(10)
    """
)


@pytest.mark.parametrize("found_by", ["environment", "configure"])
def test_a_kill_set_before_the_process_started_stops_its_first_call(
    topics: Any, tmp_path: Path, found_by: str
) -> None:
    kill = command(Action.KILL, CommandParams(kill_reason="budget"), kind=ScopeKind.AGENT, tenant="acme",
                   agent="planner")  # fmt: skip
    produce(topics.bootstrap, topics.control, kill)
    script = tmp_path / "agent.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, AGENTLEDGER_TOPIC_PREFIX=topics.prefix, AGENTLEDGER_HOME=str(tmp_path),
               # the default (5 s) bounds the first read; a loaded shared test machine gets more
               AGENTLEDGER_GUARD_READY_TIMEOUT_S="30")  # fmt: skip
    env.pop("AGENTLEDGER_KAFKA_BOOTSTRAP", None)
    if found_by == "environment":  # the process-wide Guard (get_guard)
        env["AGENTLEDGER_KAFKA_BOOTSTRAP"] = topics.bootstrap
    with FakeProvider() as fake:
        bootstrap = topics.bootstrap if found_by == "configure" else ""
        done = subprocess.run([sys.executable, str(script), bootstrap, fake.openai_base_url], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        sent = len(fake.requests)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"planner: BudgetKilled {kill.command_id}", "coder: sent"]
    assert sent == 1  # the killed agent's call never reached the provider
