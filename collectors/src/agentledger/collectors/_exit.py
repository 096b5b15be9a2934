"""Work that must happen before the interpreter stops threads: drain bridges, flush emitters.

``atexit`` is too late for a client whose sender needs threads: CPython runs ``atexit``
callbacks after ``threading._shutdown()``, which has already shut down
``concurrent.futures`` (so asyncio's ``getaddrinfo`` for a host name such as ``localhost``
fails) and forbids new thread-atexit registrations (``aiokafka``'s producer start registers
one). A script that recorded one event and exited then lost it. CPython's
``threading._register_atexit`` runs callbacks at the start of ``threading._shutdown()``, in
the main thread, before any of that; ``multiprocessing`` children call it too (they never run
``atexit``). Callbacks run in stage order: stage 0 produces events (the OTel bridge drains its
queue), stage 1 flushes emitters.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import logging
import threading
import weakref
from collections.abc import Callable

log = logging.getLogger("agentledger.collectors")

DRAIN, FLUSH = 0, 1
_callbacks: list[tuple[int, Callable[[], object]]] = []
_lock = threading.Lock()
_installed = False


def _run() -> None:
    with _lock:
        todo = sorted(_callbacks, key=lambda item: item[0])
    for _, callback in todo:
        try:
            callback()
        except Exception:
            log.debug("agentledger exit hook failed", exc_info=True)


class _WeakCall:
    """Calls ``obj.method(*args)`` if ``obj`` is still alive: registering never keeps it alive."""

    __slots__ = ("args", "method", "ref")

    def __init__(self, obj: object, method: str, args: tuple[object, ...]) -> None:
        self.ref = weakref.ref(obj)
        self.method = method
        self.args = args

    @property
    def alive(self) -> bool:
        return self.ref() is not None

    def __call__(self) -> None:
        target = self.ref()
        if target is not None:
            getattr(target, self.method)(*self.args)


def weak(obj: object, method: str, *args: object) -> Callable[[], None]:
    """A callback that calls ``obj.method(*args)`` if ``obj`` is still alive (no leak)."""
    return _WeakCall(obj, method, args)


def before_threads_stop(callback: Callable[[], object], stage: int = FLUSH) -> None:
    """Run ``callback`` once at exit, before threads and executors are shut down."""
    global _installed
    with _lock:
        if len(_callbacks) >= 64:  # forget the hooks of emitters that are gone
            _callbacks[:] = [(s, c) for s, c in _callbacks if not isinstance(c, _WeakCall) or c.alive]
        _callbacks.append((stage, callback))
        if _installed:
            return
        _installed = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit")
        # Callbacks run in reverse registration order: concurrent.futures' own hook (imported
        # above, so registered earlier) runs after ours, with its executors still usable.
        register(_run)
    except RuntimeError:  # another Python, or already shutting down: the best we can do
        atexit.register(_run)
