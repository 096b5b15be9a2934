"""A supervised group of processes: started in order, watched, stopped cleanly in reverse.

Each child gets its own process group (so a Ctrl-C in the terminal reaches us, not them, and
we stop them in order), its output in ``<run_dir>/<name>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentledger.localkafka import tail


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None


class ProcessGroup:
    def __init__(self, run_dir: Path, env: Mapping[str, str]) -> None:
        self.run_dir = run_dir
        self.env = dict(env)
        self.children: list[Child] = []
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], python_module: bool = True) -> Child:
        """Start ``python -m agentledger <args>`` (or a raw command) as ``name``."""
        cmd = [sys.executable, "-m", "agentledger", *args] if python_module else list(args)
        log = self.run_dir / f"{name}.log"
        fh = open(log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, start_new_session=True,
        )  # fmt: skip
        fh.close()
        child = Child(name, cmd, log, proc)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def describe_dead(self) -> str:
        return "\n".join(
            f"{c.name} exited with {c.proc.returncode}; last lines of {c.log}:\n{tail(c.log, 15)}"
            for c in self.dead()
        )

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM in reverse start order, wait, SIGKILL what is left."""
        report = []
        for child in reversed(self.children):
            if child.alive():
                try:
                    os.killpg(child.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
                report.append(f"{child.name}: stopped ({child.proc.returncode})")
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
                report.append(f"{child.name}: did not stop in {timeout:.0f}s, killed")
        self.children.clear()
        return report
