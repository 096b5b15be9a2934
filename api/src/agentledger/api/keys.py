"""API keys: scopes, a tenant binding, stored hashed in SQLite.

A key reads ``al_<key_id>_<secret>``. Only ``key_id`` and ``sha256(salt + secret)`` are
stored, so a stolen file does not give working keys. The store is read on every request
(a primary-key lookup, microseconds), so ``agentledger keys revoke`` takes effect at once,
even across processes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from agentledger.errors import ConfigError, NotFoundError

PREFIX = "al_"


class KeyScope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the API sees it after authentication (never the secret)."""

    key_id: str
    name: str
    scopes: frozenset[KeyScope]
    tenant: str | None  # None: every tenant (admin keys only)
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: KeyScope) -> bool:
        """Admin implies read and ingest."""
        return scope in self.scopes or KeyScope.ADMIN in self.scopes

    def sees(self, tenant: str | None) -> bool:
        """True when this key may touch ``tenant`` (an all-tenant key sees every tenant)."""
        return self.tenant is None or self.tenant == tenant


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    tenant TEXT,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """``al_<id>_<secret>`` -> (id, secret), or None when the shape is wrong."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


class KeyStore:
    """Hashed API keys in one SQLite file (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, guarded by a lock: the API checks keys from the event loop and the
        # CLI from its own process; SQLite's file locking covers the latter.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, name: str, scopes: set[KeyScope], tenant: str | None) -> tuple[ApiKey, str]:
        """A new key and its token (shown once; only its hash is kept)."""
        if not scopes:
            raise ConfigError("a key needs at least one scope: ingest, read or admin")
        if tenant is None and KeyScope.ADMIN not in scopes:
            raise ConfigError("only admin keys may span every tenant: give --tenant")
        if not name or len(name) > 128:
            raise ConfigError("a key needs a name of 1-128 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24).replace("_", "x")
        salt = secrets.token_bytes(16)
        now = datetime.now(UTC)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?,?,?,?,?,?,?,NULL)",
                (
                    key_id,
                    name,
                    ",".join(sorted(scopes)),
                    tenant,
                    salt,
                    _digest(salt, secret),
                    now.isoformat(),
                ),
            )
        key = ApiKey(key_id, name, frozenset(scopes), tenant, now)
        return key, f"{PREFIX}{key_id}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        """The key for ``token``, or None (unknown, wrong secret, revoked)."""
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self._lock:
            row = self._db.execute(
                "SELECT key_id,name,scopes,tenant,salt,digest,created_at,revoked_at FROM api_keys WHERE key_id=?",
                (key_id,),
            ).fetchone()
        if row is None or row[7] is not None:
            return None
        if not hmac.compare_digest(row[5], _digest(row[4], secret)):
            return None
        return _key_of(row)

    def get(self, key_id: str) -> ApiKey | None:
        """The active key with this id (a dashboard session names its key by id), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT key_id,name,scopes,tenant,salt,digest,created_at,revoked_at FROM api_keys WHERE key_id=?",
                (key_id,),
            ).fetchone()
        return None if row is None or row[7] is not None else _key_of(row)

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id,name,scopes,tenant,salt,digest,created_at,revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [_key_of(r) for r in rows]

    def revoke(self, key_id: str) -> None:
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), key_id),
            )
        if cur.rowcount == 0:
            raise NotFoundError(f"no active key with id {key_id!r} (see `agentledger keys list`)")


def _key_of(row: tuple[object, ...]) -> ApiKey:
    return ApiKey(
        key_id=str(row[0]),
        name=str(row[1]),
        scopes=frozenset(KeyScope(s) for s in str(row[2]).split(",") if s),
        tenant=None if row[3] is None else str(row[3]),
        created_at=datetime.fromisoformat(str(row[6])),
        revoked_at=None if row[7] is None else datetime.fromisoformat(str(row[7])),
    )
