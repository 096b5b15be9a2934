"""Packaging promises a user relies on."""

from __future__ import annotations

import subprocess
import sys

from agentledger.version import __version__


def test_client_import_loads_no_server_dependency() -> None:
    code = (
        "import sys, agentledger.collectors, agentledger.events, agentledger.wire;"
        "heavy = ('faust', 'duckdb', 'pyarrow', 'fastapi', 'plotly', 'pandas', 'mode');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_layers_live_in_one_namespace() -> None:
    import agentledger.api
    import agentledger.collectors
    import agentledger.dashboards
    import agentledger.streams
    import agentledger.warehouse

    for mod in (
        agentledger.collectors,
        agentledger.streams,
        agentledger.warehouse,
        agentledger.api,
        agentledger.dashboards,
    ):
        assert mod.__name__.startswith("agentledger.")
    assert __version__


def test_cli_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentledger", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("kafka", "topics", "smoke", "schema"):
        assert command in out.stdout


def test_kafka_cluster_ids_never_look_like_an_option(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agentledger.localkafka import LocalKafka

    ids = {LocalKafka(tmp_path)._cluster_id(tmp_path) for _ in range(2000)}
    assert len(ids) == 2000 and not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)  # base64url of 16 bytes, as kafka-storage expects


def test_the_client_wheel_holds_the_client_and_the_contract_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder in ("contract", "collectors"):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root / folder)],
            check=True, capture_output=True,
        )  # fmt: skip
    names = {n for w in tmp_path.glob("*.whl") for n in zipfile.ZipFile(w).namelist() if n.endswith(".py")}
    packages = {n.rsplit("/", 1)[0] for n in names}
    assert packages == {"agentledger", "agentledger/collectors", "agentledger/collectors/frameworks"}, (
        packages
    )
    assert not {n for n in names if n.split("/")[-1] in ("localkafka.py", "samples.py")}
    assert "agentledger/__init__.py" not in names  # a namespace package: other distributions add to it
