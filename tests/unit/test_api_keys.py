"""API keys: hashed at rest, scoped, tenant-bound, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.api.keys import KeyScope, KeyStore, split_token
from agentledger.errors import ConfigError, NotFoundError


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    s = KeyStore(tmp_path / "keys.sqlite")
    yield s
    s.close()


def test_created_key_verifies_and_only_its_hash_is_stored(store: KeyStore, tmp_path: Path) -> None:
    key, token = store.create("bot", {KeyScope.INGEST}, "acme")
    assert store.verify(token) == key
    secret = token.rsplit("_", 1)[1]
    assert secret.encode() not in (tmp_path / "keys.sqlite").read_bytes()
    assert key.tenant == "acme" and key.allows(KeyScope.INGEST) and not key.allows(KeyScope.READ)


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: "x" + t, str.upper]
)
def test_wrong_or_malformed_tokens_are_refused(store: KeyStore, mangle) -> None:  # type: ignore[no-untyped-def]
    _, token = store.create("bot", {KeyScope.READ}, "acme")
    assert store.verify(mangle(token)) is None
    assert store.verify("") is None and store.verify("al_only") is None


def test_revoked_key_stops_working_at_once_even_for_another_store(store: KeyStore, tmp_path: Path) -> None:
    key, token = store.create("bot", {KeyScope.READ}, "acme")
    other = KeyStore(tmp_path / "keys.sqlite")  # e.g. the CLI in another process
    other.revoke(key.key_id)
    other.close()
    assert store.verify(token) is None
    assert [k.revoked_at is not None for k in store.list()] == [True]
    with pytest.raises(NotFoundError):
        store.revoke(key.key_id)


def test_admin_implies_every_scope_and_only_admin_spans_tenants(store: KeyStore) -> None:
    admin, _ = store.create("ops", {KeyScope.ADMIN}, None)
    assert all(admin.allows(s) for s in KeyScope) and admin.sees("acme") and admin.sees("globex")
    with pytest.raises(ConfigError):
        store.create("reader", {KeyScope.READ}, None)
    with pytest.raises(ConfigError):
        store.create("nothing", set(), "acme")


def test_tenant_bound_key_sees_only_its_tenant(store: KeyStore) -> None:
    key, _ = store.create("bot", {KeyScope.READ, KeyScope.INGEST}, "acme")
    assert key.sees("acme") and not key.sees("globex") and not key.sees(None)


def test_split_token() -> None:
    assert split_token("al_abc_def_ghi") == ("abc", "def_ghi")
    assert split_token("bearer") is None and split_token("al__x") is None
