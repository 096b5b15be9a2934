"""The doc harness's shell semantics, on small Markdown files (no broker needed): background
jobs with a ready port, `kill %N`, `expect` / `wait-for`, `make` lines, and the failures a
reader would hit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from docblocks import extract
from docrunner import DocFailure, DocSession


def _run(tmp_path: Path, markdown: str) -> DocSession:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "t.md").write_text(markdown)
    session = DocSession(tmp_path / "s", "127.0.0.1:1", "t.", {})
    try:
        for block in extract(tmp_path / "docs" / "t.md", tmp_path):
            session.run(block)
    finally:
        died = session.close()
    assert not died, died
    return session


GET = "python -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8765/v1/models').read().decode())\""


def test_background_server_queried_then_stopped(tmp_path):
    session = _run(tmp_path, (
        "```bash\npython tests/fakeprovider.py --port 8765 > provider.log 2>&1 &\n```\n\n"
        f'<!-- doctest: expect "id": "gpt-4o" -->\n```bash\n{GET}\n```\n\n'
        "```bash\nkill %1\nmake demo\n```\n"
    ))  # fmt: skip
    port = session.ports["8765"]
    assert port != "8765" and f"127.0.0.1:{port}/v1/models" in "\n".join(session.transcript)
    assert session.background[0].proc.returncode == 0  # SIGTERM: a clean stop
    assert any("`make demo` not run" in s for s in session.skipped)


def test_file_block_then_run(tmp_path):
    session = _run(tmp_path, (
        "<!-- doctest: file hello.py -->\n```python\nprint('hello from localhost:9092')\n```\n\n"
        "<!-- doctest: expect ^hello from 127.0.0.1:1$ -->\n```bash\npython hello.py\n```\n"
    ))  # fmt: skip
    assert "hello from 127.0.0.1:1" in session.transcript[-1]


def test_export_lines_are_evaluated_by_bash_and_stay_set(tmp_path):
    session = _run(tmp_path, (
        "```bash\nexport URL=http://127.0.0.1:8000 WHO=reader\nexport GREETING=\"hello $WHO\" "
        "TOKEN=$(printf 'key id 1\\nal_1_secret\\n' | tail -n 1)\nexport MINE=$HOME/x\n```\n\n"
        '<!-- doctest: expect ^hello reader al_1_secret$ -->\n<!-- doctest: expect ^http://127.0.0.1:\\d+$ -->\n'
        '```bash\necho "$GREETING $TOKEN"\necho "$URL"\n```\n'
    ))  # fmt: skip
    # Documented ports become the session's free ones; $HOME is the reader's (the session's), not ours.
    assert session.env["URL"] == f"http://127.0.0.1:{session.ports['8000']}"
    assert session.env["MINE"] == f"{session.tmp / 'home'}/x"
    assert session.env.get("SHLVL") == os.environ.get("SHLVL")  # bash's own variables are not kept


@pytest.mark.parametrize(
    ("markdown", "says"),
    [
        ("<!-- doctest: expect ^bye$ -->\n```bash\necho hello\n```\n", "does not match"),
        ("```bash\nfalse\n```\n", "exited 1"),
        ("```bash\nmake release\n```\n", "make release"),
        ("```bash\nkill %1\n```\n", "only 0 background jobs"),
        ("```bash\npython -c 'raise SystemExit(3)' &\n```\n", "exited 3 at start"),
        ("```python\nimport warnings\nwarnings.warn('old', DeprecationWarning)\n```\n", "DeprecationWarning"),
        ("```\nplain\n```\n", "no way to run"),
        # a command whose output an `export` captures fails the block, not an empty variable later
        ("```bash\nexport KEY=$(false | tail -n 1)\n```\n", "exited 1"),
        # every `expect` counts, not only the first
        ("<!-- doctest: expect ^a$ -->\n<!-- doctest: expect ^b$ -->\n```bash\necho a\n```\n", "/\\^b\\$/"),
    ],
)
def test_what_fails(tmp_path, markdown, says):
    with pytest.raises(DocFailure, match=says):
        _run(tmp_path, markdown)
