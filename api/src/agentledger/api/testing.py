"""Run the real API on 127.0.0.1 in a background thread (tests, benchmarks, demos)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
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


def land_demo_warehouse(root: str, n_traces: int = 120, seed: int = 5) -> list[str]:
    """A small deterministic warehouse (priced events, alerts, commands) written with the
    warehouse's own code, for tests, screenshots and demos. Returns the trace ids."""
    from agentledger.events import (
        Action,
        AlertEvent,
        AlertState,
        CommandParams,
        ControlCommand,
        Scope,
        ScopeKind,
        Severity,
    )
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.rows import ModelBuffer
    from agentledger.warehouse.storage import Store, split_by_day
    from agentledger.warehouse.synthetic import T0, priced_events
    from agentledger.wire import dump

    store = Store(root)
    events = priced_events(n_traces, seed=seed)
    land_priced(store, events, "demo-events")
    at = [T0 + timedelta(hours=h) for h in (6, 9, 20, 30, 31)]
    figures: dict[str, dict[str, str | int | float | bool]] = {
        "canary.verdict": {"verdict": "rollback", "p_value": 0.003},
        "provider.circuit": {"calls": 40, "errors": 22, "error_rate": 0.55, "circuit": "open"},
    }
    alerts = [
        AlertEvent(
            alert_id=f"demo-alert-{i}",
            dedup_key=f"{rule}:{entity}",
            ts=ts,
            rule=rule,
            entity=entity,
            tenant="acme",
            state=state,
            severity=Severity.WARNING,
            summary=summary,
            figures=figures.get(rule, {}),
        )
        for i, (ts, rule, entity, state, summary) in enumerate(
            [
                (
                    at[0],
                    "quality.drift",
                    "acme/planner@v2:faithfulness",
                    AlertState.ALERT,
                    "faithfulness -12 %",
                ),
                (
                    at[1],
                    "quality.drift",
                    "acme/planner@v2:faithfulness",
                    AlertState.RESOLVED,
                    "back to baseline",
                ),
                (at[2], "canary.verdict", "acme/planner@v2", AlertState.WARN, "planner@v2 vs v1: rollback"),
                (at[3], "budget", "agent/acme/coder", AlertState.ALERT, "daily budget 100 % used"),
                (
                    at[4],
                    "provider.circuit",
                    "openai/mystery-1",
                    AlertState.ALERT,
                    "openai/mystery-1 circuit open",
                ),
            ]
        )
    ]
    commands = [
        ControlCommand(
            command_id="demo-cmd-0",
            ts=at[3],
            scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="coder"),
            action=Action.KILL,
            reason="daily budget exhausted",
            policy_id="daily",
            params=CommandParams(kill_reason="budget"),
        ),
        ControlCommand(
            command_id="demo-cmd-1",
            ts=at[4],
            scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="coder"),
            action=Action.RESUME,
            reason="limit raised",
            issued_by="key:ops",
        ),
    ]
    for dataset, models in (("alerts", alerts), ("commands", commands)):
        buffer = ModelBuffer(dataset)
        for offset, model in enumerate(models):
            buffer.add_record(dump(model), 0, offset)
        for day, part in split_by_day(buffer.to_table()):
            store.write(dataset, day, f"demo-{dataset}", part)
    return sorted({e.event.trace_id for e in events})
