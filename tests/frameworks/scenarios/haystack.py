"""Haystack: a pipeline of two ``Agent`` components (``researcher`` drafts, ``writer`` checks the
draft, streamed), on OpenAI chat generators. The one line: ``al.instrument()``.

Phase 1 runs the pipeline researcher -> writer twice (``run``, then ``run_async``). Then it
waits until the control plane has killed ``researcher`` and downgraded ``writer`` (the test's
budgets), and runs the pipeline writer -> researcher (the kill must stop researcher's call),
then a pipeline whose one component, named writer, is a chat generator used directly (it
goes on, credited to its component name).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# _scenario sits apart: on sys.path, a sibling scenario (crewai.py) would pass for the framework
sys.path.append(str(Path(__file__).parent / "_shared"))
import _scenario as sc
from haystack import Pipeline
from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage

QUESTION = [ChatMessage.from_user("What is 2 + 2?")]


def instrument_otel(provider: object) -> None:
    # Haystack's own tracer (content tracing on: usage rides only inside its JSON blobs)
    from haystack import tracing
    from haystack_integrations.tracing.opentelemetry import OpenTelemetryTracer

    os.environ["HAYSTACK_CONTENT_TRACING_ENABLED"] = "true"
    tracing.tracer.is_content_tracing_enabled = True
    tracing.enable_tracing(OpenTelemetryTracer(provider.get_tracer("haystack")))  # type: ignore[attr-defined]


def agent(name: str, checks: bool) -> Agent:
    return Agent(
        chat_generator=OpenAIChatGenerator(model=sc.MODEL),  # OPENAI_BASE_URL / OPENAI_API_KEY
        system_prompt=sc.prompt(name),
        user_prompt="Check this answer: {{ draft }}" if checks else None,
        streaming_callback=(lambda chunk: None) if checks else None,  # the checker streams
    )


def pipeline(first: str, second: str | None) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component(first, agent(first, checks=False))
    if second is not None:
        pipe.add_component(second, agent(second, checks=True))
        pipe.connect(f"{first}.last_message", f"{second}.draft")
    return pipe


def inputs(first: str, second: str | None) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = {first: {"messages": QUESTION}}
    if second is not None:
        data[second] = {"messages": []}
    return data


def answer(out: dict[str, dict[str, object]], name: str) -> str | None:
    message = out.get(name, {}).get("last_message")
    return message.text if isinstance(message, ChatMessage) else None


def generator_alone(name: str) -> str:
    """A chat generator used directly as a pipeline component: its component name is the agent."""
    pipe = Pipeline()
    pipe.add_component(name, OpenAIChatGenerator(model=sc.MODEL))
    out = pipe.run({name: {"messages": [ChatMessage.from_system(sc.prompt(name)), *QUESTION]}})
    return str(out[name]["replies"][0].text)


def main() -> None:
    guard = sc.setup(instrument_otel)
    observed: dict[str, object] = {
        "phase1": [
            answer(pipeline("researcher", "writer").run(inputs("researcher", "writer")), "writer"),
            answer(
                asyncio.run(pipeline("researcher", "writer").run_async(inputs("researcher", "writer"))),
                "writer",
            ),
        ]
    }
    observed["kill_seen"] = sc.wait_for(guard, "kill", "researcher")
    observed["downgrade_seen"] = sc.wait_for(guard, "downgrade", "writer")
    try:
        pipeline("writer", "researcher").run(inputs("writer", "researcher"))
        observed["phase2_error"] = None
    except Exception as exc:  # noqa: BLE001 - Haystack's PipelineRuntimeError, the AgentKilled its cause
        observed["phase2_error"] = sc.error(exc)
    observed["phase3"] = generator_alone("writer")
    sc.report(**observed)


if __name__ == "__main__":
    main()
