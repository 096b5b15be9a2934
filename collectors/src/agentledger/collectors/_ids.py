"""Cheap, unique ids for the hot path: W3C trace/span ids and event ids.

Event ids are a per-process random prefix plus a counter: unique across processes without
calling ``os.urandom`` per event. After ``fork`` the child draws a new prefix (see ``reseed``),
so parent and child never mint the same id.
"""

from __future__ import annotations

import itertools
import os
import random

_rng = random.Random(os.urandom(16))
_prefix = os.urandom(8).hex() + "-"
_counter = itertools.count(1)


def reseed() -> None:
    """Fresh randomness and a fresh event-id prefix (called in a forked child)."""
    global _prefix, _counter
    _rng.seed(os.urandom(16))
    _prefix = os.urandom(8).hex() + "-"
    _counter = itertools.count(1)


def trace_id() -> str:
    """32 lowercase hex characters, never all zero."""
    return "%032x" % (_rng.getrandbits(128) or 1)


def span_id() -> str:
    """16 lowercase hex characters, never all zero."""
    return "%016x" % (_rng.getrandbits(64) or 1)


def event_id() -> str:
    """``<16 hex>-<counter>``: unique per process and across processes."""
    return _prefix + str(next(_counter))


os.register_at_fork(after_in_child=reseed)
