"""HTTP transport: batched POST of ``{"events": [...]}`` to ``<api_url>/v1/events`` with
``Authorization: Bearer <api_key>``, retried with exponential backoff on network errors, 429
and 5xx. Standard library only (the client installs no HTTP package); runs on the worker
thread, so a slow API never blocks agent code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from pydantic_core import to_json

from .transport import Batch, Outcome

log = logging.getLogger("agentledger.collectors")


def _rejected(body: str) -> list[dict[str, Any]]:
    """The ``rejected`` list of the API's 202 answer (empty if absent or unreadable)."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return []
    rejected = doc.get("rejected") if isinstance(doc, dict) else None
    return [r for r in rejected if isinstance(r, dict)] if isinstance(rejected, list) else []


class HttpTransport:
    """POST batches to the agentledger API's ingest endpoint."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 6,
        max_events_per_request: int = 2_000,
        backoff_s: float = 0.2,
    ) -> None:
        if not api_url or not api_key:
            raise ValueError("HttpTransport needs api_url and api_key")
        self.url = api_url.rstrip("/") + "/v1/events"
        self.api_key = api_key
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_events = max_events_per_request
        self.backoff_s = backoff_s
        self._pending = 0

    def _post(self, body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return int(resp.status), resp.read(1_000_000).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(2000).decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return 0, repr(exc)

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        events = [e for b in batches for e in b.events]
        self._pending = len(events)  # counted here from now on (the worker lets go of them)
        batches.clear()
        try:
            for start in range(0, len(events), self.max_events):
                chunk = events[start : start + self.max_events]
                await self._send_chunk(to_json({"events": chunk}), len(chunk), outcome)
                self._pending -= len(chunk)
        finally:
            self._pending = 0

    async def _send_chunk(self, body: bytes, n: int, outcome: Outcome) -> None:
        delay = self.backoff_s
        detail = ""
        for _attempt in range(self.max_attempts):
            status, detail = self._post(body)
            if 200 <= status < 300:
                rejected = _rejected(detail)
                if rejected:  # the API refused some events by index (contract errors): not retried
                    outcome.failed(len(rejected), f"API rejected: {rejected[0].get('reason', '')[:300]}")
                outcome.delivered(n - len(rejected))
                return
            if status and status < 500 and status != 429:  # the API said no: retrying cannot help
                outcome.failed(n, f"HTTP {status}: {detail[:300]}")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        outcome.failed(n, f"gave up after {self.max_attempts} attempts: {detail[:300]}")

    def pending(self) -> int:
        return self._pending

    async def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def close(self, timeout: float) -> None:
        return None

    def after_fork(self) -> None:
        self._pending = 0
