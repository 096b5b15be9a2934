"""Haystack with tool permissions: a pipeline whose one component, ``clerk``, is an ``Agent`` on
an OpenAI chat generator with two function tools, ``shell_exec`` (the tenant's tool policy
denies it) and ``send_email`` (the policy requires a human's approval). The one line
``al.instrument()`` installs the Haystack adapter, which checks every tool with the Guard
before it runs.

Run 1 asks for ``shell_exec``: the tool must not run, the model gets an error tool result saying
it was denied, the run ends with an answer. Run 2 asks for ``send_email``: the Guard asks the
API for an approval and waits; the test approves it through the API; the tool runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from haystack import Pipeline
from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage
from haystack.tools import create_tool_from_function


def clerk_run(prompt: str) -> tuple[str, list[str]]:
    pipe = Pipeline()
    pipe.add_component(
        "clerk",
        Agent(
            chat_generator=OpenAIChatGenerator(model=sc.MODEL),  # OPENAI_BASE_URL / OPENAI_API_KEY
            system_prompt=sc.prompt("clerk"),
            tools=[create_tool_from_function(sc.shell_exec), create_tool_from_function(sc.send_email)],
        ),
    )
    messages = pipe.run({"clerk": {"messages": [ChatMessage.from_user(prompt)]}})["clerk"]["messages"]
    returns = [str(r.result) for m in messages for r in m.tool_call_results]
    return str(messages[-1].text), returns


def main() -> None:
    sc.setup()
    sc.tool_runs(clerk_run)


if __name__ == "__main__":
    main()
