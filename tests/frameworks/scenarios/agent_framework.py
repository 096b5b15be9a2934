"""Microsoft Agent Framework: two agents (``researcher`` and ``writer``) on the OpenAI Responses
client, run on their own (plain and streamed) and as a workflow of two agent executors. The one
line: ``al.instrument()``.

Phase 1: researcher.run, writer.run(stream=True), then the workflow researcher -> writer. Then
it waits until the control plane has killed ``researcher`` and downgraded ``writer`` (the
test's budgets), and runs the workflow writer -> researcher (the kill must stop researcher's
call), then writer alone again, streamed (it goes on).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# _scenario sits apart: on sys.path, a sibling scenario (crewai.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from agent_framework import Agent, WorkflowBuilder
from agent_framework.openai import OpenAIChatClient

from agentledger import collectors as al


def instrument_otel(provider: object) -> None:
    # the framework's own instrumentation, on the tracer provider the scenario set up
    from agent_framework.observability import enable_instrumentation

    enable_instrumentation()


def build() -> dict[str, Agent]:
    client = OpenAIChatClient(model=sc.MODEL)  # OPENAI_BASE_URL / OPENAI_API_KEY
    return {
        name: Agent(client=client, name=name, instructions=sc.prompt(name))
        for name in ("researcher", "writer")
    }


async def streamed(agent: Agent) -> str:
    text = ""
    async for update in agent.run("What is 2 + 2?", stream=True):
        text += update.text or ""
    return text


async def workflow(agents: dict[str, Agent], first: str, second: str) -> int:
    flow = WorkflowBuilder(start_executor=agents[first]).add_edge(agents[first], agents[second]).build()
    result = await flow.run("What is 2 + 2?")
    return len(result.get_outputs())


async def main() -> None:
    guard = sc.setup(instrument_otel)
    agents = build()
    observed: dict[str, object] = {
        "phase1": [
            (await agents["researcher"].run("What is 2 + 2?")).text,
            await streamed(agents["writer"]),
            await workflow(agents, "researcher", "writer"),
        ]
    }
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "writer")
    try:
        await workflow(agents, "writer", "researcher")
        observed["phase2_error"] = None
    except al.AgentKilled as exc:  # what the agent author catches
        observed["phase2_error"] = sc.error(exc)
    except Exception as exc:  # noqa: BLE001 - reported, so the test can say what surfaced instead
        observed["phase2_error"] = sc.error(exc)
    observed["phase3"] = await streamed(agents["writer"])
    sc.report(**observed)


if __name__ == "__main__":
    asyncio.run(main())
