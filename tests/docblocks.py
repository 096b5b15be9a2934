"""Fenced code blocks of README.md and docs/*.md, and what the doc-test harness does with each.

A block is run, parsed or checked according to its info string; anything else must say so in
the Markdown, on the line(s) right before the fence:

- ```` ```python ```` runs in a subprocess; ```` ```bash ```` / ``sh`` / ``console`` runs its
  commands one by one; ```` ```yaml ```` / ``json`` is parsed (and validated with the product's
  loader when it is a policy or price file); ```` ```text ```` is output or a diagram, shown
  only.
- ``<!-- doctest: skip REASON -->``: not run, for the stated reason.
- ``<!-- doctest: synopsis [WHY NOT RUN] -->``: a command reference (``a|b``, ``[--opt]``), or
  commands that need what a test cannot have (its text says what): every ``agentledger``
  command and ``--option`` it names must exist, every ``AGENTLEDGER_*`` it exports must be a
  setting.
- ``<!-- doctest: file NAME -->``: written to NAME (a later block runs it), not run itself.
- ``<!-- doctest: expect REGEX -->``: the block's output must match REGEX (several ``expect``
  lines: it must match each).
- ``<!-- doctest: wait-for REGEX -->``: re-run the block until its output matches (a query on a
  pipeline that needs a few seconds), up to a minute.

In shell blocks a line ending in ``&`` runs in the background (ready when its ``--port``
accepts connections, or when it is still alive after its start-up), ``kill %N`` stops the Nth
such job and fails if it had died, ``export NAME=...`` lines are evaluated by bash (``$VAR``,
``$(command)``: a failing command fails the block) and the names stay set for the
session's later lines, ``make`` targets are not run (``MAKE_SKIPS`` says why), and
an ``agentledger`` server named without ``&`` (``worker``, ``sink``, ``api serve``...) is started
as if in its own terminal. Python blocks fail on a ``DeprecationWarning`` their own code causes.

A block with no info string and no marker fails the collection test: nothing is skipped
silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_KINDS = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell",
             "console": "shell", "yaml": "yaml", "yml": "yaml", "json": "json", "text": "text"}  # fmt: skip
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*doctest:\s*(?P<verb>[a-z-]+)\s*(?P<arg>.*?)\s*-->\s*$")

# Docs that run as one story, block after block in one session (files written by one block
# are run by a later one, background jobs live on); every other block runs on its own.
STORIES = ("docs/quickstart.md",)

# `make` targets a doc may name, and why the harness does not run them inside the test suite.
MAKE_SKIPS = {
    "demo": "sets up and runs the whole demo: tests/integration/test_demo.py runs `agentledger demo`",
    "test": "is the test suite this harness is part of",
    "faults": "the fault suite on a 3-node cluster (`make faults`, its own CI job)",
    "bench": "every benchmark in full (~15 min); CI runs them in quick mode in test_bench_*",
    "setup": "the virtualenv this test runs in",
}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, what it says, what to do with it."""

    path: str  # relative to the repo root
    line: int  # of the opening fence, 1-based
    heading: str
    ordinal: int  # 1-based, within its heading
    info: str
    text: str
    markers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def id(self) -> str:
        """Stable while blocks elsewhere in the file move: file#heading-n."""
        return f"{self.path}#{self.heading}-{self.ordinal}"

    def marker(self, verb: str) -> str | None:
        for v, arg in self.markers:
            if v == verb:
                return arg
        return None

    def markers_of(self, verb: str) -> list[str]:
        """Every argument of a marker that may repeat (``expect``, ``wait-for``)."""
        return [arg for v, arg in self.markers if v == verb]

    @property
    def kind(self) -> str:
        """python, shell, yaml, json, text, skip, synopsis, file, or unknown."""
        for verb in ("skip", "synopsis", "file"):
            if self.marker(verb) is not None:
                return verb
        return RUN_KINDS.get(self.info.lower(), "unknown")


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.lower()).strip()
    return re.sub(r"[\s]+", "-", text) or "top"


def extract(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced block of one Markdown file, with the doctest markers right before it."""
    lines = path.read_text().splitlines()
    rel = str(path.relative_to(root))
    blocks: list[Block] = []
    heading, counts = "top", {"top": 0}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = slug(line.lstrip("#"))
            counts.setdefault(heading, 0)
        m = _FENCE.match(line)
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m["indent"]) :] if lines[i].startswith(m["indent"]) else lines[i])
            i += 1
        i += 1  # the closing fence
        markers: list[tuple[str, str]] = []
        j = start - 1
        while j >= 0 and (mm := _MARKER.match(lines[j])):
            markers.insert(0, (mm["verb"], mm["arg"]))
            j -= 1
        counts[heading] += 1
        blocks.append(Block(rel, start + 1, heading, counts[heading], m["info"], "\n".join(body) + "\n",
                            tuple(markers)))  # fmt: skip
    return blocks


def doc_files(root: Path = ROOT) -> list[Path]:
    return [
        root / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted((root / "docs").glob("*/*.md")),
    ]


def all_blocks(root: Path = ROOT) -> list[Block]:
    return [b for p in doc_files(root) for b in extract(p, root)]


# -- shell blocks ----------------------------------------------------------------------


def shell_commands(text: str) -> list[str]:
    """Logical command lines, as a shell reads them: ``\\`` continuations joined, a quoted string
    that goes on over lines kept whole (newlines included), comments and blank lines dropped, a
    leading ``$ `` prompt removed. An unfinished last line is kept (bash then says what is wrong)."""
    out: list[str] = []
    pending = ""
    quote: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        quote = _open_quote(line, quote)
        if quote is not None:
            pending += line + "\n"
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line.startswith("$ "):
            line = line[2:]
        line = _strip_comment(line)
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def _open_quote(line: str, quote: str | None) -> str | None:
    """The quote still open at the end of ``line``, given the one open at its start (None: none).
    Backslash escapes count outside single quotes; a ``#`` comment outside quotes ends the line."""
    k = 0
    while k < len(line):
        ch = line[k]
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch == "\\":
                k += 1
            elif ch == '"':
                quote = None
        elif ch == "\\":
            k += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            break
        k += 1
    return quote


def _strip_comment(line: str) -> str:
    """The line without its trailing ``# comment`` (quotes respected)."""
    quote: str | None = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line


def synopsis_commands(text: str) -> list[list[str]]:
    """The ``agentledger`` invocations a command reference names, one word list each.

    Indented lines that start with ``[`` continue the command above; ``a, b c`` after a
    command names further subcommands of ``agentledger``.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        if raw[:1].isspace() and raw.strip().startswith("[") and lines:
            lines[-1] += " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    out: list[list[str]] = []
    for line in lines:
        line = _strip_comment(line)
        if not line.startswith("agentledger"):
            continue
        for part in _split_top_commas(line[len("agentledger") :]):
            words = shlex.split(part)
            if words:
                out.append(words)
    return out


def _split_top_commas(text: str) -> list[str]:
    """Split at ``, `` (comma and space) outside quotes and brackets; ``a,b`` is one word."""
    parts, depth, quote, cur = [], 0, None, ""
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0 and text[k + 1 : k + 2] == " ":
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    return [*parts, cur]


def synopsis_exports(text: str) -> list[str]:
    return re.findall(r"^\s*export\s+(AGENTLEDGER_[A-Z0-9_]+)=", text, flags=re.M)
