"""Run the real API on 127.0.0.1 in a background thread (tests, benchmarks, demos)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from agentledger.api.keys import KeyScope, KeyStore


class ApiServer:
    """``with ApiServer(app) as url:`` serves ``app`` with uvicorn on a free loopback port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="api-server", daemon=True
        )

    def start(self, timeout_s: float = 30.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (see the log above)")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


ROLES: dict[str, tuple[set[str], str | None]] = {
    "admin": ({"admin"}, None),
    "acme_ingest": ({"ingest"}, "acme"),
    "acme_read": ({"read"}, "acme"),
    "acme_admin": ({"admin"}, "acme"),
    "globex_ingest": ({"ingest"}, "globex"),
    "globex_read": ({"read"}, "globex"),
    "globex_admin": ({"admin"}, "globex"),
}


def standard_keys(path: Path) -> dict[str, str]:
    """Tokens for the usual roles (an all-tenant admin, and ingest/read/admin for two tenants)."""
    store = KeyStore(path)
    try:
        return {
            role: store.create(role, {KeyScope(s) for s in scopes}, tenant)[1]
            for role, (scopes, tenant) in ROLES.items()
        }
    finally:
        store.close()
