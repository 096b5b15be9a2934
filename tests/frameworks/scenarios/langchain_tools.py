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

RAN: list[str] = []


@tool
def shell_exec(command: str) -> str:
    """Run a shell command."""
    RAN.append("shell_exec")
    return "done"


@tool
def send_email(to: str) -> str:
    """Send an email."""
    RAN.append("send_email")
    return "sent"


def run(agent: object, prompt: str) -> dict[str, object]:
    try:
        out = agent.invoke({"messages": [("user", prompt)]})  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced
        return {"error": sc.error(exc)}
    messages = out["messages"]
    returns = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
    return {"error": None, "output": str(messages[-1].content), "tool_returns": returns, "ran": list(RAN)}


def main() -> None:
    sc.setup()
    clerk = create_agent(
        ChatOpenAI(model=sc.MODEL),
        tools=[shell_exec, send_email],
        system_prompt=sc.prompt("clerk"),
        name="clerk",
    )
    observed: dict[str, object] = {"denied_run": run(clerk, "Clean up. [[call:shell_exec]]")}
    RAN.clear()
    observed["approved_run"] = run(clerk, "Tell Bob. [[call:send_email]]")
    sc.report(**observed)


if __name__ == "__main__":
    main()
