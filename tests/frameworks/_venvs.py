"""One virtualenv per framework under ``<repo>/.venvs/<name>`` (their dependencies clash), made
once and reused: a stamp of the requirements file and the pyproject files decides whether
anything is installed. A failed install fails the test with pip's output; nothing is skipped."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
VENVS = REPO / ".venvs"


def client_install_args(repo: Path) -> list[str]:
    """pip arguments that install the agentledger client from this checkout (no extras).

    The one place to change when the client's folders move."""
    return ["-e", str(repo / "contract"), "-e", str(repo / "collectors")]


def _pyprojects(repo: Path) -> list[Path]:
    return sorted([repo / "pyproject.toml", *repo.glob("*/pyproject.toml")])


def stamp(name: str, repo: Path = REPO) -> str:
    digest = hashlib.sha1()
    for path in [REQUIREMENTS / f"{name}.txt", *_pyprojects(repo)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}",
            pytrace=False,
        )


def _installer(python: Path) -> list[str]:
    """``uv pip install`` into that venv (uv comes with the dev group: an eighth of pip's CPU
    for the same set, which matters while other tests run), else pip."""
    uv = Path(sys.executable).parent / "uv"
    if uv.is_file():
        return [str(uv), "pip", "install", "-q", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]


def framework_python(name: str, nice: bool = False) -> Path:
    """The python of the framework's venv, created or brought up to date first."""
    requirements = REQUIREMENTS / f"{name}.txt"
    assert requirements.is_file(), f"no requirements file {requirements}"
    venv = VENVS / name
    python = venv / "bin" / "python"
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions may build the same venv
        marker = venv / f".installed-{stamp(name)}"
        if marker.exists() and python.exists():
            return python
        started = time.monotonic()
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"creating the {name} venv")
        for old in venv.glob(".installed-*"):
            old.unlink()
        pip = [*(["nice", "-n", "10"] if nice else []), *_installer(python)]
        _run([*pip, "-r", str(requirements), *client_install_args(REPO)], f"installing {name}")
        marker.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
        print(f"[{name} venv installed in {time.monotonic() - started:.0f}s]", file=sys.stderr)
    return python


def prebuild_in_background(names: list[str]) -> threading.Thread:
    """Build these venvs one after the other in a daemon thread, at low CPU priority, while
    other tests run. A test that needs one waits on its lock; a failed build is retried (and
    reported) by the test itself."""

    def build() -> None:
        for name in names:
            if (REQUIREMENTS / f"{name}.txt").is_file():
                try:
                    framework_python(name, nice=True)
                except BaseException:  # noqa: BLE001 - pytest.fail's exception too: the test reports it
                    continue

    thread = threading.Thread(target=build, name="framework-venvs", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":  # build venvs ahead of a test run: python tests/frameworks/_venvs.py [NAME...]
    for arg in sys.argv[1:] or [p.stem for p in sorted(REQUIREMENTS.glob("*.txt"))]:
        python = framework_python(arg)
        print(arg, python, (python.parent.parent / f".installed-{stamp(arg)}").read_text().strip())
