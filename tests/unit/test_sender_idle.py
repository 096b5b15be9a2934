"""An idle client costs no CPU: once nothing has been sent for ``IDLE_AFTER_S`` the sending
thread sleeps, and the first event after that wakes it and is delivered without waiting for the
next linger. A busy client keeps the linger timer: recording never wakes the thread."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agentledger.collectors import Emitter, MemoryTransport
from agentledger.collectors.sender import IDLE_AFTER_S


def thread_cpu_s(em: Emitter) -> float:
    """CPU seconds used so far by the Emitter's sending thread (its own thread-CPU clock)."""
    ident = em._worker._thread.ident
    assert ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def count_calls(obj: object, name: str) -> list[int]:
    """Count the calls of ``obj.name`` (a method of the real object, still called)."""
    calls = [0]
    real: Callable[..., object] = getattr(obj, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


@pytest.fixture
def mem() -> MemoryTransport:
    return MemoryTransport()


def test_idle_emitter_thread_does_not_wake_up(mem: MemoryTransport) -> None:
    # linger 1 ms: a thread that polled its queue every linger would look ~1,500 times
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=1)
    try:
        em.record_usage("openai", "m", 1, 1)
        assert em.flush(5)
        time.sleep(IDLE_AFTER_S + 0.1)  # nothing sent for IDLE_AFTER_S: it sleeps
        looks = count_calls(em._worker, "_take")
        cpu0 = thread_cpu_s(em)
        time.sleep(1.5)
        cpu = thread_cpu_s(em) - cpu0
        assert looks[0] <= 1, f"the idle sending thread looked at its queue {looks[0]} times"
        assert cpu < 0.03, f"the idle sending thread used {cpu * 1000:.1f} ms of CPU in 1.5 s"
        assert len(mem.events) == 1 and em.stats()["queued"] == 0
    finally:
        em.shutdown(2)


def wait_for(mem: MemoryTransport, count: int) -> list[str]:
    for _ in range(500):  # up to ~5 s, without flush (flush wakes the thread itself)
        if len(mem.events) >= count:
            break
        time.sleep(0.01)
    return [e["event_id"] for e in mem.events]


def test_event_after_a_long_idle_is_delivered_without_flush(mem: MemoryTransport) -> None:
    # a linger of a minute: only the wake-up by the first event after idle delivers it here
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=60_000)
    try:
        time.sleep(1.0)
        first = em.record_usage("openai", "m", 1, 1)
        assert wait_for(mem, 1) == [first]
    finally:
        em.shutdown(2)
    # and after a send, an idle period longer than the linger
    mem = MemoryTransport()
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=300)
    try:
        first = em.record_usage("openai", "m", 1, 1)
        assert em.flush(5)
        time.sleep(IDLE_AFTER_S + 0.3)
        second = em.record_usage("openai", "m", 2, 2)
        assert wait_for(mem, 2) == [first, second]
        stats = em.stats()
        assert (stats["sent"], stats["dropped"], stats["failed"], stats["queued"]) == (2, 0, 0, 0)
    finally:
        em.shutdown(2)


def test_busy_recording_wakes_the_thread_once_not_per_event(mem: MemoryTransport) -> None:
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=200)
    try:
        em.record_usage("openai", "m", 1, 1)
        assert em.flush(5)
        time.sleep(IDLE_AFTER_S + 0.3)  # idle
        wakes = count_calls(em._worker, "_wake_from_idle")
        for i in range(2000):
            em.record_usage("openai", "m", i, 1)
        assert em.flush(5)
        assert len(mem.events) == 2001
        # the first event woke it; the rest found it busy (a stall of the recording thread
        # longer than the 200 ms linger would add one more)
        assert 1 <= wakes[0] <= 3, f"{wakes[0]} wake-ups for 2000 events"
    finally:
        em.shutdown(2)


def test_events_a_few_ms_apart_never_wake_the_thread_from_the_agent_thread(mem: MemoryTransport) -> None:
    """An agent calling its LLM every few ms (or every few hundred): the sending thread keeps
    its linger timer, and recording never wakes it (a wake-up from the recording thread costs
    that thread GIL hand-offs with the woken one)."""
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=20)
    try:
        em.record_usage("openai", "m", 0, 1)
        assert em.flush(5)
        wakes = count_calls(em._worker, "_wake_from_idle")
        for i in range(40):
            time.sleep(0.025)  # longer than the linger, shorter than IDLE_AFTER_S
            em.record_usage("openai", "m", i, 1)
        assert wait_for(mem, 41) and len(mem.events) == 41
        assert wakes[0] == 0, f"{wakes[0]} wake-ups from the recording thread"
    finally:
        em.shutdown(2)


def test_shutdown_while_idle_and_recording_after_it_never_raise(mem: MemoryTransport) -> None:
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=1)
    em.record_usage("openai", "m", 1, 1)
    assert em.flush(5)
    time.sleep(IDLE_AFTER_S + 0.1)  # idle
    assert em.shutdown(2)
    assert not em._worker._thread.is_alive()
    em.record_usage("openai", "m", 1, 1)  # after shutdown: not sent, never an exception
    assert len(mem.events) == 1
