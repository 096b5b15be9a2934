"""The worker refuses a changelog that could never be written (it used to stall silently)."""

from __future__ import annotations

import pytest

from agentledger.errors import ConfigError
from agentledger.streams.worker.replication import check_changelog_replication


def test_single_broker_defaults_are_fine() -> None:
    check_changelog_replication(1, 1, None)
    check_changelog_replication(1, 1, 1)


def test_new_changelog_below_min_isr_names_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"--replication 3") as info:
        check_changelog_replication(1, 2, None)
    assert "min.insync.replicas=2" in str(info.value)
    check_changelog_replication(3, 2, None)


def test_existing_changelog_decides_not_the_flag() -> None:
    check_changelog_replication(1, 2, 3)  # Faust reuses the existing 3-replica topic
    with pytest.raises(ConfigError, match="Recreate the topic"):
        check_changelog_replication(3, 2, 1)
