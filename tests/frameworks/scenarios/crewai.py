"""CrewAI: a crew of two agents (roles ``researcher`` and ``writer``), each task done by one of
them, on CrewAI's native OpenAI LLM (the openai SDK). The one line: ``al.instrument()``.

Phase 1 runs tasks for researcher, writer, researcher, writer. Then it waits until the
control plane has killed ``researcher`` and downgraded ``writer`` (the test's budgets), and
runs a crew whose tasks go to writer then researcher (the kill must stop researcher's call: ``crew.kickoff()`` raises
``AgentKilled``), then writer alone again (it goes on).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # no calls home from the test
os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

# _scenario sits apart: on sys.path, a sibling scenario (crewai.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from crewai import LLM, Agent, Crew, Process, Task

from agentledger import collectors as al


def instrument_otel(provider: object) -> None:
    from openinference.instrumentation.crewai import CrewAIInstrumentor
    from openinference.instrumentation.openai import OpenAIInstrumentor

    CrewAIInstrumentor().instrument(tracer_provider=provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)


def build() -> dict[str, Agent]:
    def llm(stream: bool) -> LLM:
        return LLM(
            model=sc.MODEL,
            base_url=os.environ["OPENAI_BASE_URL"],
            api_key=os.environ["OPENAI_API_KEY"],
            stream=stream,
        )

    return {  # writer streams: a streamed call is priced exactly too
        role: Agent(
            role=role,
            goal="Answer the task.",
            backstory=sc.prompt(role),
            llm=llm(role == "writer"),
            verbose=False,
        )
        for role in ("researcher", "writer")
    }


def run(agents: dict[str, Agent], order: list[str]) -> str:
    tasks = [
        Task(description=f"Step {n}: what is 2 + 2?", expected_output="A number.", agent=agents[role])
        for n, role in enumerate(order, 1)
    ]
    crew = Crew(agents=list(agents.values()), tasks=tasks, process=Process.sequential, verbose=False)
    return str(crew.kickoff())


def main() -> None:
    guard = sc.setup(instrument_otel)
    agents = build()
    observed: dict[str, object] = {"phase1": run(agents, ["researcher", "writer", "researcher", "writer"])}
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "writer")
    try:
        run(agents, ["writer", "researcher"])
        observed["phase2_error"] = None
    except al.AgentKilled as exc:  # what the agent author catches: CrewAI passes it through
        observed["phase2_error"] = sc.error(exc)
    except Exception as exc:  # noqa: BLE001 - reported, so the test can say what surfaced instead
        observed["phase2_error"] = sc.error(exc)
    # CrewAI retries a failed task max_retry_limit times; a kill is not retried (the adapter)
    observed["researcher_retries"] = agents["researcher"]._times_executed
    observed["phase3"] = run(agents, ["writer"])
    sc.report(**observed)


if __name__ == "__main__":
    main()
