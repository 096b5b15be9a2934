"""LangGraph: a supervisor routes work to two agents built with LangChain's ``create_agent``
(``researcher`` and ``writer``), each a node of the graph. The one line: ``al.instrument()``.

Phase 1 runs researcher, writer, researcher, writer. Then it waits until the control plane
has killed ``researcher`` and downgraded ``writer`` (the test's budgets), and runs writer
then researcher (the kill must stop researcher's call), then writer alone again (it goes on,
on the cheaper model).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

# _scenario sits apart: on sys.path, a sibling scenario (smolagents.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from langchain.agents import create_agent
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from agentledger import collectors as al


def instrument_otel(provider: object) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)


class State(MessagesState):
    plan: list[str]


def supervisor(state: State) -> Command[Literal["researcher", "writer", "__end__"]]:
    plan = state["plan"]
    if not plan:
        return Command(goto=END)
    return Command(goto=plan[0], update={"plan": plan[1:]})


def build() -> object:
    graph = StateGraph(State)
    graph.add_node("supervisor", supervisor)
    for name in ("researcher", "writer"):
        # writer streams its answers (the hook asks the stream for its usage and hides that chunk)
        model = ChatOpenAI(model=sc.MODEL, streaming=name == "writer")
        agent = create_agent(model, tools=[], system_prompt=sc.prompt(name), name=name)
        graph.add_node(name, agent)
        graph.add_edge(name, "supervisor")
    graph.add_edge(START, "supervisor")
    return graph.compile()


def run(app: object, plan: list[str]) -> int:
    out = app.invoke({"messages": [("user", "What is 2 + 2?")], "plan": plan})  # type: ignore[attr-defined]
    return len(out["messages"])


def main() -> None:
    guard = sc.setup(instrument_otel)
    app = build()
    observed: dict[str, object] = {
        "phase1_messages": run(app, ["researcher", "writer", "researcher", "writer"])
    }
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "writer")
    try:
        run(app, ["writer", "researcher"])
        observed["phase2_error"] = None
    except al.AgentKilled as exc:  # what the agent author catches: LangGraph re-raises it as is
        observed["phase2_error"] = sc.error(exc)
    except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced instead
        observed["phase2_error"] = sc.error(exc)
    observed["phase3_messages"] = run(app, ["writer"])
    sc.report(**observed)


if __name__ == "__main__":
    main()
