"""``rotate`` on the control plane (docs/security.md, "Rotating a key"), with the real CLI, the
real API, a real broker, a real Guard, the openai SDK and the local provider: a running process
moves off its key without a restart (the provider's request log shows the new key), a rotate
naming a fingerprint moves off that key, and no secret is in any command or error."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakeprovider import FakeProvider

from agentledger import collectors as al
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.collectors import Guard
from agentledger.collectors.keys import set_keys
from agentledger.settings import Settings

ALPHA, BRAVO = "sk-alpha-rot-4c1e0a", "sk-bravo-rot-9d07f2"
MSGS = [{"role": "user", "content": "2 + 2?"}]


def control_records(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    async def run() -> list[tuple[bytes, bytes]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[tuple[bytes, bytes]] = []
        try:
            for _ in range(10):
                batch = await consumer.getmany(timeout_ms=300)
                out.extend((r.key, r.value) for rs in batch.values() for r in rs)
                if out and not batch:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def until_key(pool: al.KeyPool, key: str, timeout: float = 5.0) -> float:
    """Seconds until the pool's current key is ``key``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        picked = pool.current()
        if picked is not None and picked[0] == key:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"the pool did not move to {al.fingerprint(key)} within {timeout}s")


@pytest.fixture
def running(topics: Any, tmp_path: Path) -> Iterator[tuple[FakeProvider, al.KeyPool, openai.OpenAI, Guard]]:
    path = tmp_path / "openai.keys"
    path.write_text(f"{ALPHA}\n{BRAVO}\n")
    pool = al.KeyPool(al.FileKeys(path))
    guard = Guard(topics.bootstrap, topics.control, tools_topic=topics.prefix + "agentledger.tools.v1")
    assert guard.wait_ready(30)
    with FakeProvider() as fake:
        al.configure(tenant="acme", transport=al.MemoryTransport(), keys={"openai": pool})
        al.instrument(guard=guard)
        try:
            yield fake, pool, openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-client-own"), guard
        finally:
            al.uninstrument()
            al.shutdown(5)
            set_keys(None)
            guard.close()


def test_the_cli_rotate_moves_a_running_process_off_its_key(topics: Any, running: Any) -> None:
    fake, pool, client, _ = running
    client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert fake.keys_seen == [ALPHA]
    env = dict(
        os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix
    )
    done = subprocess.run(
        [sys.executable, "-m", "agentledger", "keys", "rotate", "--provider", "openai"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "keys.manual:provider/openai/*" in done.stdout
    until_key(pool, BRAVO)
    client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert fake.keys_seen == [ALPHA, BRAVO]  # the same process, no restart, the next key
    records = control_records(topics.bootstrap, topics.control)
    assert [k for k, _ in records] == [b"keys.manual:provider/openai/*"]
    for secret in (ALPHA, BRAVO):
        assert not any(secret.encode() in v for _, v in records)


def test_the_api_rotate_moves_off_the_named_key_and_never_takes_a_secret(
    topics: Any, running: Any, tmp_path: Path
) -> None:
    fake, pool, client, guard = running
    tokens = standard_keys(tmp_path / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=topics.bootstrap, topic_prefix=topics.prefix, home=tmp_path),
        ApiSettings(keys_path=tmp_path / "keys.sqlite"),
    )

    def post(body: dict[str, Any], role: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {tokens[role]}"}
        return httpx.post(url + "/v1/keys/rotate", json=body, headers=headers, timeout=30)

    with ApiServer(app) as url:
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert fake.keys_seen == [ALPHA]
        mistaken = post({"provider": "openai", "tenant": "acme", "fingerprint": ALPHA}, "acme_admin")
        assert mistaken.status_code == 422 and ALPHA not in mistaken.text  # a key given by mistake
        other = post({"provider": "openai", "tenant": "globex"}, "acme_admin")
        assert other.status_code == 403
        answer = post(
            {"provider": "openai", "tenant": "acme", "fingerprint": al.fingerprint(ALPHA)}, "acme_admin"
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["params"]["fingerprint"] == al.fingerprint(ALPHA)
        until_key(pool, BRAVO)
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
        # another tenant's rotate does not reach this process
        assert post({"provider": "openai", "tenant": "globex"}, "globex_admin").status_code == 202
        deadline = time.monotonic() + 5
        while "keys.manual:provider@globex/openai/*" not in guard.commands and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "keys.manual:provider@globex/openai/*" in guard.commands
        time.sleep(0.05)  # let the Guard's thread finish the batch (it would act right after)
        assert pool.current() is not None and pool.current()[0] == BRAVO  # type: ignore[index]
        # and one for every tenant, naming bravo, moves it back to alpha
        answer = post({"provider": "openai", "fingerprint": al.fingerprint(BRAVO)}, "admin")
        assert answer.status_code == 202, answer.text
        until_key(pool, ALPHA)
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert fake.keys_seen == [ALPHA, BRAVO, ALPHA]
    records = control_records(topics.bootstrap, topics.control)
    assert sorted({k for k, _ in records}) == [
        b"keys.manual:provider/openai/*", b"keys.manual:provider@acme/openai/*", b"keys.manual:provider@globex/openai/*",
    ]  # fmt: skip
    for secret in (ALPHA, BRAVO):
        assert not any(secret.encode() in v for _, v in records)
