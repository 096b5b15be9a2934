"""smolagents with tool permissions: a ``clerk`` ToolCallingAgent with two ``@tool`` functions,
``shell_exec`` (the tenant's tool policy denies it) and ``send_email`` (the policy requires a
human's approval). The one line ``al.instrument()`` installs the smolagents adapter, which
checks each tool call with the Guard before the tool runs.

Run 1 asks for ``shell_exec``: the tool must not run, the model gets an observation saying it
was denied, the run ends with an answer. Run 2 asks for ``send_email``: the Guard asks the API
for an approval and waits; the test approves it through the API; the tool runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from smolagents import OpenAIServerModel, ToolCallingAgent, tool

RAN: list[str] = []


@tool
def shell_exec(command: str) -> str:
    """Run a shell command.

    Args:
        command: The command line.
    """
    RAN.append("shell_exec")
    return "done"


@tool
def send_email(to: str) -> str:
    """Send an email.

    Args:
        to: Who gets it.
    """
    RAN.append("send_email")
    return "sent"


def run(agent: ToolCallingAgent, prompt: str) -> dict[str, object]:
    try:
        output = agent.run(prompt)
    except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced
        return {"error": sc.error(exc)}
    returns = [
        str(step.observations)
        for step in agent.memory.steps
        if getattr(step, "observations", None) and getattr(step, "tool_calls", None)
        and not any(c.name == "final_answer" for c in step.tool_calls)
    ]  # fmt: skip
    return {"error": None, "output": str(output), "tool_returns": returns, "ran": list(RAN)}


def main() -> None:
    sc.setup()
    model = OpenAIServerModel(
        model_id=sc.MODEL, api_base=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]
    )

    def clerk() -> ToolCallingAgent:
        return ToolCallingAgent(
            tools=[shell_exec, send_email], model=model, name="clerk", instructions=sc.prompt("clerk"),
            max_steps=3, verbosity_level=0,
        )  # fmt: skip

    observed: dict[str, object] = {"denied_run": run(clerk(), "Clean up. [[call:shell_exec]]")}
    RAN.clear()
    observed["approved_run"] = run(clerk(), "Tell Bob. [[call:send_email]]")
    sc.report(**observed)


if __name__ == "__main__":
    main()
