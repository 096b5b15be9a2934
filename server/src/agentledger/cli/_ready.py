"""The one line a long-running service prints once it really consumes: ``<service> ready:
bootstrap …, prefix "…", <what it loaded>, partitions …``, at every log level.

Printed to the process's real stdout: faust redirects ``sys.stdout`` into its log.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from typing import Any


def ranges(parts: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 5]`` -> ``0-3, 5``; nothing -> ``none``."""
    out: list[str] = []
    for p in sorted(set(parts)):
        if out and out[-1].split("-")[-1] == str(p - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ", ".join(out) or "none"


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def ready_line(service: str, bootstrap: str, prefix: str, *facts: str) -> str:
    return f'{service} ready: bootstrap {bootstrap}, prefix "{prefix}", ' + ", ".join(facts)


def say(line: str) -> None:
    out = sys.__stdout__ or sys.stdout
    out.write(line + "\n")
    out.flush()


def assigned_partitions(tps: Iterable[Any], topics: Iterable[str]) -> str:
    """``partitions 0-3`` (one topic) or ``partitions a 0-3, b 0-1``, of the topics read."""
    names = list(topics)
    held = {t: [tp.partition for tp in tps if tp.topic == t] for t in names}
    if len(names) == 1:
        return f"partitions {ranges(held[names[0]])}"
    return "partitions " + "; ".join(f"{t} {ranges(p)}" for t, p in held.items())


def announce_when_consuming(
    app: Any, topics: list[str], facts: Callable[[], list[str]], line: Callable[[list[str]], str],
    after: asyncio.Event | None = None,
) -> None:  # fmt: skip
    """For a Faust app: print ``line(facts() + [partitions])`` once, when its first rebalance
    is complete (partitions assigned, tables recovered) and ``after`` is set."""
    done: list[asyncio.Task[None]] = []  # the task, held until it ends

    async def show() -> None:
        if after is not None:
            await after.wait()
        say(line([*facts(), assigned_partitions(app.consumer.assignment(), topics)]))

    async def on_complete(sender: Any, **_: Any) -> None:
        if not done:
            done.append(asyncio.ensure_future(show()))  # never hold up the rebalance

    app.on_rebalance_complete.connect(on_complete)
