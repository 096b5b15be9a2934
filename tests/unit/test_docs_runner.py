"""The doc harness's shell semantics, on small Markdown files (no broker needed): background
jobs with a ready port, `kill %N`, `expect` / `wait-for`, `make` lines, and the failures a
reader would hit."""

from __future__ import annotations

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
    ],
)
def test_what_fails(tmp_path, markdown, says):
    with pytest.raises(DocFailure, match=says):
        _run(tmp_path, markdown)
