"""Runs the documentation's blocks for real (see ``docblocks`` for what each kind means).

One ``DocSession`` is one reader at one terminal: a private ``HOME`` (so ``~/.agentledger`` and
``AGENTLEDGER_HOME`` are temporary), a private topic prefix on the session's real broker, the
fake OpenAI/Anthropic provider in ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL``, and a working
folder where ``examples/`` and ``tests/`` of the repo are visible (the docs name them).

How the reader's broker is reached: ``agentledger`` commands get ``AGENTLEDGER_KAFKA_BOOTSTRAP``
(what ``agentledger kafka up`` records for them); code the reader writes names
``localhost:9092`` (what ``kafka up`` prints), which is replaced by the real address, and runs
without ``AGENTLEDGER_KAFKA_BOOTSTRAP``, exactly as a reader's script would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from docblocks import MAKE_SKIPS, ROOT, Block, shell_commands, synopsis_commands, synopsis_exports

BIN = Path(sys.executable).parent
DOC_BROKER = "localhost:9092"
# Fixed ports the docs name for servers the reader starts; each session gets free ones instead,
# so two test runs on one machine never meet.
DOC_PORTS = ("8765", "8000")
# Variables bash sets itself: never taken from an `export` line's environment.
_SHELL_OWN = {"_", "SHLVL", "PWD", "OLDPWD"}
_ENV_MARK = "--doctest-env--"
# agentledger commands that run until stopped: (words that name them, how to tell they are up)
LONG_RUNNING = {("worker",), ("health",), ("alerts", "dispatch"), ("sink",), ("api", "serve"), ("demo",)}
EXPECT_WITHIN_S = 60.0
COMMAND_TIMEOUT_S = 120.0


class DocFailure(AssertionError):
    """A documented block did not do what the documentation says."""


@dataclass
class Background:
    words: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    redirected: Path | None = None  # the `> file` the command writes its output to
    stopped: bool = False  # by us (``kill %N`` or the end of the session)

    def tail(self) -> str:
        text = self.log.read_text(errors="replace")
        if self.redirected is not None and self.redirected.exists():
            text += self.redirected.read_text(errors="replace")
        return text[-3000:]

    def stop(self) -> None:
        self.stopped = True
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@dataclass
class DocSession:
    tmp: Path
    bootstrap: str
    prefix: str
    provider_env: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cwd = self.tmp / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)
        for name in ("examples", "tests", "docs"):
            link = self.cwd / name
            if not link.exists():
                link.symlink_to(ROOT / name)
        home = self.tmp / "home"
        home.mkdir(exist_ok=True)
        # A reader's environment: none of ours, no real provider keys; a configured cluster's
        # security settings pass through (its address is given to the CLI, and code names it).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AGENTLEDGER_", "OPENAI_", "ANTHROPIC_"))
            or (k.startswith("AGENTLEDGER_KAFKA_") and k != "AGENTLEDGER_KAFKA_BOOTSTRAP")
        }
        env.update(self.provider_env)
        env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
        env["AGENTLEDGER_TOPIC_PREFIX"] = self.prefix
        self.env = env
        self.ports = {p: str(_free_port()) for p in DOC_PORTS}

    # -- environments ------------------------------------------------------------------

    def cli_env(self) -> dict[str, str]:
        return {**self.env, "AGENTLEDGER_KAFKA_BOOTSTRAP": self.bootstrap}

    def code(self, text: str) -> str:
        """A reader's code or command as it runs here: the documented broker address is the real
        one, documented server ports are free ones."""
        text = text.replace(DOC_BROKER, self.bootstrap)
        for doc_port, port in self.ports.items():
            text = re.sub(rf"(?<![\d.]){doc_port}(?!\d)", port, text)
        return text

    # -- blocks ------------------------------------------------------------------------

    def run(self, block: Block) -> None:
        kind = block.kind
        if kind == "python":
            self._expecting(block, lambda: self.run_python(block))
        elif kind == "shell":
            self.run_shell(block)
        elif kind == "file":
            target = self.cwd / block.marker("file").split()[0]  # type: ignore[union-attr]
            target.write_text(self.code(block.text))
        elif kind in ("yaml", "json"):
            check_data(block)
        elif kind == "synopsis":
            check_synopsis(block)
        elif kind in ("text", "skip"):
            return
        else:
            raise DocFailure(f"{block.id}: no way to run a ```{block.info} block; mark it (see docblocks)")

    def _expecting(self, block: Block, once: Any) -> str:
        """``expect``: the output matches each pattern, first time. ``wait-for``: re-run until it
        matches each."""
        patterns, retry = block.markers_of("expect"), False
        if not patterns and (patterns := block.markers_of("wait-for")):
            retry = True
        deadline = time.monotonic() + EXPECT_WITHIN_S
        while True:
            out = str(once())
            missed = [p for p in patterns if not re.search(p, out, re.M)]
            if not missed:
                return out
            if not retry:
                raise DocFailure(f"{block.id}: output does not match /{missed[0]}/:\n{out[-4000:]}")
            if time.monotonic() > deadline:
                raise DocFailure(
                    f"{block.id}: output never matched /{missed[0]}/ in {EXPECT_WITHIN_S:.0f}s:\n{out}"
                )
            time.sleep(1.0)

    def run_python(self, block: Block) -> str:
        script = self.tmp / f"block_{block.line}.py"
        script.write_text(self.code(block.text))
        # A deprecation the block's own code triggers (a retired model name, an old API) fails it.
        env = {**self.env, "PYTHONWARNINGS": "error::DeprecationWarning:__main__"}
        return self._foreground(block, [str(BIN / "python"), str(script)], env)

    def run_shell(self, block: Block) -> None:
        commands = shell_commands(block.text)
        starts = [c for c in commands if self._is_long_running(c)]
        if starts and block.marker("wait-for") is not None:
            raise DocFailure(
                f"{block.id}: a `wait-for` block is re-run: it must not start long-running commands"
            )
        ran = []

        def once() -> str:
            out = []
            for command in commands:
                result = self._shell_line(block, command)
                if result is not None:
                    ran.append(command)
                    out.append(result)
            return "\n".join(out)

        self._expecting(block, once)
        if not ran and not starts:
            self.skipped.append(f"{block.id}: nothing to run here")

    def _shell_line(self, block: Block, command: str) -> str | None:
        command = self.code(command)
        words = shlex.split(command)
        if words[0] == "export":
            self._export(block, command)
            return ""
        if words[0] == "kill" and all(w.startswith("%") for w in words[1:]):
            for job in words[1:]:
                self._stop_job(block, int(job[1:]))
            return ""
        if words[0] == "make":
            target = words[1] if len(words) > 1 else "demo"
            if target not in MAKE_SKIPS:
                raise DocFailure(f"{block.id}: `make {target}` is not a target the docs may name")
            self.skipped.append(f"{block.id}: `{command}` not run: {MAKE_SKIPS[target]}")
            return None
        if self._is_long_running(command):
            self._start(block, command, words)
            return ""
        env = self.cli_env() if words[0] == "agentledger" else self.env
        return self._foreground(block, ["bash", "-c", command], env)

    def _export(self, block: Block, command: str) -> None:
        """``export A=x B=$A KEY=$(cmd)``: bash evaluates it in the session's environment, and the
        names it sets stay set. Run as a plain assignment with ``set -a`` (``export`` would hide
        the status of ``$(cmd)``), so a failing command fails the block instead of leaving an
        empty variable behind."""
        line = re.sub(r"^export\s+(?=[A-Za-z_]\w*=)", "set -a; ", command)
        env = self.cli_env() if "agentledger" in command else self.env
        script = f"set -o pipefail; {line}\nprintf '\\0{_ENV_MARK}\\0'; env -0"
        try:
            done = subprocess.run(["bash", "-ec", script], cwd=self.cwd, env=env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise DocFailure(
                f"{block.id}: `{command[:200]}` still running after {exc.timeout:.0f}s"
            ) from None
        self.transcript.append(f"$ {command[:200]}\n{done.stderr}")
        if done.returncode != 0:
            raise DocFailure(
                f"{block.id}: `{command[:300]}` exited {done.returncode}:\n{done.stderr[-4000:]}"
            )
        listing = done.stdout.rpartition(f"\0{_ENV_MARK}\0")[2]
        after = dict(item.split("=", 1) for item in listing.split("\0") if "=" in item)
        for name, value in after.items():
            if name not in _SHELL_OWN and env.get(name) != value:
                self.env[name] = value

    def _foreground(self, block: Block, argv: list[str], env: dict[str, str]) -> str:
        try:
            done = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise DocFailure(
                f"{block.id}: `{argv[-1][:200]}` still running after {exc.timeout:.0f}s"
            ) from None
        out = done.stdout + done.stderr
        self.transcript.append(f"$ {argv[-1][:200]}\n{out}")
        if done.returncode != 0:
            raise DocFailure(f"{block.id}: `{argv[-1][:300]}` exited {done.returncode}:\n{out[-4000:]}")
        return out

    # -- long-running commands ---------------------------------------------------------

    @staticmethod
    def _is_long_running(command: str) -> bool:
        """Started in the background: a line ending in ``&``, or a server run in its own terminal."""
        if command.endswith("&") and not command.endswith("&&"):
            return True
        words = shlex.split(command)
        if words[:2] == ["python", "tests/fakeprovider.py"]:
            return True
        if not words or words[0] != "agentledger":
            return False
        if words[1:2] == ["sink"] and "--once" in words:
            return False
        return any(tuple(words[1 : 1 + len(name)]) == name for name in LONG_RUNNING)

    def _start(self, block: Block, command: str, words: list[str]) -> None:
        command = command.removesuffix("&").rstrip()
        words = shlex.split(command)
        log = self.tmp / f"bg_{len(self.background)}.log"
        env = self.cli_env() if words[0] == "agentledger" else self.env
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        redirected = re.search(r"(?<![0-9&])>\s*([^\s&>]+)", command)
        bg = Background(words, proc, log, self.cwd / redirected[1] if redirected else None)
        self.background.append(bg)
        self.transcript.append(f"$ {command} &  (pid {proc.pid}, log {log})")
        port = _port_of(words)
        deadline = time.monotonic() + 60
        # Ready: a server accepts connections on its port; a worker or sink is still alive after
        # its start-up (config read, topics checked, group joined: a few seconds).
        settle = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DocFailure(f"{block.id}: `{command}` exited {proc.returncode} at start:\n{bg.tail()}")
            if port is not None and _accepts(port):
                return
            if port is None and time.monotonic() > settle:
                return
            time.sleep(0.2)
        raise DocFailure(f"{block.id}: `{command}` not ready in 60s:\n{bg.tail()}")

    def _stop_job(self, block: Block, number: int) -> None:
        """``kill %N``: the Nth command this session started in the background."""
        if not 1 <= number <= len(self.background):
            raise DocFailure(f"{block.id}: `kill %{number}`: only {len(self.background)} background jobs")
        bg = self.background[number - 1]
        if bg.proc.poll() is not None:
            raise DocFailure(
                f"{block.id}: `{' '.join(bg.words)}` had exited {bg.proc.returncode}:\n{bg.tail()}"
            )
        bg.stop()
        self.transcript.append(f"$ kill %{number}  ({' '.join(bg.words)}: exit {bg.proc.returncode})")

    def close(self) -> list[str]:
        """Stop what the docs started; returns the commands that had died on their own."""
        died = [f"`{' '.join(b.words)}` exited {b.proc.returncode}:\n{b.tail()}"
                for b in self.background if b.proc.poll() is not None and not b.stopped]  # fmt: skip
        for b in self.background:
            if b.proc.poll() is None:
                os.killpg(b.proc.pid, signal.SIGTERM)
        for b in self.background:
            b.stop()
        return died

    # -- what a reader would look at -----------------------------------------------------

    def events_on_topic(self, timeout: float = 10.0) -> int:
        """Events on this session's events topic (every envelope counted)."""
        return asyncio.run(_count_events(self.bootstrap, self.prefix, timeout))


