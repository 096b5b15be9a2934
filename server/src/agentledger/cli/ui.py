"""``agentledger ui link``: a one-time sign-in link for the dashboards."""

from __future__ import annotations

import typer

from agentledger.cli._common import settings

ui_app = typer.Typer(help="Dashboard sign-in.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ui_app, name="ui")


@ui_app.command("link")
def link(
    key_id: str = typer.Argument(..., help="The key's id (`agentledger keys list`); read or admin scope."),
    next_page: str = typer.Option("/ui/overview", "--next", help="The /ui page to open after signing in."),
    ttl: float = typer.Option(900, min=30, max=86_400, help="Seconds the link stays valid (one use)."),
    url: str = typer.Option(None, help="The API's base URL (default: AGENTLEDGER_API_URL)."),
) -> None:
    """Print a link that signs a browser in once, within --ttl seconds. The browser gets a
    session for the key; the key itself never appears in the link."""
    from urllib.parse import urlencode

    from agentledger.api.config import get_api_settings
    from agentledger.api.keys import KeyScope, KeyStore
    from agentledger.api.sessions import SignInStore
    from agentledger.errors import ConfigError, NotFoundError

    if not next_page.startswith("/ui/"):
        raise ConfigError(f"--next must be a /ui page, got {next_page!r}")
    keys = KeyStore(get_api_settings().resolved_keys_path())
    try:
        key = keys.get(key_id)
    finally:
        keys.close()
    if key is None:
        raise NotFoundError(f"no active key with id {key_id!r} (see `agentledger keys list`)")
    if not key.allows(KeyScope.READ):
        raise ConfigError(f"key {key_id} lacks the read scope: ingest-only keys cannot open dashboards")
    s = settings()
    store = SignInStore.at_home(s.home)
    try:
        token = store.issue_link(key_id, ttl_s=ttl)
    finally:
        store.close()
    base = (url or s.api_url).rstrip("/")
    # plain print: a console would wrap a long link
    print(f"{base}/ui/link?{urlencode({'token': token, 'next': next_page})}")
