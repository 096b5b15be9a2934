"""One spelling per idea across the command line: `--root` for the warehouse, `--loglevel` with
one default for every long-running service."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from agentledger.cli import build_app

SERVICES = ("worker", "health", "sink", "alerts dispatch", "api serve")


def _commands() -> dict[str, Any]:
    root = typer.main.get_command(build_app())
    out: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        out[path] = cmd
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}".strip())

    walk(root, "")
    return out


def _visible(cmd: Any) -> dict[str, Any]:
    return {
        flag: p
        for p in cmd.params
        if p.param_type_name == "option" and not getattr(p, "hidden", False)
        for flag in p.opts
    }


def test_the_warehouse_root_is_spelled_root_everywhere() -> None:
    commands = _commands()
    shown: dict[str, Any] = {path: _visible(cmd) for path, cmd in commands.items()}
    assert "--root" in shown["report"]
    assert not [path for path, flags in shown.items() if "--warehouse" in flags]
    # the old spelling still works, unseen
    assert "--warehouse" in {f for p in commands["report"].params for f in p.opts}


def test_every_service_takes_loglevel_with_one_default() -> None:
    commands = _commands()
    defaults = {}
    for path in SERVICES:
        flags = _visible(commands[path])
        assert "--loglevel" in flags, path
        defaults[path] = flags["--loglevel"].default
    assert set(defaults.values()) == {"warning"}, defaults


def test_a_loglevel_that_does_not_exist_is_refused() -> None:
    done = CliRunner().invoke(build_app(), ["sink", "--loglevel", "chatty"], env={"COLUMNS": "200"})
    assert done.exit_code == 2
    assert "debug, info, warning, error" in done.output
