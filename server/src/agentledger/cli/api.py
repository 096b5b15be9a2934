"""``agentledger api serve`` and ``agentledger keys create|list|revoke``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from agentledger.cli._common import bootstrap, console, loglevel_option, require_topics, settings

api_app = typer.Typer(
    help="Run the HTTP API (ingest, OTLP, queries, control, dashboards).", no_args_is_help=True
)
if TYPE_CHECKING:
    from agentledger.api.keys import KeyStore

keys_app = typer.Typer(
    help="Manage API keys (stored hashed; scopes ingest, read, admin).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(api_app, name="api")
    app.add_typer(keys_app, name="keys")


@api_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Processes (each keeps its own live views)."),
    root: str = typer.Option(None, help="Warehouse root for queries and dashboards (default: settings)."),
    loglevel: str = loglevel_option(),
) -> None:
    """Serve the API with uvicorn (uvloop when installed)."""
    import os

    import uvicorn

    # The app factory reads settings; make sure it sees the broker we resolved here.
    s = settings()
    boot = bootstrap(s)
    require_topics(boot, "api", s)
    os.environ.setdefault("AGENTLEDGER_KAFKA_BOOTSTRAP", boot)
    if root:
        os.environ["AGENTLEDGER_WAREHOUSE_URI"] = root
    from agentledger.settings import get_settings

    get_settings.cache_clear()
    options = {"host": host, "port": port, "log_level": loglevel, "access_log": False}
    if workers > 1:  # uvicorn's process manager imports the app in each process
        _say_ready(boot, s.topic_prefix, f"http://{host}:{port}", f"{workers} processes")
        uvicorn.run("agentledger.api.app:create_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
        return
    from agentledger.api.app import create_app

    app = create_app()
    ledger = app.state.ledger

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the Kafka clients are up and the port is bound
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                limit = f"records up to {ledger.publisher.max_value_bytes:,} bytes"
                _say_ready(boot, s.topic_prefix, f"http://{host}:{bound}", limit)

    _Server(uvicorn.Config(app, **options)).run()  # type: ignore[arg-type]


def _say_ready(boot: str, prefix: str, url: str, *facts: str) -> None:
    from agentledger.cli._ready import ready_line, say

    say(ready_line("api", boot, prefix, *facts, f"serving on {url}"))


def _store() -> KeyStore:
    from agentledger.api.config import get_api_settings
    from agentledger.api.keys import KeyStore

    return KeyStore(get_api_settings().resolved_keys_path())


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. `billing-bot`."),
    scope: list[str] = typer.Option(["ingest"], "--scope", "-s", help="ingest, read or admin (repeat)."),
    tenant: str = typer.Option(None, help="Bind to a tenant (required unless admin for all tenants)."),
) -> None:
    """Create a key; the token is printed once and only its hash is stored."""
    from agentledger.api.keys import KeyScope
    from agentledger.errors import ConfigError

    try:
        scopes = {KeyScope(s) for s in scope}
    except ValueError:
        raise ConfigError(f"scopes are ingest, read, admin; got {scope}") from None
    key, token = _store().create(name, scopes, tenant)
    console.print(f"key id {key.key_id} ({', '.join(sorted(key.scopes))}; tenant {key.tenant or '*'})")
    console.print(token)


@keys_app.command("list")
def list_() -> None:
    """Every key: id, name, scopes, tenant, created, revoked."""
    from agentledger.cli._output import print_table

    rows = [[k.key_id, k.name, ", ".join(sorted(k.scopes)), k.tenant or "*", k.created_at,
             f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"] for k in _store().list()]  # fmt: skip
    print_table(["key id", "name", "scopes", "tenant", "created", "state"], rows)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The id shown by `keys list`.")) -> None:
    """Revoke a key at once (the API checks the store on every request)."""
    _store().revoke(key_id)
    console.print(f"revoked {key_id}")
