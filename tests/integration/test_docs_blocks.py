"""Every python and shell block of README.md and docs/*.md runs, as written, on the real broker.

Each block gets its own session (private HOME, topics under a unique prefix, the fake
OpenAI/Anthropic provider); docs/quickstart.md runs as one story in test_docs_quickstart.py.
A python block that configures a Kafka emitter and records must leave its events on the topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from docblocks import STORIES, all_blocks
from docrunner import DocSession
from fakeprovider import FakeProvider

# Blocks that fail today because of a known bug being fixed elsewhere (block id -> the bug).
# strict: the day the fix lands, the test XPASSes and fails until the entry is removed.
KNOWN_BUGS: dict[str, str] = {}

RUN = [b for b in all_blocks() if b.kind in ("python", "shell") and b.path not in STORIES]


def _param(block):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[block.id])] if block.id in KNOWN_BUGS else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


_RECORDS = re.compile(
    r"al\.configure\([^)]*bootstrap=.*(\.record\(|record_usage|record_quality|record_tool_call|@al\.span)",
    re.S,
)


@pytest.mark.parametrize("block", [_param(b) for b in RUN])
def test_doc_block_runs(block, topics, tmp_path, provider):  # type: ignore[no-untyped-def]
    session = DocSession(tmp_path, topics.bootstrap, topics.prefix, provider.env())
    try:
        session.run(block)
    finally:
        died = session.close()
    assert not died, "\n".join(died)
    if _RECORDS.search(block.text):
        assert session.events_on_topic() > 0, (
            f"{block.id}: the block recorded, nothing reached {topics.events}"
        )
    if session.skipped and block.kind == "shell":
        pytest.skip("; ".join(session.skipped))
