"""Provider key pools: keys read from files (mounted secrets, reloaded when they change) or a
command (the ``credential_process`` pattern: a secrets manager's CLI prints the key), with the
environment only as the simplest fallback; the hook injects one per request and moves to the
next on a 401 or 429.

A key is never logged, put in an event or an error message: only its ``fingerprint``
(``k-`` + the first 12 hex digits of its SHA-256).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from agentledger.errors import AgentLedgerError
from agentledger.events import ControlCommand

log = logging.getLogger("agentledger.collectors")

current_fingerprint: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentledger_key_fingerprint", default=None
)
"""The fingerprint of the key the hooked call in this context was sent with (for its event)."""


class KeySourceError(AgentLedgerError):
    """A key source could not be read (the message names the source, never a key)."""


def fingerprint(key: str) -> str:
    """What events and logs say instead of the key."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _parse(text: str) -> list[str]:
    """Keys in a file's or a command's output: one per line, or a JSON object with ``api_key``,
    ``key``, ``keys`` or ``SecretString`` (what cloud secret managers print)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for name in ("keys", "api_keys"):
                if isinstance(doc.get(name), list):
                    return [str(k).strip() for k in doc[name] if str(k).strip()]
            for name in ("api_key", "key", "SecretString"):
                if isinstance(doc.get(name), str):
                    return _parse(doc[name])
            return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class KeySource(Protocol):
    """Where keys come from. ``keys()`` is called before every hooked request: cheap when
    nothing changed. ``refresh()`` forces a new read (a rotate command, every key refused)."""

    name: str

    def keys(self) -> list[str]: ...

    def refresh(self) -> None: ...


class FileKeys:
    """One key per line (or a JSON object) in a file, e.g. a mounted Kubernetes secret;
    re-read when its modification time, size or inode changes (checked at most every
    ``check_s`` seconds)."""

    def __init__(self, path: str | os.PathLike[str], check_s: float = 0.0) -> None:
        self.path = os.fspath(path)
        self._path = Path(self.path)
        self.name = f"file:{self.path}"
        self.check_s = check_s
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[str] = []
        self._checked = 0.0

    def keys(self) -> list[str]:
        now = time.monotonic()
        if self.check_s and now - self._checked < self.check_s:
            return self._keys
        self._checked = now
        try:
            st = self._path.stat()
        except OSError:
            if self._stamp is not None:
                log.warning("agentledger keys: %s is gone; its keys are dropped", self.name)
            self._stamp, self._keys = None, []
            return self._keys
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                self._keys = _parse(self._path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise KeySourceError(f"agentledger keys: cannot read {self.name}: {exc.strerror}") from None
            self._stamp = stamp
        return self._keys

    def refresh(self) -> None:
        self._stamp, self._checked = None, 0.0


class CommandKeys:
    """The keys a command prints (no shell; ``argv`` as given), e.g.
    ``["vault", "kv", "get", "-field=key", "secret/openai"]`` or ``["op", "read",
    "op://ci/openai/key"]``; cached for ``ttl_s`` seconds, run again on ``refresh()``."""

    def __init__(self, argv: Sequence[str], ttl_s: float = 300.0, timeout_s: float = 10.0) -> None:
        if not argv:
            raise ValueError("CommandKeys needs a command")
        self.argv = list(argv)
        self.name = f"command:{self.argv[0]}"
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._keys: list[str] = []
        self._at: float | None = None

    def keys(self) -> list[str]:
        if self._at is not None and time.monotonic() - self._at < self.ttl_s:
            return self._keys
        try:
            done = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KeySourceError(f"agentledger keys: {self.name} did not run: {type(exc).__name__}") from None
        if done.returncode != 0:  # its stderr may hold a secret: not quoted
            raise KeySourceError(f"agentledger keys: {self.name} exited with {done.returncode}")
        self._keys, self._at = _parse(done.stdout), time.monotonic()
        return self._keys

    def refresh(self) -> None:
        self._at = None


class EnvKeys:
    """The simplest fallback: a variable holding one key (or several, comma-separated)."""

    def __init__(self, var: str) -> None:
        self.var = var
        self.name = f"env:{var}"

    def keys(self) -> list[str]:
        return [k.strip() for k in os.environ.get(self.var, "").split(",") if k.strip()]

    def refresh(self) -> None:
        return None


class KeyPool:
    """Keys for one provider from the first source that has any (files, then a command, then
    the environment, in the order given). ``current()`` is the first key neither cooling after
    a 429 nor refused with a 401; a refused key stays out while its source still lists it
    (a rotated secret brings a new key) or until ``rotate()``."""

    def __init__(self, *sources: KeySource, cooldown_s: float = 30.0) -> None:
        if not sources:
            raise ValueError("KeyPool needs at least one source")
        self.sources = sources
        self.cooldown_s = cooldown_s
        self._cooling: dict[str, float] = {}  # fingerprint -> monotonic time it may be used again
        self._refused: set[str] = set()
        self._seen: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.provider: str | None = None  # set by ``set_keys``: the provider it serves

    def keys(self) -> list[str]:
        for source in self.sources:
            try:
                found = source.keys()
            except KeySourceError:
                log.warning("agentledger keys: source %s failed; trying the next", source.name, exc_info=True)
                continue
            if found:
                fps = tuple(fingerprint(k) for k in found)
                if fps != self._seen:  # a rotation: forget refusals of keys no longer listed
                    with self._lock:
                        self._seen, self._refused = fps, self._refused & set(fps)
                return found
        return []

    def current(self) -> tuple[str, str] | None:
        """(key, fingerprint) to send now, or None when every key is cooling or refused."""
        now = time.monotonic()
        for key in self.keys():
            fp = fingerprint(key)
            if fp not in self._refused and self._cooling.get(fp, 0.0) <= now:
                return key, fp
        return None

    def failed(self, fp: str, status: int, retry_after_s: float | None = None) -> None:
        """A 429 cools the key for ``retry_after_s`` (else ``cooldown_s``); a 401 refuses it."""
        with self._lock:
            if status == 401:
                self._refused.add(fp)
            else:
                self._cooling[fp] = time.monotonic() + (
                    retry_after_s if retry_after_s is not None else self.cooldown_s
                )
        log.warning("agentledger keys: key %s answered %d; moving to the next key", fp, status)
        if self.provider is not None:
            _record_refusal(self.provider, fp, status)

    def rotate(self, away_from: str | None = None) -> None:
        """Read every source again now and forget refusals and cool-downs; ``away_from`` (a
        fingerprint) is refused from now on, while the source still lists it."""
        for source in self.sources:
            source.refresh()
        with self._lock:
            self._refused.clear()
            self._cooling.clear()
            self._seen = ()
            if away_from is not None:
                self._refused.add(away_from)


_POOLS: dict[str, KeyPool] = {}


def set_keys(pools: Mapping[str, KeyPool] | None) -> None:
    """Provider name (as the hook records it: ``openai``, ``anthropic``, ``groq``...) -> pool."""
    global _POOLS
    if pools is not None:
        for name, pool in pools.items():
            if not isinstance(pool, KeyPool):
                raise ValueError(f"keys[{name!r}] must be a KeyPool, not {type(pool).__name__}")
    _POOLS = dict(pools or {})
    for name, pool in _POOLS.items():
        pool.provider = name


def _record_refusal(provider: str, fp: str, status: int) -> None:
    """The refused attempt as an LLM span in error, with the key's fingerprint, so the health
    worker counts errors per key (the call itself went on with the next key: its own usage
    event says so). Telemetry: never raises."""
    try:
        from . import _ids
        from . import client as api
        from .naming import current_call

        em, caller = api._emitter, current_call()
        if em is None or caller is None:
            return
        now = time.time_ns()
        trace_id = caller.trace_id or "%032x" % (_ids._rng.getrandbits(128) | 1)
        cause = "key_refused" if status == 401 else "key_rate_limited"
        event = {
            "event_id": _ids.event_id(), "type": "span", "ts": now, "tenant": caller.tenant,
            "agent": caller.agent, "agent_version": caller.agent_version, "workflow": caller.workflow,
            "trace_id": trace_id, "span_id": _ids.span_id(), "parent_span_id": caller.span_id or caller.parent_span_id,
            "name": f"{provider} key {status}", "kind": "llm", "start": now, "end": now, "status": "error",
            "error_type": f"http_{status}", "provider": provider,
            "attributes": {"agentledger.key_fingerprint": fp, "agentledger.error.cause": cause,
                           "http.response.status_code": status},
        }  # fmt: skip
        em._worker.put(event)
    except Exception:
        log.exception("agentledger keys: could not record the refusal of key %s", fp)


def pool_for(provider: str) -> KeyPool | None:
    return _POOLS.get(provider) if _POOLS else None


def rotate(provider: str | None = None) -> None:
    """Force a re-read of one provider's pool (or all): what a ``rotate`` command does."""
    for name, pool in _POOLS.items():
        if provider is None or name == provider:
            pool.rotate()


