"""The demo's framework agent: acme's ``summarizer``, a real Pydantic AI ``Agent``.

Nothing in it knows about agentledger but the one line: ``al.configure(...)`` +
``al.instrument()``. Its model talks HTTP, through the openai SDK, to the demo's local
OpenAI-compatible provider (``agentledger.demo.provider``, fixed usage, no key, no cost), so
the hook records each call's exact usage under the Pydantic AI agent's own name and obeys the
Guard before each call. The demo gives it a small hard budget: the Guard kills it mid-run and
its next call raises ``AgentKilled`` before any request leaves the process.

Pydantic AI is a dev dependency (``make setup``); without it the demo says so and goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentledger.demo.provider import FakeProvider, FixedUsage

AGENT = "summarizer"
TENANT = "acme"
MODEL = "gpt-4o"
# what the local provider reports for every answer (input_tokens counts the cache reads)
USAGE = FixedUsage(input_tokens=1500, output_tokens=300, cache_read_tokens=500)
PERIOD_S = 1.0  # one summary a second: a modest rate beside the simulated traffic
LABEL = f"{TENANT}/{AGENT} (Pydantic AI)"
MISSING = (
    f"{LABEL} skipped: Pydantic AI is not installed "
    "(make setup, or pip install 'pydantic-ai-slim[openai]==2.68.0')"
)


def available() -> bool:
    return importlib.util.find_spec("pydantic_ai") is not None


@dataclass
class FrameworkResult:
    """What the framework agent did, against what the provider served."""

    available: bool = False
    tenant: str = TENANT
    agent: str = AGENT
    model: str = MODEL
    usage: dict[str, int] = field(default_factory=dict)
    runs: int = 0  # agent runs started
    answered: int = 0  # runs that got their answer
    served: int = 0  # requests the provider served
    served_at_kill: int | None = None  # ... when the first AgentKilled surfaced
    refused: int = 0  # runs stopped by the Guard (AgentKilled) before their call left
    killed_at_s: float | None = None
    kill: str | None = None
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    dropped: int = 0
    failed: int = 0


class FrameworkAgent:
    """Runs the summarizer on its own thread until ``stop`` is set."""

    def __init__(
        self,
        bootstrap: str,
        events_topic: str,
        control_topic: str,
        observe: Callable[[str, str], None],
        now: Callable[[], float],
        stop: threading.Event,
    ) -> None:
        self.bootstrap, self.events_topic, self.control_topic = bootstrap, events_topic, control_topic
        self.observe, self.now, self.stop = observe, now, stop
        self.result = FrameworkResult(available=available(), usage=dict(USAGE.__dict__))
        self.provider: FakeProvider | None = None
        self.guard: Any = None
        self.emitter: Any = None
        self.agent: Any = None
        self.client: Any = None

    def setup(self) -> None:
        """The provider and the one line, before the clock starts (the Guard caught up)."""
        from agentledger import collectors as al

        self.provider = FakeProvider(usage=USAGE).start()
        self.guard = al.Guard(self.bootstrap, control_topic=self.control_topic)
        # The one line (with the demo's per-run topics spelled out: a user's come from the
        # environment). No agent is named here: Pydantic AI's own agent name is the agent.
        self.emitter = al.configure(
            tenant=TENANT, bootstrap=self.bootstrap, topic=self.events_topic, linger_ms=10
        )
        al.instrument(guard=self.guard)
        self.guard.wait_ready(30)
        self.agent, self.client = self._build()

    def _build(self) -> tuple[Any, Any]:
        """A plain Pydantic AI agent; its model is the openai SDK pointed at the local provider."""
        import openai
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        assert self.provider is not None
        client = openai.AsyncOpenAI(base_url=self.provider.openai_base_url, api_key="sk-demo-local")
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
        agent = Agent(model, name=AGENT, instructions="Summarise the research notes in one sentence.")
        return agent, client

    def run(self) -> None:
        """The thread: summaries until ``stop``, then flush and put the SDK back."""
        from agentledger import collectors as al

        assert self.provider is not None and self.emitter is not None and self.guard is not None
        try:
            asyncio.run(self._loop())
        except Exception as exc:  # noqa: BLE001 - the demo goes on, and says why
            self.result.errors.append(f"{type(exc).__name__}: {exc}")
            self.observe("error", f"{LABEL} stopped: {type(exc).__name__}: {exc}")
        finally:
            al.uninstrument()
            self.emitter.flush(15)
            st: dict[str, Any] = self.emitter.stats()
            self.result.sent = int(st.get("sent", 0))
            self.result.dropped = int(st.get("dropped", 0))
            self.result.failed = int(st.get("failed", 0))
            self.emitter.shutdown(5)
            self.guard.close()
            self.result.served = len(self.provider.requests)
            self.provider.stop()

    async def _loop(self) -> None:
        from agentledger import collectors as al

        assert self.provider is not None and self.agent is not None
        agent, client = self.agent, self.client
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                before = len(self.provider.requests)
                self.result.runs += 1
                try:
                    await agent.run("Summarise: revenue up 12%, costs flat, two new customers.")
                    self.result.answered += 1
                except al.AgentKilled as exc:
                    self.result.refused += 1
                    if self.result.kill is None:
                        after = len(self.provider.requests)
                        self.result.kill = f"{type(exc).__name__}: {exc}"
                        self.result.served_at_kill = after
                        self.result.killed_at_s = round(self.now(), 1)
                        left = (
                            "its next call never left the process"
                            if after == before
                            else f"{after - before} request(s) of that run reached the provider"
                        )
                        self.observe("hook", f"{LABEL} killed: {self.result.kill}; {left}")
                except Exception as exc:  # noqa: BLE001 - one failed run does not stop the agent
                    self.result.errors.append(f"{type(exc).__name__}: {exc}")
                    if len(self.result.errors) == 1:  # said once; all are in the outcome
                        self.observe("error", f"{LABEL}: run failed: {type(exc).__name__}: {exc}")
                await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - started)))
                if self.stop.is_set():
                    break
        finally:
            await client.close()
