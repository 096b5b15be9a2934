"""Provider key pools in the hook, with the real openai SDK, the local provider over HTTP and a
real broker: the first key answers 429 then 401, every call succeeds on the next key without a
restart, a rotated key file is picked up on the next call, events carry the key's fingerprint
and no secret reaches the topic or the logs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fakeprovider import FakeProvider

from agentledger import collectors as al
from agentledger import wire
from agentledger.collectors.keys import set_keys
from agentledger.events import UsageEvent

ALPHA, BRAVO, CHARLIE = "sk-alpha-0c1f9e", "sk-bravo-77d2a1", "sk-charlie-5b3e80"
MSGS = [{"role": "user", "content": "2 + 2?"}]


def usage_and_raw(bootstrap: str, topic: str, expect: int) -> tuple[list[UsageEvent], list[bytes]]:
    async def run() -> tuple[list[UsageEvent], list[bytes]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[UsageEvent] = []
        raw: list[bytes] = []
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for record in records:
                        raw.append(record.value)
                        out.extend(
                            e for e in wire.decode_envelope(record.value).events if isinstance(e, UsageEvent)
                        )
                if len(out) >= expect and not batch:
                    break
        finally:
            await consumer.stop()
        return out, raw

    return asyncio.run(run())


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(key_answers={ALPHA: [429, 401]}) as f:
        yield f


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "openai.keys"
    path.write_text(f"# mounted secret\n{ALPHA}\n{BRAVO}\n")
    return path


def test_429_then_401_move_to_the_next_key_and_a_rotated_file_is_picked_up(
    topics: Any, fake: FakeProvider, keyfile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = al.KeyPool(al.FileKeys(keyfile), al.EnvKeys("AGENTLEDGER_TEST_UNSET_KEY"))
    al.configure(
        tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5, keys={"openai": pool}
    )
    al.instrument(enforce=False)
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-client-own-key")
        with caplog.at_level(logging.DEBUG, "agentledger"), al.span("answer", kind="agent", agent="support"):
            first = client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            assert fake.keys_seen == [ALPHA, BRAVO]  # 429 on alpha: the same call went out on bravo
            time.sleep(0.4)  # alpha's Retry-After (300 ms) has passed
            second = client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            assert fake.keys_seen[2:] == [ALPHA, BRAVO]  # 401 on alpha: refused from now on
            client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            assert fake.keys_seen[4:] == [BRAVO]
            keyfile.write_text(f"{CHARLIE}\n")  # the secret is rotated under the running process
            client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            assert fake.keys_seen[5:] == [CHARLIE]

            async def async_call() -> None:
                aclient = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-client-own-key")
                await aclient.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                await aclient.close()

            asyncio.run(async_call())
            assert fake.keys_seen[6:] == [CHARLIE]
        assert first.choices and second.choices
        assert "sk-client-own-key" not in fake.keys_seen
        assert al.flush(10)
    finally:
        al.uninstrument()
        al.shutdown(5)
        set_keys(None)
    usage, raw = usage_and_raw(topics.bootstrap, topics.events, expect=5)
    assert [u.attributes.get("agentledger.key_fingerprint") for u in usage] == [
        al.fingerprint(BRAVO), al.fingerprint(BRAVO), al.fingerprint(BRAVO),
        al.fingerprint(CHARLIE), al.fingerprint(CHARLIE),
    ]  # fmt: skip
    for secret in (ALPHA, BRAVO, CHARLIE):
        assert not any(secret.encode() in r for r in raw), secret
        assert secret not in caplog.text, secret
    assert al.fingerprint(ALPHA) in caplog.text  # the logs name the refused key by fingerprint


def test_every_key_refused_gives_the_agent_the_providers_error(fake: FakeProvider, tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(f"{ALPHA}\n")
    al.configure(
        tenant="acme", transport=al.MemoryTransport(), keys={"openai": al.KeyPool(al.FileKeys(path))}
    )
    al.instrument(enforce=False)
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-client-own-key")
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert ALPHA not in str(err.value)
    finally:
        al.uninstrument()
        al.shutdown(5)
        set_keys(None)


def test_anthropic_calls_get_the_pool_key_in_x_api_key(tmp_path: Path) -> None:
    import anthropic

    path = tmp_path / "anthropic.keys"
    path.write_text(f"{ALPHA}\n{BRAVO}\n")
    memory = al.MemoryTransport()
    with FakeProvider(key_answers={ALPHA: [401]}) as fake:
        al.configure(tenant="acme", transport=memory, keys={"anthropic": al.KeyPool(al.FileKeys(path))})
        al.instrument(enforce=False)
        try:
            client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-client-own")
            with al.span("answer", kind="agent", agent="support"):
                reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)  # type: ignore[arg-type]
            assert reply.content and fake.keys_seen == [ALPHA, BRAVO]
            assert al.flush(10)
        finally:
            al.uninstrument()
            al.shutdown(5)
            set_keys(None)
    usage = [e for b in memory.batches for e in b.events if e["type"] == "usage"]
    assert [u["attributes"]["agentledger.key_fingerprint"] for u in usage] == [al.fingerprint(BRAVO)]
