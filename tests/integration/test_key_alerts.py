"""A provider key whose calls fail raises one alert (docs/security.md, "A failing key"): the
openai SDK through the hook with a key pool, the local provider answering 401 on one key, a
real broker, a real `agentledger health` process and the alert dispatcher delivering to a real
webhook receiver on 127.0.0.1. The alert names the provider and the key's fingerprint, never
the key; it resolves once the key has stopped failing; the provider's circuit is not touched
(a refused key is not an unhealthy provider)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import yaml
from fakeprovider import FakeProvider

from agentledger import collectors as al
from agentledger.collectors import keys
from agentledger.events import AlertEvent, AlertState

ALPHA, BRAVO = "sk-alpha-alert-51c2e7", "sk-bravo-alert-0e9d44"
MSGS = [{"role": "user", "content": "2 + 2?"}]
SECRET = "whsec_key_alert_test"


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.raw.append(body)
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def until(cond: Callable[[], Any], timeout: float, why: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {why}" + (log.read_text()[-4000:] if log else ""))
        time.sleep(0.2)


def test_a_key_answering_401s_raises_one_alert_that_resolves_after_recovery(
    topics: Any, tmp_path: Path
) -> None:
    hook = Receiver()
    alerts_doc = {
        "retry": {"base_s": 0.2, "max_s": 1.0, "timeout_s": 2.0},
        "channels": [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{hook.port}/", "secret": SECRET}],
        "routes": [{"rule": "provider.*", "channels": ["hook"]}],
    }  # fmt: skip
    config = tmp_path / "health.yaml"
    config.write_text(
        yaml.safe_dump({"alerts": alerts_doc, "providers": {"keys": {"window_s": 10, "min_errors": 3}}})
    )
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix,
               AGENTLEDGER_HOME=str(tmp_path / "home"))  # fmt: skip
    log = tmp_path / "health.log"
    with log.open("wb") as out:
        health = subprocess.Popen(
            [sys.executable, "-m", "agentledger", "health", "--config", str(config), "--datadir",
             str(tmp_path / "faust"), "--from", "earliest"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    dlog = tmp_path / "dispatch.log"
    with dlog.open("wb") as out:
        dispatcher = subprocess.Popen(
            [sys.executable, "-m", "agentledger", "alerts", "dispatch", "--config", str(config), "--state",
             str(tmp_path / "dispatch.db")],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    path = tmp_path / "openai.keys"
    path.write_text(f"{ALPHA}\n{BRAVO}\n")
    pool = al.KeyPool(al.FileKeys(path))
    try:
        until(lambda: "health ready" in log.read_text(), 120, "the health worker consuming")
        until(lambda: "alerts dispatch ready" in dlog.read_text(), 60, "the dispatcher consuming", dlog)
        with FakeProvider(key_answers={ALPHA: [401, 401, 401]}) as fake:
            al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5,
                         keys={"openai": pool})  # fmt: skip
            al.instrument(enforce=False)
            try:
                client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-client-own")
                with al.span("answer", kind="agent", agent="support"):
                    for _ in range(3):  # every call succeeds, on bravo; alpha is refused each time
                        client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                        keys.rotate("openai")  # e.g. the secret re-read: alpha is tried again
                    assert al.flush(10)
                    until(lambda: len(hook.bodies) >= 1, 90, "the key alert at the webhook", dlog)
                    # the key is fixed: it answers again
                    client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                    assert al.flush(10)
                assert fake.keys_seen == [ALPHA, BRAVO] * 3 + [ALPHA]
            finally:
                al.uninstrument()
                al.shutdown(5)
                keys.set_keys(None)
        until(lambda: len(hook.bodies) >= 2, 60, "the resolve at the webhook", log)
        time.sleep(2)  # a third delivery would arrive now
    finally:
        for proc in (dispatcher, health):
            proc.terminate()
            proc.wait(20)
        hook.server.shutdown()
    fp = al.fingerprint(ALPHA)
    assert [(b["resolved"], b["alert"]["rule"], b["alert"]["entity"]) for b in hook.bodies] == [
        (False, "provider.key", f"openai/{fp}"),
        (True, "provider.key", f"openai/{fp}"),
    ], log.read_text()[-3000:]
    raised = AlertEvent.model_validate(hook.bodies[0]["alert"])
    assert raised.state is AlertState.ALERT
    assert raised.figures["fingerprint"] == fp and raised.figures["errors"] == 3
    assert all(ALPHA.encode() not in r and BRAVO.encode() not in r for r in hook.raw)
    assert "provider.circuit" not in log.read_text()
