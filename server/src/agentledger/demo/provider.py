"""A small OpenAI- and Anthropic-compatible HTTP server on 127.0.0.1 with fixed token usage.

Real SDK clients talk to it over HTTP (``OPENAI_BASE_URL=http://127.0.0.1:PORT/v1``,
``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``), so documented examples and framework tests run
the provider SDKs' own request and response code, with no key and no cost. It serves:

- ``POST /v1/chat/completions`` (OpenAI), plain or ``stream=True`` (SSE chunks; the usage chunk
  when ``stream_options={"include_usage": true}``, as OpenAI does);
- ``POST /v1/responses`` (OpenAI Responses API), plain or streamed (created, text delta,
  completed with usage);
- ``POST /v1/messages`` (Anthropic), plain or ``stream=True`` (the Messages event sequence);
- ``GET /v1/models``.

Every answer reports the same usage (``FakeProvider.usage``), so a test knows the cost of a
call in advance. Requests are kept in ``requests`` (path and JSON body), and in ``log`` with
their arrival time (``time.monotonic()``) and the status answered.

Rate limiting, as a provider does it: ``FakeProvider(rate_limit_s=2)`` answers every POST that
arrives within ``rate_limit_s`` seconds of the first one with ``429`` and ``Retry-After`` (the
whole seconds left of that window, 2 for the first), and answers normally after it.
A slow provider: ``FakeProvider(delay_s=1.5)`` waits that long before each answer.

Agents that delegate need a tool call: a plain chat completion that offers tools answers the
conversation's first turn with a call to the tool named by a ``[[call:NAME]]`` marker in its
system or user messages (unless a user message already reports on that tool: smolagents folds
a failed call into the next user message), and later turns (or a first turn with no marker)
with a call to ``final_answer`` when that tool is offered (smolagents' way to finish);
otherwise with text.

    with FakeProvider() as fake:
        os.environ["OPENAI_BASE_URL"] = fake.openai_base_url

Run it by hand for the quickstart: ``python -m agentledger.demo.provider --port 8765`` (or
``python tests/fakeprovider.py --port 8765``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class FixedUsage:
    """Tokens every answer reports. ``input_tokens`` counts cache reads, as OpenAI does."""

    input_tokens: int = 1000
    output_tokens: int = 200
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0  # inside output_tokens (OpenAI chat and Responses report them)

    def openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def anthropic(self) -> dict[str, Any]:
        # Anthropic's input_tokens exclude cache reads; they are reported apart.
        return {
            "input_tokens": self.input_tokens - self.cache_read_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": 0,
        }


ANSWER = "4"
_ids = itertools.count(1)


def _unique(prefix: str) -> str:
    """A response id as unique as a real provider's (agentledger dedupes calls by it)."""
    return f"{prefix}fake{uuid.uuid4().hex[:20]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(
                200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "owned_by": "fake"}]}
            )
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        path = self.path.split("?")[0].rstrip("/")
        auth = self.headers.get("x-api-key") or (self.headers.get("Authorization") or "").removeprefix(
            "Bearer "
        )
        arrived = time.monotonic()
        with self.server.lock:
            self.server.requests.append((path, body))
            self.server.keys_seen.append(auth)
            answers = self.server.key_answers.get(auth)
            refuse = answers.popleft() if answers else None
            limited = None if refuse is not None else self.server.rate_limited(arrived)
            self.server.log.append((arrived, path, refuse or (429 if limited else 200)))
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        if refuse is not None:
            self._refuse(refuse)
            return
        if limited is not None:
            self._json(
                429,
                {"error": {"message": "rate limited (fake)", "type": "rate_limit_error"}},
                {"Retry-After": str(limited), "x-should-retry": "true"},
            )
        elif path == "/v1/chat/completions":
            self._openai(body)
        elif path == "/v1/responses":
            self._responses(body)
        elif path == "/v1/messages":
            self._anthropic(body)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    # -- OpenAI ------------------------------------------------------------------------

    def _openai(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o"))
        cid, now = self.server.chat_id(), int(time.time())
        usage = self.server.usage.openai()
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": ANSWER}
            call = _tool_call(body)
            if call is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
            self._json(200, {
                "id": cid, "object": "chat.completion", "created": now, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls" if call else "stop", "message": message}],
                "usage": usage,
            })  # fmt: skip
            return
        base = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        self._sse([(None, c) for c in chunks], done=True)

    def _responses(self, body: dict[str, Any]) -> None:
        """The Responses API (what the OpenAI Agents SDK and Pydantic AI use by default)."""
        model = str(body.get("model", "gpt-4o"))
        u = self.server.usage
        text = {"type": "output_text", "text": ANSWER, "annotations": []}
        item = {"type": "message", "id": f"msg_fake{next(_ids)}", "status": "completed", "role": "assistant",
                "content": [text]}  # fmt: skip
        response = {
            "id": _unique("resp_"), "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": model, "output": [item], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {},
            "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                      "total_tokens": u.input_tokens + u.output_tokens,
                      "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
                      "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens}},
        }  # fmt: skip
        if not body.get("stream"):
            self._json(200, response)
            return
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": started}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                            "output_index": 0, "content_index": 0, "delta": ANSWER}),
            ("response.completed", {"type": "response.completed", "response": response}),
        ]  # fmt: skip
        for n, (_, data) in enumerate(events):
            data["sequence_number"] = n
        self._sse(events, done=False)

    # -- Anthropic ---------------------------------------------------------------------

    def _anthropic(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "claude-sonnet-4-6"))
        usage = self.server.usage.anthropic()
        message = {
            "id": _unique("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
        }  # fmt: skip
        if not body.get("stream"):
            self._json(200, message)
            return
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": ANSWER}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": usage["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        self._sse(events, done=False)

    # -- wire --------------------------------------------------------------------------

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _refuse(self, status: int) -> None:
        """A scripted 401 or 429 for this key (``FakeProvider(key_answers=...)``); asks the SDK
        not to retry it itself, and a 429 says when to come back."""
        kind = "rate_limit_error" if status == 429 else "authentication_error"
        raw = json.dumps({"error": {"message": f"scripted {status}", "type": kind}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("x-should-retry", "false")
        if status == 429:
            self.send_header("retry-after-ms", "300")
        self.end_headers()
        self.wfile.write(raw)

    def _sse(self, events: list[tuple[str | None, dict[str, Any]]], done: bool) -> None:
        parts = []
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            parts.append(f"{head}data: {json.dumps(data)}\n\n")
        if done:
            parts.append("data: [DONE]\n\n")
        raw = "".join(parts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


_MARKER = re.compile(r"\[\[call:([A-Za-z0-9_.-]+)\]\]")
_SAMPLE = {"string": ANSWER, "integer": 4, "number": 4, "boolean": True, "object": {}, "array": []}


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool call a chat request gets (see the module docstring), or None for text."""
    tools = {
        t["function"]["name"]: t["function"]
        for t in body.get("tools") or []
        if t.get("type") == "function" and isinstance(t.get("function"), dict)
    }
    if not tools:
        return None
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    name = None
    if not any(m.get("role") in ("assistant", "tool") for m in messages):  # the conversation's first turn
        asked = json.dumps(
            [m.get("content") for m in messages if m.get("role") in ("system", "developer", "user")]
        )
        said = json.dumps([m.get("content") for m in messages if m.get("role") == "user"])
        wanted = _MARKER.search(asked)
        if wanted and wanted.group(1) in tools and wanted.group(1) not in said.replace(wanted.group(0), ""):
            name = wanted.group(1)  # not yet called: no user message reports on it (smolagents' retries)
    if name is None and "final_answer" in tools:
        name = "final_answer"
    if name is None:
        return None
    schema = tools[name].get("parameters") or {}
    properties = schema.get("properties") or {}
    args = {
        key: _SAMPLE.get(str((properties.get(key) or {}).get("type")), ANSWER)
        for key in schema.get("required") or []
    }
    return {
        "id": f"call_fake{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    usage: FixedUsage
    lock: threading.Lock
    requests: list[tuple[str, dict[str, Any]]]
    keys_seen: list[str]
    key_answers: dict[str, deque[int]]
    id_cycle: int | None
    rate_limit_s: float | None
    delay_s: float
    limited_since: float | None
    log: list[tuple[float, str, int]]

    def rate_limited(self, now: float) -> int | None:
        """The Retry-After (whole seconds) to answer a request arriving ``now`` with, or None."""
        if self.rate_limit_s is None:
            return None
        if self.limited_since is None:
            self.limited_since = now
        left = self.limited_since + self.rate_limit_s - now
        return max(1, math.ceil(left)) if left > 0 else None

    def chat_id(self) -> str:
        if self.id_cycle is None:
            return _unique("chatcmpl-")
        return f"chatcmpl-{next(_ids) % self.id_cycle}"  # Ollama's kind: chatcmpl-<0..998>, reused


class FakeProvider:
    """The server, started on a thread (``start``/``stop`` or a ``with`` block)."""

    def __init__(
        self,
        port: int = 0,
        usage: FixedUsage | None = None,
        id_cycle: int | None = None,
        key_answers: Mapping[str, list[int]] | None = None,
        rate_limit_s: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """``id_cycle``: chat completion ids ``chatcmpl-<n % id_cycle>``, reused as Ollama's are
        (default: unique ids, as OpenAI's). ``key_answers``: API key -> statuses (401, 429)
        its next requests get, one each, before it is served normally. ``rate_limit_s``: answer
        429 + ``Retry-After`` for that many seconds from the first request on. ``delay_s``: wait
        before each answer."""
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.usage = usage or FixedUsage()
        self._server.id_cycle = id_cycle
        self._server.lock = threading.Lock()
        self._server.requests = []
        self._server.keys_seen = []
        self._server.key_answers = {k: deque(v) for k, v in (key_answers or {}).items()}
        self._server.rate_limit_s = rate_limit_s
        self._server.limited_since = None
        self._server.delay_s = delay_s
        self._server.log = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def usage(self) -> FixedUsage:
        return self._server.usage

    @property
    def log(self) -> list[tuple[float, str, int]]:
        """(arrival ``time.monotonic()``, path, status answered) of every POST, in order."""
        with self._server.lock:
            return list(self._server.log)

    @property
    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def keys_seen(self) -> list[str]:
        """The API key each request carried, in order (refused ones too)."""
        with self._server.lock:
            return list(self._server.keys_seen)

    def env(self) -> dict[str, str]:
        """Environment that points the official OpenAI and Anthropic SDKs here."""
        return {
            "OPENAI_BASE_URL": self.openai_base_url,
            "OPENAI_API_KEY": "sk-fake",
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": "sk-ant-fake",
        }

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    fake = FakeProvider(port)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill %1` stops it like Ctrl-C does
    print(
        f"fake OpenAI/Anthropic provider at {fake.url} (OPENAI_BASE_URL={fake.openai_base_url})", flush=True
    )
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()


if __name__ == "__main__":
    main()
