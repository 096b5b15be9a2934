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


def _readme_table_settings() -> dict[str, str]:
    """The README's configuration table: every variable it names (``_X`` shorthand included,
    as ``AGENTLEDGER_KAFKA_SASL_MECHANISM`` / ``_USERNAME``), and the default it shows."""
    import re

    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`AGENTLEDGER_"):
            continue
        names = re.findall(r"`(AGENTLEDGER_\w+|_\w+)`", cells[0])
        for name in names:
            rows[name if name.startswith("AGENTLEDGER_") else f"{names[0]}_{name}"] = cells[1]
    return rows


def test_readme_configuration_table_names_real_settings():
    """Each row is a setting we read; `_USERNAME` after `AGENTLEDGER_KAFKA_SASL_MECHANISM` is
    a setting with the same leading words (`AGENTLEDGER_KAFKA_SASL_USERNAME`)."""
    names = _setting_names()
    rows = _readme_table_settings()
    assert len(rows) >= 10, rows  # the table was found and read
    wrong = []
    for written in rows:
        first, _, short = written.partition("__")
        if not short:
            ok = written in names
        else:  # a shorthand: some leading words of the row's first name, then the suffix
            words = first.split("_")
            ok = any("_".join([*words[:k], short]) in names for k in range(1, len(words)))
        if not ok:
            wrong.append(written.replace("__", " + _"))
    assert not wrong, f"README configuration table names settings that do not exist: {wrong}"


def test_readme_configuration_table_defaults():
    """A default the table shows as a value (`true`, `5`, `PLAINTEXT`) or as `unset` / `empty`
    is the setting's real default."""
    from agentledger.api.config import ApiSettings
    from agentledger.settings import Settings

    fields = {}
    for cls in (Settings, ApiSettings):
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        fields |= {prefix + name.upper(): f for name, f in cls.model_fields.items()}
    checked = 0
    for name, shown in _readme_table_settings().items():
        field = fields.get(name)
        if field is None or field.default_factory is not None:
            continue  # a shorthand row, or a default computed at run time (home)
        default = field.default
        if shown == "unset":
            assert default is None, f"{name}: README says unset, the default is {default!r}"
        elif shown == "empty":
            assert default == "", f"{name}: README says empty, the default is {default!r}"
        elif shown.startswith("`") and shown.endswith("`") and "$" not in shown:
            value = shown.strip("`")
            expected = str(default).lower() if isinstance(default, bool) else default
            if isinstance(default, float):
                expected = f"{default:g}"
            assert value == str(expected), f"{name}: README says {value}, the default is {default!r}"
        else:
            continue
        checked += 1
    assert checked >= 6, checked


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
