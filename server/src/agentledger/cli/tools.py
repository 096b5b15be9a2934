"""``agentledger tools put|get|list|delete`` (tool policies) and ``agentledger approvals
list|approve|deny``, against the API (docs/security.md, "Tool permissions"): the API checks the
key's tenant and records who decided. ``--api-url`` / ``AGENTLEDGER_API_URL`` and ``--api-key``
/ ``AGENTLEDGER_API_KEY`` say where and as whom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console, settings

tools_app = typer.Typer(help="Tool permissions: which tools agents may call.", no_args_is_help=True)
approvals_app = typer.Typer(help="Tool calls waiting for a human: list, approve, deny.", no_args_is_help=True)

_URL = typer.Option(
    None, "--api-url", help="The API (default: AGENTLEDGER_API_URL, else http://127.0.0.1:8000)."
)
_KEY = typer.Option(None, "--api-key", help="An API key (default: AGENTLEDGER_API_KEY).", show_default=False)


def register(app: typer.Typer) -> None:
    app.add_typer(tools_app, name="tools")
    app.add_typer(approvals_app, name="approvals")


def _call(method: str, path: str, url: str | None, key: str | None, body: Any = None) -> Any:
    """One API request; an HTTP error becomes a clear message (the API's own words)."""
    import urllib.error
    import urllib.request

    from agentledger.errors import ConfigError, NotFoundError

    s = settings()
    base = (url or s.api_url).rstrip("/")
    token = key or s.api_key
    if not token:
        raise ConfigError("no API key: pass --api-key or set AGENTLEDGER_API_KEY (`agentledger keys create`)")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:2000].decode(errors="replace")
        try:
            detail = json.loads(detail).get("detail", detail)
        except (ValueError, AttributeError):
            pass
        error = NotFoundError if exc.code == 404 else ConfigError
        raise error(f"{method} {path}: HTTP {exc.code}: {detail}") from None
    except OSError as exc:
        raise ConfigError(f"cannot reach the API at {base}: {exc}") from None
    return json.loads(raw) if raw else None


def _policies_in(file: Path) -> list[dict[str, Any]]:
    import yaml

    from agentledger.errors import ConfigError

    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from None
    if isinstance(doc, dict) and "tool_policies" in doc:
        doc = doc["tool_policies"]
    found = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(p, dict) and p.get("policy_id") for p in found):
        raise ConfigError(
            f"{file}: expected a tool policy, a list of them, or `tool_policies:` (each with a policy_id)"
        )
    return found


def _print_policies(policies: list[dict[str, Any]]) -> None:
    from agentledger.cli._output import print_table

    rows = []
    for p in policies:
        sel = p["selector"]
        who = "/".join(x for x in (sel["tenant"], sel.get("agent"), sel.get("agent_version")) if x)
        rules = ", ".join(
            f"{r['tool']}: {r['decision']}" + (f" (max {r['max_calls_per_trace']}/trace)" if r.get("max_calls_per_trace") is not None else "")
            for r in p["rules"]
        )  # fmt: skip
        rows.append([p["policy_id"], who, rules, f"{p['approval_timeout_s']:g}s -> {p['on_timeout']}"])
    print_table(["policy", "applies to", "rules (first match)", "approval timeout"], rows)


@tools_app.command("put")
def put(file: Path = typer.Argument(..., help="YAML or JSON: one tool policy, a list, or `tool_policies:`."),
        api_url: str = _URL, api_key: str = _KEY) -> None:  # fmt: skip
    """Create or replace tool policies; running Guards apply them within a second."""
    for policy in _policies_in(file):
        done = _call("PUT", f"/v1/tool-policies/{policy['policy_id']}", api_url, api_key, policy)
        console.print(f"put  {done['policy_id']}")


@tools_app.command("get")
def get(policy_id: str = typer.Argument(...), api_url: str = _URL, api_key: str = _KEY) -> None:
    """Print one tool policy (JSON)."""
    console.print_json(json.dumps(_call("GET", f"/v1/tool-policies/{policy_id}", api_url, api_key)))


@tools_app.command("list")
def list_(api_url: str = _URL, api_key: str = _KEY) -> None:
    """Every tool policy this key sees."""
    _print_policies(_call("GET", "/v1/tool-policies", api_url, api_key))


@tools_app.command("delete")
def delete(policy_id: str = typer.Argument(...), api_url: str = _URL, api_key: str = _KEY) -> None:
    """Delete a tool policy (running Guards drop it)."""
    _call("DELETE", f"/v1/tool-policies/{policy_id}", api_url, api_key)
    console.print(f"deleted  {policy_id}")


@approvals_app.command("list")
def approvals_list(
    state: str = typer.Option(None, help="pending, approved or denied (default: all)."),
    api_url: str = _URL,
    api_key: str = _KEY,
) -> None:
    """Approval requests, oldest first."""
    from agentledger.cli._output import print_table

    found = _call("GET", "/v1/approvals" + (f"?state={state}" if state else ""), api_url, api_key)
    rows = [
        [a["approval_id"], a["state"], f"{a['request']['tenant']}/{a['request']['agent']}", a["request"]["tool"],
         a["request"].get("policy_id") or "-", a["created_at"], a.get("decided_by") or "-"]
        for a in found
    ]  # fmt: skip
    print_table(["approval", "state", "agent", "tool", "policy", "asked", "decided by"], rows)


@approvals_app.command("approve")
def approve(approval_id: str = typer.Argument(...), api_url: str = _URL, api_key: str = _KEY) -> None:
    """Let the waiting tool call run."""
    done = _call("POST", f"/v1/approvals/{approval_id}/approve", api_url, api_key)
    console.print(f"{done['state']}  {approval_id} ({done['request']['tool']})")


@approvals_app.command("deny")
def deny(approval_id: str = typer.Argument(...), api_url: str = _URL, api_key: str = _KEY) -> None:
    """Refuse the waiting tool call: the agent gets ToolDenied."""
    done = _call("POST", f"/v1/approvals/{approval_id}/deny", api_url, api_key)
    console.print(f"{done['state']}  {approval_id} ({done['request']['tool']})")
