"""LangChain with tool permissions: a ``clerk`` agent (``create_agent``) with two ``@tool``
functions, ``shell_exec`` (the tenant's tool policy denies it) and ``send_email`` (the policy
requires a human's approval). The one line ``al.instrument()`` installs the LangChain adapter,
which checks each tool with the Guard before it runs.

Run 1 asks for ``shell_exec``: the tool must not run, the model gets a ``ToolMessage`` saying it
was denied, the run ends with an answer. Run 2 asks for ``send_email``: the Guard asks the API
for an approval and waits; the test approves it through the API; the tool runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


def main() -> None:
    sc.setup()
    clerk = create_agent(
        ChatOpenAI(model=sc.MODEL),
        tools=[tool(sc.shell_exec), tool(sc.send_email)],
        system_prompt=sc.prompt("clerk"),
        name="clerk",
    )

    def run(prompt: str) -> tuple[str, list[str]]:
        messages = clerk.invoke({"messages": [("user", prompt)]})["messages"]
        returns = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
        return str(messages[-1].content), returns

    sc.tool_runs(run)


if __name__ == "__main__":
    main()