def _port_of(words: list[str]) -> int | None:
    for i, w in enumerate(words):
        if w == "--port" and i + 1 < len(words):
            return int(words[i + 1])
        if w.startswith("--port="):
            return int(w.split("=", 1)[1])
    return 8000 if words[1:3] == ["api", "serve"] else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _count_events(bootstrap: str, prefix: str, timeout: float) -> int:
    from aiokafka import AIOKafkaConsumer

    from agentledger import topics
    from agentledger.wire import decode_envelope

    consumer = AIOKafkaConsumer(topics.name(topics.EVENTS, prefix), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        count = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and count:
                break
            for records in batch.values():
                count += sum(len(decode_envelope(r.value).events) for r in records if r.value)
        return count
    finally:
        await consumer.stop()


# -- checks that need no broker ----------------------------------------------------------


def check_data(block: Block) -> Any:
    """Parse a yaml/json block; validate it with the product's loader when it is one of ours."""
    import json

    doc = json.loads(block.text) if block.kind == "json" else yaml.safe_load(block.text)
    if isinstance(doc, dict):
        check_config(doc, block.id)
    return doc


def check_config(doc: dict[str, Any], where: str) -> None:
    import tempfile

    from agentledger.pricing import load_overrides
    from agentledger.streams.healthconfig import parse_health_config
    from agentledger.streams.policyfile import parse_loops, parse_policies

    if "policies" in doc:
        parse_policies(doc["policies"])
    if "loops" in doc:
        parse_loops(doc["loops"])
    if {"alerts", "providers", "quality", "canary", "objectives"} & doc.keys():
        parse_health_config(doc)
    if {"models", "tenants"} & doc.keys():
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(doc, f)
            f.flush()
            load_overrides(f.name)
    if {"policy_id", "selector", "rules"} <= doc.keys():  # a tool policy (docs/security.md)
        from agentledger.tools import ToolPolicy

        ToolPolicy.model_validate(doc)
        return
    known = {
        "policies",
        "loops",
        "alerts",
        "providers",
        "quality",
        "canary",
        "models",
        "tenants",
        "objectives",
    }
    if not known & doc.keys():
        raise DocFailure(f"{where}: a mapping the harness cannot validate (keys {sorted(doc)})")


def check_synopsis(block: Block) -> None:
    """Every command, subcommand and option a command reference names exists."""
    import typer.main

    from agentledger.cli import build_app
    from agentledger.settings import Settings

    root = typer.main.get_command(build_app())
    problems = []
    for words in synopsis_commands(block.text):
        problems += _check_words(root, words)
    for name in synopsis_exports(block.text):
        if name.removeprefix("AGENTLEDGER_").lower() not in Settings.model_fields:
            problems.append(f"{name} is not a setting")
    if problems:
        raise DocFailure(f"{block.id}:\n" + "\n".join(problems))


def _check_words(group: Any, words: list[str]) -> list[str]:
    """``a|b`` and ``a [--x] | b`` alternatives are each checked; ``[--opt X]`` brackets ignored."""
    first = words[0]
    if first.startswith("--"):  # options of the group itself, e.g. `agentledger --version`
        return _check_options(group, words)
    if "|" in first and not first.startswith(("-", "[")):
        return [p for alt in first.split("|") for p in _check_words(group, [alt, *words[1:]])]
    cmd = group.commands.get(first)
    if cmd is None:
        return [f"`{first}`: no such command under `{group.name}` (have {sorted(group.commands)})"]
    rest = words[1:]
    if not hasattr(cmd, "commands"):  # typer vendors click: duck-type the group
        return _check_options(cmd, rest)
    if not rest:
        return []
    cut = [i for i, w in enumerate(rest) if w == "|"]
    segments = [rest[a + 1 : b] for a, b in zip([-1, *cut], [*cut, len(rest)], strict=True)]
    return [p for seg in segments if seg for p in _check_words(cmd, seg)]


def _check_options(cmd: Any, words: list[str]) -> list[str]:
    have = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    out = []
    for w in words:
        for token in w.strip("[]").split("|"):
            if token.startswith("--"):
                name = token.split("=", 1)[0]
                if name not in have:
                    out.append(f"`agentledger {cmd.name}`: no option {name} (have {sorted(have)})")
    return out
