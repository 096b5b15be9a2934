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


def main() -> None:
    sc.setup()
    model = OpenAIServerModel(
        model_id=sc.MODEL, api_base=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]
    )
    tools = [tool(sc.shell_exec), tool(sc.send_email)]

    def run(prompt: str) -> tuple[str, list[str]]:
        clerk = ToolCallingAgent(
            tools=tools, model=model, name="clerk", instructions=sc.prompt("clerk"), max_steps=3,
            verbosity_level=0,
        )  # fmt: skip
        output = clerk.run(prompt)
        returns = [
            str(step.observations)
            for step in clerk.memory.steps
            if getattr(step, "observations", None) and getattr(step, "tool_calls", None)
            and not any(c.name == "final_answer" for c in step.tool_calls)
        ]  # fmt: skip
        return str(output), returns

    sc.tool_runs(run)


if __name__ == "__main__":
    main()
