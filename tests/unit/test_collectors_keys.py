"""Key sources and the pool's choice of key (pure logic, real files and a real subprocess)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agentledger.collectors.keys import (
    CommandKeys,
    EnvKeys,
    FileKeys,
    KeyPool,
    KeySourceError,
    fingerprint,
    retry_after_s,
)

A, B = "sk-unit-aaaa1111", "sk-unit-bbbb2222"


def test_file_keys_are_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{A}\n\n# comment\n{B}\n")
    source = FileKeys(path)
    assert source.keys() == [A, B]
    path.write_text(f'{{"SecretString": "{B}"}}')
    assert source.keys() == [B]
    path.unlink()
    assert source.keys() == []


def test_command_keys_run_the_command_and_cache_it(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = f"import pathlib; p = pathlib.Path({str(counter)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x'); print('{A}')"
    source = CommandKeys([sys.executable, "-c", script], ttl_s=60)
    assert source.keys() == [A] and source.keys() == [A]
    assert counter.read_text() == "x"  # cached
    source.refresh()
    assert source.keys() == [A] and counter.read_text() == "xx"


def test_a_failing_command_says_so_without_its_output() -> None:
    source = CommandKeys([sys.executable, "-c", f"import sys; print('{A}', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(KeySourceError) as err:
        source.keys()
    assert "exited with 3" in str(err.value) and A not in str(err.value)


def test_the_pool_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AL_UNIT_KEYS", f"{A}, {B}")
    pool = KeyPool(FileKeys(tmp_path / "missing"), EnvKeys("AL_UNIT_KEYS"))
    assert pool.current() == (A, fingerprint(A))


def test_429_cools_a_key_401_refuses_it_until_the_keys_change(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{A}\n{B}\n")
    pool = KeyPool(FileKeys(path), cooldown_s=60)
    pool.failed(fingerprint(A), 429)
    assert pool.current() == (B, fingerprint(B))
    pool.failed(fingerprint(B), 401)
    assert pool.current() is None  # A cooling, B refused
    pool.failed(fingerprint(A), 429, retry_after_s=0.0)
    assert pool.current() == (A, fingerprint(A))
    pool.failed(fingerprint(A), 429)
    path.write_text(f"{B}\nsk-unit-cccc3333\n")  # rotated: a new key arrives, B stays refused
    assert pool.current() == ("sk-unit-cccc3333", fingerprint("sk-unit-cccc3333"))


def test_rotate_forgets_refusals() -> None:
    os.environ["AL_UNIT_ONE"] = A
    try:
        pool = KeyPool(EnvKeys("AL_UNIT_ONE"))
        pool.failed(fingerprint(A), 401)
        assert pool.current() is None
        pool.rotate()
        assert pool.current() == (A, fingerprint(A))
    finally:
        del os.environ["AL_UNIT_ONE"]


def test_retry_after_headers_in_ms_or_seconds() -> None:
    class Resp:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    class Err(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = Resp(headers)

    assert retry_after_s(Err({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(Err({"retry-after": "2"})) == 2.0
    assert retry_after_s(Err({})) is None
    assert fingerprint(A).startswith("k-") and A not in fingerprint(A)
