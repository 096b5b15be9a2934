"""Dashboard sessions: signed, expiring, never the key; CSRF pairs; one-time links."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from agentledger.api.sessions import SECRET_FILE, SessionSigner, SignInStore, load_secret

SECRET = b"s" * 32


def test_a_session_names_the_key_id_and_expires() -> None:
    signer = SessionSigner(SECRET, ttl_s=60)
    value, session = signer.issue("k1", now=1000.0)
    assert session.key_id == "k1" and session.expires == 1060
    assert signer.read(value, now=1059.0) == session
    assert signer.read(value, now=1060.0) is None  # expired
    assert SessionSigner(b"t" * 32, ttl_s=60).read(value, now=1000.0) is None  # another secret


def test_a_tampered_session_is_refused() -> None:
    import base64

    import orjson

    signer = SessionSigner(SECRET, ttl_s=60)
    value, _ = signer.issue("k1", now=1000.0)
    version, payload, mac = value.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"k": "admin"}, {"e": 10**10}):
        forged = base64.urlsafe_b64encode(orjson.dumps({**claims, **change})).rstrip(b"=").decode()
        assert signer.read(f"{version}.{forged}.{mac}", now=1000.0) is None
    for junk in ("", "v1", "v1.a.b", "v2." + value[3:], value + "x", "v1.!!.??"):
        assert signer.read(junk, now=1000.0) is None


def test_csrf_token_must_match_its_cookie() -> None:
    signer = SessionSigner(SECRET, ttl_s=60)
    cookie, form = signer.csrf_pair()
    assert signer.csrf_ok(cookie, form)
    other_cookie, other_form = signer.csrf_pair()
    assert not signer.csrf_ok(cookie, other_form) and not signer.csrf_ok(other_cookie, form)
    assert (
        not signer.csrf_ok(None, form) and not signer.csrf_ok(cookie, "") and not signer.csrf_ok(form, cookie)
    )


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert len(first) == 32 and load_secret(tmp_path) == first
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(tmp_path, "configured-secret-0123") == b"configured-secret-0123"


def test_a_link_signs_in_once_and_only_before_it_expires(tmp_path: Path) -> None:
    store = SignInStore(tmp_path / "s.sqlite")
    try:
        token = store.issue_link("k1", ttl_s=60)
        assert store.redeem(token) == "k1"
        assert store.redeem(token) is None  # spent
        old = store.issue_link("k1", ttl_s=60, now=time.time() - 61)
        assert store.redeem(old) is None  # expired
        assert store.redeem("not-a-token") is None
        # Only the token's hash is stored.
        assert not any(token.encode() in f.read_bytes() for f in tmp_path.iterdir())
    finally:
        store.close()


def test_an_ended_session_stays_ended_in_another_process(tmp_path: Path) -> None:
    signer = SessionSigner(SECRET, ttl_s=60)
    _, session = signer.issue("k1")
    one, two = SignInStore(tmp_path / "s.sqlite"), SignInStore(tmp_path / "s.sqlite")
    try:
        assert not two.ended(session)
        one.end(session)
        assert two.ended(session)
    finally:
        one.close()
        two.close()
