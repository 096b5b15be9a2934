"""``agentledger ui link``: a one-time link for a read key, never for an ingest-only key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from agentledger.api.keys import KeyScope, KeyStore
from agentledger.api.sessions import SignInStore


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentledger", "ui", "link", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "AGENTLEDGER_HOME": str(home), "COLUMNS": "60"},
        check=False,
    )


def test_link_signs_in_the_key_once(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "api_keys.sqlite")
    reader, token = keys.create("dash", {KeyScope.READ}, "acme")
    ingest, _ = keys.create("bot", {KeyScope.INGEST}, "acme")
    keys.close()
    done = _cli(tmp_path, reader.key_id, "--next", "/ui/providers", "--url", "http://api.example:8000/")
    assert done.returncode == 0, done.stderr
    url = urlsplit(done.stdout.strip())  # one line, not wrapped, even on a narrow console
    assert (url.netloc, url.path) == ("api.example:8000", "/ui/link") and token not in done.stdout
    query = parse_qs(url.query)
    assert query["next"] == ["/ui/providers"]
    store = SignInStore.at_home(tmp_path)
    try:
        assert store.redeem(query["token"][0]) == reader.key_id
        assert store.redeem(query["token"][0]) is None
    finally:
        store.close()
    refused = _cli(tmp_path, ingest.key_id)
    assert refused.returncode != 0 and "read scope" in refused.stdout + refused.stderr
    assert _cli(tmp_path, "nope").returncode != 0
