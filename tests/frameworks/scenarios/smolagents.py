"""smolagents: a manager agent with a managed agent (``researcher``), both ToolCallingAgents
on ``OpenAIServerModel``. The one line: ``al.instrument()``.

Phase 1 runs the manager twice (each run: the manager delegates to researcher, then gives
its final answer). Then it waits until the control plane has killed ``researcher`` and
downgraded ``manager`` (the test's budgets) and runs the manager again (researcher's call must be stopped, the manager
goes on), then researcher directly (its author sees ``AgentKilled``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# _scenario sits apart: on sys.path, a sibling scenario (smolagents.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from smolagents import OpenAIServerModel, ToolCallingAgent

from agentledger import collectors as al


def instrument_otel(provider: object) -> None:
    from openinference.instrumentation.smolagents import SmolagentsInstrumentor

    SmolagentsInstrumentor().instrument(tracer_provider=provider)


def build() -> tuple[ToolCallingAgent, ToolCallingAgent]:
    model = OpenAIServerModel(
        model_id=sc.MODEL, api_base=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]
    )
    researcher = ToolCallingAgent(
        tools=[], model=model, name="researcher", description="Finds facts.", instructions=sc.prompt("researcher"),
        max_steps=2, verbosity_level=0,
    )  # fmt: skip
    manager = ToolCallingAgent(
        tools=[], model=model, managed_agents=[researcher], name="manager",
        instructions=sc.prompt("manager") + " Ask researcher first: [[call:researcher]]", max_steps=3,
        verbosity_level=0,
    )  # fmt: skip
    return manager, researcher


def main() -> None:
    guard = sc.setup(instrument_otel)
    manager, researcher = build()
    observed: dict[str, object] = {"phase1": [str(manager.run("What is 2 + 2?")) for _ in range(2)]}
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "manager")
    observed["phase2"] = str(manager.run("What is 2 + 2?"))
    observed["phase2_steps_with_errors"] = [
        str(getattr(step, "error", None))[:200]
        for step in manager.memory.steps
        if getattr(step, "error", None)
    ]
    try:
        researcher.run("What is 2 + 2?")
        observed["direct_error"] = None
    except al.AgentKilled as exc:
        observed["direct_error"] = sc.error(exc)
    except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced instead
        observed["direct_error"] = sc.error(exc)
    sc.report(**observed)


if __name__ == "__main__":
    main()
