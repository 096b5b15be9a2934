"""Usage from a streamed (SSE) response body that the agent reads itself, as bytes or lines
(``with_streaming_response``): the hook taps the body as it is read, keeps the response id
and the few events that carry usage, and hands them over once, when the body ends or closes.

Only lines that can carry what we need are decoded (one per call, not one per chunk). When
the hook asked a chat stream for its usage chunk (``stream_options.include_usage``), that
chunk is taken out of the bytes the agent reads, as it is for the SDK's own streams.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .usage import Usage, usage_from_anthropic, usage_from_openai

log = logging.getLogger("agentledger.collectors")

_RESPONSE_DONE = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


class BodyTap:
    """Feed it the body's chunks in order; ``close()`` (idempotent) reports the usage."""

    __slots__ = ("_buffer", "_done", "_finish", "_hide", "_items", "_operation", "_response_id")

    def __init__(
        self, operation: str, hide: bool, finish: Callable[[Usage | None, str | None], None]
    ) -> None:
        self._operation = operation  # "chat" | "responses" | "messages"
        self._hide = hide
        self._finish = finish
        self._buffer = b""
        self._items: list[dict[str, Any]] = []
        self._response_id: str | None = None
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        """Take one chunk of the body; return what the agent reads of it."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        if not self._hide:
            for line in lines:
                self._line(line)
            return chunk
        return b"".join(line + b"\n" for line in lines if self._line(line))

    def flush(self) -> bytes:
        """The body ended: its last line, if it had no newline."""
        rest, self._buffer = self._buffer, b""
        if not rest or not self._line(rest):
            return b""
        return rest if self._hide else b""

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            usage = self._usage()
        except Exception:
            log.debug("agentledger hook could not read usage from a streamed body", exc_info=True)
            usage = None
        self._finish(usage, self._response_id)

    # -- per line ----------------------------------------------------------------------

    def _line(self, line: bytes) -> bool:
        """Keep what carries the id or usage; False for the line the agent must not see."""
        if not line.startswith(b"data:"):
            return True
        try:
            return self._data(line[5:].strip())
        except ValueError:  # not JSON ([DONE], a keep-alive): the agent's business
            return True

    def _data(self, data: bytes) -> bool:
        if self._operation == "chat":
            first = self._response_id is None
            if not first and (b'"usage"' not in data or b'"usage":null' in data or b'"usage": null' in data):
                return True
            chunk = json.loads(data)
            if first:
                self._response_id = chunk.get("id")
            if chunk.get("usage"):
                self._items.append(chunk)
                return not (self._hide and not chunk.get("choices"))
            return True
        if self._operation == "responses":
            if any(kind in data for kind in _RESPONSE_DONE):
                event = json.loads(data)
                self._response_id = (event.get("response") or {}).get("id")
                self._items.append(event)
            return True
        if b'"message_start"' in data or b'"message_delta"' in data:
            event = json.loads(data)
            if event.get("type") == "message_start":
                self._response_id = (event.get("message") or {}).get("id")
            self._items.append(event)
        return True

    def _usage(self) -> Usage | None:
        if not self._items:
            return None
        if self._operation == "messages":
            return usage_from_anthropic(self._items)
        return usage_from_openai(self._items[-1])
