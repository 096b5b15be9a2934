"""Shared backoff: a 429 with ``Retry-After`` that one hooked call sees pauses that provider key
(base URL + a fingerprint of the API key, never the key) for every thread and task of the
process, until the time the provider gave.

The SDKs keep their own retry loops: the hook does not retry. It wraps two of their client
methods (the same in the openai and anthropic SDKs, sync and async):

- ``_sleep_for_retry(..., response=...)``, where the SDK is about to sleep before a retry: a
  429's ``Retry-After`` (seconds, ``retry-after-ms``, or an HTTP date) opens the pause;
- ``_prepare_request(request)``, which every attempt (first send and each retry) passes before
  it goes out: while the key is paused, it waits (``time.sleep`` or ``asyncio.sleep``), so the
  SDK's retry and everybody else's call leave together when the pause ends, not before.

A ``RateLimitError`` the SDK gives up on (no retries left) opens the pause too (the hook's
wrapper calls ``saw_rate_limit``). Attempts and waits are counted on the hooked call's
``Caller`` (``attempts``, ``waited_s``) and land in its usage event's attributes.

With no pause open, the added cost of an attempt is one dict truthiness test.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import logging
import threading
import time
from typing import Any

log = logging.getLogger("agentledger.collectors")

MAX_PAUSE_S = 300.0  # a Retry-After beyond this is not believed (a misconfigured server)

# key -> monotonic time the pause ends; read without a lock (a dict lookup is atomic)
_PAUSED: dict[tuple[str, str], float] = {}
_LOCK = threading.Lock()


def key_of(client: Any) -> tuple[str, str]:
    """(base URL, fingerprint of the API key): what a pause applies to. The key itself is
    never kept."""
    base = str(getattr(client, "_base_url", None) or getattr(client, "base_url", ""))
    secret = getattr(client, "api_key", None) or getattr(client, "auth_token", None) or ""
    return base, hashlib.sha256(str(secret).encode()).hexdigest()[:16]


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds a response's ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date) asks
    for; None when it gives none or one not to believe."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) / divisor
        except ValueError:
            if divisor != 1.0:
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            delay = when.timestamp() - (time.time() if now is None else now)
        return delay if 0 < delay <= MAX_PAUSE_S else None
    return None


def pause(key: tuple[str, str], seconds: float) -> None:
    until = time.monotonic() + seconds
    with _LOCK:
        if _PAUSED.get(key, 0.0) < until:
            _PAUSED[key] = until


def paused_for(key: tuple[str, str]) -> float:
    """Seconds left on the key's pause (0 when none); forgets ended pauses."""
    until = _PAUSED.get(key)
    if until is None:
        return 0.0
    left = until - time.monotonic()
    if left <= 0:
        with _LOCK:
            if _PAUSED.get(key) == until:
                del _PAUSED[key]
        return 0.0
    return left


def pauses() -> dict[tuple[str, str], float]:
    """The pauses open now: (base URL, key fingerprint) -> seconds left."""
    now = time.monotonic()
    return {key: until - now for key, until in list(_PAUSED.items()) if until > now}


def saw_response(client: Any, response: Any) -> None:
    """A response the SDK is about to retry (or gave up on): a 429 with a delay pauses the key."""
    try:
        if response is None or getattr(response, "status_code", None) != 429:
            return
        delay = retry_after_s(getattr(response, "headers", None))
        if delay is not None:
            pause(key_of(client), delay)
            log.info("agentledger: provider answered 429; calls to it pause for %.1fs", delay)
    except Exception:
        log.debug("agentledger backoff could not read a 429", exc_info=True)


def _count(call: Any, waited: float) -> None:
    if call is not None:
        call.attempts += 1
        call.waited_s += waited


def wrap_prepare(original: Any, is_async: bool, current: Any) -> Any:
    """``_prepare_request``: wait out the key's pause, count the attempt. ``current()`` is the
    hooked call being made now (a ``Caller``) or None."""
    if is_async:

        @functools.wraps(original)
        async def aprepare(self: Any, request: Any) -> Any:
            waited = 0.0
            if _PAUSED:
                left = paused_for(key_of(self))
                while left > 0:
                    await asyncio.sleep(left)
                    waited += left
                    left = paused_for(key_of(self))
            _count(current(), waited)
            return await original(self, request)

        return aprepare

    @functools.wraps(original)
    def prepare(self: Any, request: Any) -> Any:
        waited = 0.0
        if _PAUSED:
            left = paused_for(key_of(self))
            while left > 0:
                time.sleep(left)
                waited += left
                left = paused_for(key_of(self))
        _count(current(), waited)
        return original(self, request)

    return prepare


def wrap_sleep(original: Any, is_async: bool) -> Any:
    """``_sleep_for_retry``: the response the SDK retries after opens the pause first."""
    if is_async:

        @functools.wraps(original)
        async def asleep(self: Any, *args: Any, **kwargs: Any) -> Any:
            saw_response(self, kwargs.get("response"))
            return await original(self, *args, **kwargs)

        return asleep

    @functools.wraps(original)
    def sleep(self: Any, *args: Any, **kwargs: Any) -> Any:
        saw_response(self, kwargs.get("response"))
        return original(self, *args, **kwargs)

    return sleep


def reset() -> None:
    """Forget every pause (tests; ``uninstrument``)."""
    with _LOCK:
        _PAUSED.clear()
