"""Dashboard sign-in: signed, expiring sessions, CSRF tokens for the sign-in form, and one-time
sign-in links.

A session cookie names a key by its id and never holds the key: ``v1.<payload>.<mac>`` where
the payload is ``key_id``, a random session id and the expiry, and the MAC is HMAC-SHA256 with
a server secret (``AGENTLEDGER_API_SESSION_SECRET``, else 32 random bytes generated once into
``<home>/ui_session.secret``, mode 0600). Every request looks the key up again, so a revoked
key or a lost read scope closes its sessions at once. Sign-out records the session id until its
expiry, so a copied cookie stops working too.

A one-time link carries a random token whose SHA-256 is kept with its key id and expiry; the
first use spends it. Tokens and ended sessions live in ``<home>/ui_sessions.sqlite``, shared
by every API process and the CLI that prints links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from fastapi import Request

from agentledger.api.config import ApiSettings

SESSION_COOKIE = "agentledger_session"
CSRF_COOKIE = "agentledger_csrf"
SECRET_FILE = "ui_session.secret"
STORE_FILE = "ui_sessions.sqlite"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(home: Path, configured: str | None = None) -> bytes:
    """The signing secret: the configured one, else the one kept under ``home`` (created once;
    two processes racing both end up reading the winner's file)."""
    if configured:
        return configured.encode()
    path = home / SECRET_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            data = path.read_bytes()
            if data:
                return data
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty: delete it and restart the API") from None
    with os.fdopen(fd, "wb") as f:
        secret = secrets.token_bytes(32)
        f.write(secret)
    return secret


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    sid: str
    expires: int  # unix seconds


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def issue(self, key_id: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(key_id, secrets.token_urlsafe(12), int((now or time.time()) + self.ttl_s))
        payload = orjson.dumps({"k": session.key_id, "s": session.sid, "e": session.expires})
        return f"v1.{_b64(payload)}.{_b64(self._mac('session', payload))}", session

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when it is malformed, tampered with or expired."""
        if not value or value.count(".") != 2:
            return None
        version, payload_b64, mac_b64 = value.split(".")
        try:
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except ValueError:
            return None
        if version != "v1" or not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            claims = orjson.loads(payload)
            session = Session(str(claims["k"]), str(claims["s"]), int(claims["e"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if session.expires > (now or time.time()) else None

    def csrf_pair(self) -> tuple[str, str]:
        """(cookie value, form value): the form's token is the MAC of the cookie's nonce, so a
        page on another site can neither read nor forge the pair (double submit, signed)."""
        nonce = secrets.token_urlsafe(16)
        return nonce, _b64(self._mac("csrf", nonce.encode()))

    def csrf_ok(self, cookie: str | None, form: str | None) -> bool:
        if not cookie or not form:
            return False
        return hmac.compare_digest(form, _b64(self._mac("csrf", cookie.encode())))


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS login_links (digest BLOB PRIMARY KEY, key_id TEXT NOT NULL,"
    " expires_at REAL NOT NULL, used_at REAL)",
    "CREATE TABLE IF NOT EXISTS ended_sessions (sid TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
)


class SignInStore:
    """One-time sign-in links and ended sessions, in one SQLite file (created on first use)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._db.execute(statement)

    @classmethod
    def at_home(cls, home: Path) -> SignInStore:
        return cls(home / STORE_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def issue_link(self, key_id: str, ttl_s: float = 900, now: float | None = None) -> str:
        """A token that signs ``key_id`` in once, within ``ttl_s``; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        at = now or time.time()
        with self._lock:
            self._db.execute("DELETE FROM login_links WHERE expires_at < ?", (at,))
            self._db.execute(
                "INSERT INTO login_links VALUES (?,?,?,NULL)",
                (hashlib.sha256(token.encode()).digest(), key_id, at + ttl_s),
            )
        return token

    def redeem(self, token: str, now: float | None = None) -> str | None:
        """The key id of an unused, unexpired token, spending it; None otherwise."""
        at = now or time.time()
        with self._lock:
            row = self._db.execute(
                "UPDATE login_links SET used_at=? WHERE digest=? AND used_at IS NULL AND expires_at>?"
                " RETURNING key_id",
                (at, hashlib.sha256(token.encode()).digest(), at),
            ).fetchone()
        return None if row is None else str(row[0])

    def end(self, session: Session) -> None:
        with self._lock:
            self._db.execute("DELETE FROM ended_sessions WHERE expires_at < ?", (time.time(),))
            self._db.execute(
                "INSERT OR IGNORE INTO ended_sessions VALUES (?,?)", (session.sid, session.expires)
            )

    def ended(self, session: Session) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM ended_sessions WHERE sid=?", (session.sid,)).fetchone()
        return row is not None


@dataclass
class DashboardSignIn:
    """What the dashboard routes need to sign a browser in and out."""

    signer: SessionSigner
    store: SignInStore
    secure_cookies: bool = False

    @classmethod
    def open(cls, home: Path, settings: ApiSettings) -> DashboardSignIn:
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        return cls(
            SessionSigner(load_secret(home, secret), settings.session_ttl_s),
            SignInStore.at_home(home),
            settings.cookie_secure,
        )

    def close(self) -> None:
        self.store.close()


def get_sign_in(request: Request) -> DashboardSignIn:
    sign_in: DashboardSignIn = request.app.state.sign_in
    return sign_in
