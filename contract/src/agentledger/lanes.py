"""Reading the control topic by lane: every reader (the Guard, the budget worker, the API)
sees the same commands in force.

A record's key names its scope, lane and authority (``events.control_key``). A record written
before lanes existed sits on its bare scope key (or ``downgrade:<scope key>``): it is read as
the key its content names (its action's lane, its issuer's authority), and the newer of the two
(by ``ts``) is in force, so an authority's first command under the new key supersedes its old
record without anyone having to rewrite or delete it.
"""

from __future__ import annotations

from agentledger.events import ControlCommand, parse_control_key


def logical_key(key: str | None, command: ControlCommand) -> str:
    """The key ``command`` counts under: its topic key when that is a lane key, else the
    key its content names (a record from before lanes, or one applied without a key)."""
    if key is not None and parse_control_key(key) is not None:
        return key
    return command.key


class ControlRecords:
    """The latest record per topic key, and the command in force per logical key."""

    def __init__(self) -> None:
        self.raw: dict[str, ControlCommand] = {}
        self.current: dict[str, ControlCommand] = {}
        """The command in force per logical key (what a reader acts on)."""
        self._sources: dict[str, set[str]] = {}  # logical key -> topic keys that map to it
        self._logical: dict[str, str] = {}  # topic key -> logical key

    def apply(self, key: str | None, command: ControlCommand | None) -> str | None:
        """One record (``None``: a tombstone of ``key``). Returns the logical key it touched."""
        if command is None:
            if key is None or key not in self.raw:
                return None
            del self.raw[key]
            logical = self._logical.pop(key)
            self._sources[logical].discard(key)
        else:
            raw = key if key is not None else command.key
            logical = logical_key(raw, command)
            old = self._logical.get(raw)
            if old is not None and old != logical:
                self._sources[old].discard(raw)
                self._settle(old)
            self.raw[raw] = command
            self._logical[raw] = logical
            self._sources.setdefault(logical, set()).add(raw)
        self._settle(logical)
        return logical

    def put(self, key: str, command: ControlCommand) -> None:
        """A command this process just wrote on ``key`` (it will read it back too)."""
        self.apply(key, command)

    def _settle(self, logical: str) -> None:
        sources = self._sources.get(logical)
        if not sources:
            self._sources.pop(logical, None)
            self.current.pop(logical, None)
            return
        # the newest wins; at equal times the lane key (the logical key itself) does
        best = max(sources, key=lambda k: (self.raw[k].ts, k == logical))
        self.current[logical] = self.raw[best]

    def legacy_keys(self) -> list[str]:
        """Topic keys from before lanes that still hold a record."""
        return [k for k, logical in self._logical.items() if k != logical]
