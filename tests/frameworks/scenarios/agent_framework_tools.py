"""Microsoft Agent Framework with tool permissions: a ``clerk`` agent on the OpenAI chat
completions client with two function tools, ``shell_exec`` (the tenant's tool policy denies
it) and ``send_email`` (the policy requires a human's approval). The one line
``al.instrument()`` installs the Agent Framework adapter, which checks every function tool with
the Guard before it runs.

Run 1 asks for ``shell_exec``: the tool must not run, the model gets a function result saying
it was denied, the run ends with an answer. Run 2 asks for ``send_email``: the Guard asks the
API for an approval and waits; the test approves it through the API; the tool runs.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from agent_framework import Agent, tool
from agent_framework.openai import OpenAIChatCompletionClient


async def clerk_run(prompt: str) -> tuple[str, list[str]]:
    clerk = Agent(
        client=OpenAIChatCompletionClient(model=sc.MODEL),  # OPENAI_BASE_URL / OPENAI_API_KEY
        name="clerk",
        instructions=sc.prompt("clerk"),
        tools=[tool(sc.shell_exec), tool(sc.send_email)],
    )
    result = await clerk.run(prompt)
    returns = [
        "".join(str(item.text) for item in content.items or [] if item.type == "text")
        for message in result.messages
        for content in message.contents
        if content.type == "function_result"
    ]
    return result.text, returns


def main() -> None:
    sc.setup()
    sc.tool_runs(lambda prompt: asyncio.run(clerk_run(prompt)))


if __name__ == "__main__":
    main()
