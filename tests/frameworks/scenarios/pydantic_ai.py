"""Pydantic AI: a ``manager`` agent (``OpenAIChatModel``) that delegates to a ``researcher``
agent (``AnthropicModel``, which calls the anthropic SDK's ``beta.messages``) from a tool
(agent delegation). The one line: ``al.instrument()``.

Phase 1 runs the manager twice with a question it delegates. Then it waits until the
control plane has killed ``researcher`` and downgraded ``manager`` (the test's budgets) and runs the manager on a
delegated question again (the kill stops researcher's call and surfaces from the run), then
on a question it answers itself (the manager goes on).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# _scenario sits apart: on sys.path, a sibling scenario (smolagents.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from agentledger import collectors as al

DELEGATED = "What is 2 + 2? [[call:ask_researcher]]"
CLAUDE = "claude-sonnet-4-5"


def instrument_otel(provider: object) -> None:
    from pydantic_ai.models.instrumented import InstrumentationSettings

    Agent.instrument_all(InstrumentationSettings(tracer_provider=provider))  # type: ignore[arg-type]


def build() -> Agent[None, str]:
    model = OpenAIChatModel(
        sc.MODEL,
        provider=OpenAIProvider(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]),
    )
    claude = AnthropicModel(
        CLAUDE,
        provider=AnthropicProvider(
            base_url=os.environ["ANTHROPIC_BASE_URL"], api_key=os.environ["ANTHROPIC_API_KEY"]
        ),
    )
    researcher = Agent(claude, name="researcher", instructions=sc.prompt("researcher"))
    manager = Agent(model, name="manager", instructions=sc.prompt("manager"))

    @manager.tool
    async def ask_researcher(ctx: RunContext[None], question: str) -> str:
        """Ask the researcher."""
        return (await researcher.run(question, usage=ctx.usage)).output

    return manager


def main() -> None:
    guard = sc.setup(instrument_otel)
    manager = build()
    observed: dict[str, object] = {"phase1": [manager.run_sync(DELEGATED).output for _ in range(2)]}
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "manager")
    try:
        manager.run_sync(DELEGATED)
        observed["phase2_error"] = None
    except al.AgentKilled as exc:
        observed["phase2_error"] = sc.error(exc)
    except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced instead
        observed["phase2_error"] = sc.error(exc)
    observed["phase3"] = manager.run_sync("What is 2 + 2?").output
    sc.report(**observed)


if __name__ == "__main__":
    main()
