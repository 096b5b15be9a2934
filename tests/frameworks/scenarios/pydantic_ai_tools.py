"""Pydantic AI with tool permissions: a ``clerk`` agent with two tools, ``shell_exec`` (the
tenant's tool policy denies it) and ``send_email`` (the policy requires a human's approval).
The one line ``al.instrument()`` installs the Pydantic AI adapter, which checks every function
tool with the Guard before it runs.

Run 1 asks for ``shell_exec``: the tool must not run, the model gets a tool result saying it
was denied, the run ends with an answer. Run 2 asks for ``send_email``: the Guard asks the API
for an approval and waits; the test approves it through the API; the tool runs. The report
says which tools ran and what the model was told.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from pydantic_ai import Agent
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


def build() -> Agent[None, str]:
    model = OpenAIChatModel(
        sc.MODEL,
        provider=OpenAIProvider(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]),
    )
    clerk = Agent(model, name="clerk", instructions=sc.prompt("clerk"))
    clerk.tool_plain(sc.shell_exec)
    clerk.tool_plain(sc.send_email)
    return clerk


def main() -> None:
    sc.setup()
    clerk = build()

    def run(prompt: str) -> tuple[str, list[str]]:
        result = clerk.run_sync(prompt)
        returns = [
            str(part.content)
            for message in result.all_messages()
            for part in getattr(message, "parts", [])
            if isinstance(part, ToolReturnPart)
        ]
        return result.output, returns

    sc.tool_runs(run)


if __name__ == "__main__":
    main()