_OBEYED: set[str] = set()  # command ids of rotate commands already obeyed by this process


def obey(command: ControlCommand, tenant: str | None, live: bool) -> str | None:
    """A ``rotate`` command read from the control topic (docs/security.md, "Rotating a key").

    Each command is obeyed once per process (the Guard reads the compacted topic again after
    a reconnect). A command naming a fingerprint moves the pool off that key: also in a process
    that starts later, while the command is in force and the source still lists the key. One
    naming none moves off the key in use, in processes running when it is published (``live``:
    read after the Guard caught up); a process that starts later has not used a key yet.
    Returns the fingerprint moved off, or None when the command does not apply here."""
    scope = command.scope
    if command.command_id in _OBEYED or scope.provider is None:
        return None
    if scope.tenant is not None and tenant is not None and scope.tenant != tenant:
        return None
    _OBEYED.add(command.command_id)
    if not command.active(datetime.now(UTC)):
        return None
    pool = pool_for(scope.provider)
    if pool is None:
        return None
    away = command.params.fingerprint
    if away is None:
        if not live:
            return None
        picked = pool.current()
        away = picked[1] if picked is not None else None
    pool.rotate(away)
    log.warning(
        "agentledger keys: rotate command %s for %s: moving off key %s",
        command.command_id,
        scope.provider,
        away or "(none in use)",
    )
    return away


def retry_after_s(exc: BaseException) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds) of an SDK error's response, if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def auth_headers(sdk: str, key: str) -> dict[str, str]:
    """The header each SDK sends its key in (per-request ``extra_headers`` override it)."""
    return {"x-api-key": key} if sdk == "anthropic" else {"Authorization": f"Bearer {key}"}
