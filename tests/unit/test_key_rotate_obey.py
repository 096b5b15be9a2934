"""How a process obeys a ``rotate`` command it reads (``keys.obey``): once per command, only for
its tenant, and a process that starts after the command keeps off a named key only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentledger.collectors import keys
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind

A, B, C = "sk-a-111", "sk-b-222", "sk-c-333"


def rotate(
    cid: str, fp: str | None = None, tenant: str | None = None, expired: bool = False
) -> ControlCommand:
    now = datetime.now(UTC)
    return ControlCommand(
        command_id=cid, ts=now, scope=Scope(kind=ScopeKind.PROVIDER, provider="openai", tenant=tenant),
        action=Action.ROTATE, reason="test", params=CommandParams(fingerprint=fp), issued_by="cli:test",
        expires_at=now - timedelta(seconds=1) if expired else None,
    )  # fmt: skip


@pytest.fixture
def pool(tmp_path: Path) -> keys.KeyPool:
    path = tmp_path / "k"
    path.write_text(f"{A}\n{B}\n{C}\n")
    p = keys.KeyPool(keys.FileKeys(path))
    keys.set_keys({"openai": p})
    yield p
    keys.set_keys(None)


def current(pool: keys.KeyPool) -> str:
    picked = pool.current()
    assert picked is not None
    return picked[0]


def test_a_live_rotate_moves_off_the_key_in_use_once(pool: keys.KeyPool) -> None:
    assert keys.obey(rotate("rotate-live-0001"), "acme", live=True) == keys.fingerprint(A)
    assert current(pool) == B
    assert keys.obey(rotate("rotate-live-0001"), "acme", live=True) is None  # read again: no second move
    assert current(pool) == B


def test_a_process_started_later_keeps_off_a_named_key_only(pool: keys.KeyPool) -> None:
    assert keys.obey(rotate("rotate-late-0001"), "acme", live=False) is None
    assert current(pool) == A
    assert keys.obey(rotate("rotate-late-0002", keys.fingerprint(A)), "acme", live=False) == keys.fingerprint(
        A
    )
    assert current(pool) == B


def test_another_tenants_or_an_expired_rotate_changes_nothing(pool: keys.KeyPool) -> None:
    assert keys.obey(rotate("rotate-othr-0001", tenant="globex"), "acme", live=True) is None
    assert keys.obey(rotate("rotate-expd-0001", expired=True), "acme", live=True) is None
    assert current(pool) == A
    assert keys.obey(rotate("rotate-mine-0001", tenant="acme"), "acme", live=True) == keys.fingerprint(A)


def test_a_command_cannot_carry_a_key() -> None:
    with pytest.raises(ValueError):
        rotate("rotate-bad-00001", fp=A)
    with pytest.raises(ValueError, match="provider scope"):
        ControlCommand(
            command_id="rotate-bad-00002", ts=datetime.now(UTC), scope=Scope(kind=ScopeKind.TENANT, tenant="acme"),
            action=Action.ROTATE, reason="x",
        )  # fmt: skip
