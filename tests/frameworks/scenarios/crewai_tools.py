"""CrewAI with tool permissions: a ``clerk`` agent with two ``@tool`` functions, ``shell_exec``
(the tenant's tool policy denies it) and ``send_email`` (the policy requires a human's
approval). The one line ``al.instrument()`` installs the CrewAI adapter, whose tool hook checks
each tool call with the Guard before the tool runs.

Run 1 asks for ``shell_exec``: the tool must not run, the agent gets CrewAI's "blocked" result
and the crew ends with an answer. Run 2 asks for ``send_email``: the Guard asks the API for an
approval and waits; the test approves it through the API; the tool runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # no calls home from the test
os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from crewai import LLM, Agent, Crew, Task
from crewai.hooks.tool_hooks import register_after_tool_call_hook, unregister_after_tool_call_hook
from crewai.tools import tool


def run(prompt: str) -> tuple[str, list[str]]:
    returns: list[str] = []

    def seen(ctx: object) -> None:
        returns.append(str(getattr(ctx, "tool_result", "")))

    llm = LLM(model=sc.MODEL, base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
    clerk = Agent(role="clerk", goal="Do the task.", backstory=sc.prompt("clerk"), llm=llm,
                  tools=[tool("shell_exec")(sc.shell_exec), tool("send_email")(sc.send_email)],
                  verbose=False, max_iter=3)  # fmt: skip
    task = Task(description=prompt, expected_output="A short answer.", agent=clerk)
    register_after_tool_call_hook(seen)
    try:
        output = Crew(agents=[clerk], tasks=[task], verbose=False).kickoff()
    finally:
        unregister_after_tool_call_hook(seen)
    return str(output), returns


def main() -> None:
    sc.setup()
    sc.tool_runs(run)


if __name__ == "__main__":
    main()
