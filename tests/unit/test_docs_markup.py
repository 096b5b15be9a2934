"""Every fenced block in README.md and docs/*.md is known to the doc-test harness, and the
blocks that need no broker (yaml/json, command references) are checked here.

Python and shell blocks run against the real broker in tests/integration/test_docs_blocks.py
and test_docs_quickstart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docblocks import ROOT, STORIES, all_blocks, doc_files, extract, shell_commands, synopsis_commands
from docrunner import DocFailure, check_config, check_data, check_synopsis

from agentledger.errors import AgentLedgerError

BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_block_is_runnable_or_marked(block):
    assert block.kind != "unknown", (
        f"{block.path}:{block.line}: a ``` block with no info string and no doctest marker; "
        "say what it is (```python, ```bash, ```yaml, ```text for output and diagrams, or "
        "<!-- doctest: synopsis --> / <!-- doctest: skip REASON --> before it)"
    )
    if block.kind == "skip":
        assert block.marker("skip"), f"{block.id}: a skip needs a reason"
    if block.kind == "file":  # only a story runs the later block that uses the file
        assert block.path in STORIES, f"{block.id}: a `file` block outside {STORIES} is never run"


CHECKED = [b for b in BLOCKS if b.kind in ("yaml", "json", "synopsis")]


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_config_and_command_reference_blocks(block):
    if block.kind == "synopsis":
        check_synopsis(block)
    else:
        check_data(block)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_files_load(path: Path, monkeypatch):
    import re

    import yaml

    for name in re.findall(r"\$\{(\w+)\}", path.read_text()):  # secrets come from the environment
        monkeypatch.setenv(name, f"https://127.0.0.1:9/{name}")
    check_config(yaml.safe_load(path.read_text()), str(path))


# -- the harness itself ------------------------------------------------------------------


def _doc(tmp_path: Path, text: str) -> list:
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "x.md"
    path.write_text(text)
    return extract(path, tmp_path)


def test_markers_and_ids(tmp_path):
    blocks = _doc(tmp_path, (
        "# Title\n\n```\nplain\n```\n\n## Run it\n\n<!-- doctest: skip needs a GPU -->\n```python\n"
        "print(1)\n```\n\n<!-- doctest: file agent.py -->\n<!-- doctest: expect ^ok$ -->\n```python\n"
        "print('ok')\n```\n"
    ))  # fmt: skip
    assert [(b.id, b.kind) for b in blocks] == [
        ("docs/x.md#title-1", "unknown"), ("docs/x.md#run-it-1", "skip"), ("docs/x.md#run-it-2", "file"),
    ]  # fmt: skip
    assert blocks[1].marker("skip") == "needs a GPU"
    assert blocks[2].marker("expect") == "^ok$" and blocks[2].text == "print('ok')\n"


def test_shell_lines():
    text = '$ agentledger sql \\\n  "SELECT 1 # not a comment"   # a comment\n\n# only a comment\nmake demo\n'
    assert shell_commands(text) == ['agentledger sql    "SELECT 1 # not a comment"', "make demo"]
    # a quoted string over several lines is one command (a curl body), as in a shell; a comment's
    # apostrophe opens no quote; an unfinished last line is kept for bash to refuse, not dropped
    text = "# what's in force\ncurl -d '{\"a\": 1,\n  \"b\": \"x # y\"}' \\\n  -H 'X: y'\necho 'open\n"
    assert shell_commands(text) == ['curl -d \'{"a": 1,\n  "b": "x # y"}\'    -H \'X: y\'', "echo 'open"]


def test_synopsis_finds_wrong_commands_and_options():
    good = "agentledger kafka up [--nodes 3] | down | status\nagentledger policies apply|list, guard status\n"
    assert synopsis_commands(good)[0][:2] == ["kafka", "up"]
    check_synopsis(_block(good))
    for bad, word in [("agentledger kafka up [--node 3]\n", "--node"),
                      ("agentledger policies apply|remove\n", "remove"),
                      ("agentledger worker\n    [--conf x.yaml]\n", "--conf"),
                      ("export AGENTLEDGER_KAFKA_BOOTSTRAPS=x\n", "AGENTLEDGER_KAFKA_BOOTSTRAPS")]:  # fmt: skip
        with pytest.raises(DocFailure, match=word):
            check_synopsis(_block(bad))


def test_policy_blocks_are_validated():
    with pytest.raises(AgentLedgerError, match="greater than 0"):
        check_data(
            _block("policies:\n  - {policy_id: x, selector: {per: agent}, window: 1h, limit: -1}\n", "yaml")
        )


def _block(text: str, info: str = "bash"):
    from docblocks import Block

    markers = (("synopsis", ""),) if info == "bash" else ()
    return Block("docs/x.md", 1, "t", 1, info, text, markers)


def _setting_names() -> set[str]:
    from agentledger.api.config import ApiSettings
    from agentledger.settings import Settings

    names = set()
    for cls in (Settings, ApiSettings):
        prefix = cls.model_config.get("env_prefix", "")
        names |= {(prefix + f).upper() for f in cls.model_fields}
    return names


def test_every_documented_setting_exists():
    """Prose and tables too: an AGENTLEDGER_* name a reader sets must be one we read."""
    import re

    names = _setting_names()
    wrong = []
    for path in doc_files():
        # whole names only: `AGENTLEDGER_KAFKA_SASL_MECHANISM` / `_USERNAME` shorthand is skipped
        for name in set(re.findall(r"\bAGENTLEDGER_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())):
            if name not in names:
                wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert not wrong, wrong


def test_every_inline_command_exists():
    """`agentledger ...` in prose names real commands and options (checked like a synopsis)."""
    import re

    from docblocks import Block

    for path in doc_files():
        prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        spans = re.findall(r"`(?:\.venv/bin/)?(agentledger [^`]+)`", prose)
        if spans:
            block = Block(str(path.relative_to(ROOT)), 0, "prose", 1, "text", "\n".join(spans) + "\n")
            check_synopsis(block)
