"""The CrewAI / Agent Framework / Haystack adapters' shared piece (``frameworks._scope``): the
agent a wrapped framework method names is the caller the hook resolves while it runs, and
only then; ``uninstall`` puts every method back; a kill wrapped by a framework is found."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agentledger import collectors as al
from agentledger.collectors import naming
from agentledger.collectors.exceptions import BudgetKilled
from agentledger.collectors.frameworks._scope import AgentScope, stop_inside
from agentledger.collectors.transport import MemoryTransport


class Crewish:
    """A framework's agent: ``role`` names it; ``work`` calls the provider, ``run`` is async,
    ``start`` returns a coroutine that does the work when awaited (Agent Framework's run)."""

    def __init__(self, role: str | None, inner: Crewish | None = None) -> None:
        self.role = role
        self.inner = inner

    def work(self) -> list[str]:
        here = [naming.resolve(al.get_emitter()).agent]
        return (
            here
            + (self.inner.work() if self.inner is not None else [])
            + [naming.resolve(al.get_emitter()).agent]
        )

    async def run(self) -> str:
        await asyncio.sleep(0)
        return naming.resolve(al.get_emitter()).agent

    def start(self) -> Any:
        return self.run()


def role(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    return agent.role  # type: ignore[no-any-return]


@pytest.fixture
def scope() -> Iterator[AgentScope]:
    al.configure(tenant="acme", transport=MemoryTransport())
    originals = dict(vars(Crewish))
    s = AgentScope("test")
    for method in ("work", "run", "start"):
        s.wrap(Crewish, method, role)
    s.install()
    yield s
    s.uninstall()
    assert {k: vars(Crewish)[k] for k in ("work", "run", "start")} == {
        k: originals[k] for k in ("work", "run", "start")
    }
    al.shutdown(1)


def test_the_wrapped_agent_is_the_caller_inside_and_an_unnamed_inner_one_keeps_it(scope: AgentScope) -> None:
    assert Crewish("researcher", inner=Crewish(None)).work() == ["researcher"] * 4
    assert Crewish("researcher", inner=Crewish("writer")).work() == [
        "researcher",
        "writer",
        "writer",
        "researcher",
    ]
    assert naming.resolve(al.get_emitter()).agent == al.get_emitter().agent  # outside: the configured default


def test_async_and_awaitable_returning_methods_keep_the_agent_until_awaited(scope: AgentScope) -> None:
    async def both() -> tuple[str, str]:
        return await Crewish("writer").run(), await Crewish("planner").start()

    assert asyncio.run(both()) == ("writer", "planner")


def test_patch_on_an_object_is_removed_by_uninstall() -> None:
    s = AgentScope("test-object")
    thing = Crewish("x")
    original = s.patch(thing, "work", lambda: ["patched"])
    assert thing.work() == ["patched"] and original.__func__ is Crewish.work
    s.uninstall()
    assert "work" not in vars(thing)


def test_a_kill_wrapped_in_a_frameworks_error_is_found() -> None:
    kill = BudgetKilled("agentledger agent/acme/researcher killed", command_id="c1")
    try:
        try:
            raise kill
        except BudgetKilled as exc:
            raise RuntimeError("chat client failed") from exc
    except RuntimeError as wrapped:
        assert stop_inside(wrapped) is kill
    assert stop_inside(RuntimeError("no kill inside")) is None
