"""The compacted objectives topic: key = objective_id, value = ``wire.dump(ObjectivePolicy)``,
tombstone = delete. The health worker follows it; the API and ``agentledger objectives`` write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentledger import topics
from agentledger.compacted import publish, read_latest
from agentledger.errors import ConfigError
from agentledger.events import ObjectivePolicy
from agentledger.streams.healthconfig import read_mapping
from agentledger.wire import describe, dump


def parse_objective(value: bytes) -> ObjectivePolicy | None:
    """One record's objective, or None when it does not validate (the worker skips it)."""
    try:
        return ObjectivePolicy.model_validate_json(value)
    except ValueError:
        return None


def load_objectives_file(path: str | Path) -> list[ObjectivePolicy]:
    """The ``objectives:`` list of a YAML file (other keys ignored), validated as the worker does."""
    raw = (read_mapping(path) or {}).get("objectives") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: objectives must be a list")
    out: list[ObjectivePolicy] = []
    for i, item in enumerate(raw):
        try:
            out.append(ObjectivePolicy.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(f"{path}: objectives[{i}]: {describe(exc)}") from None
    ids = [o.objective_id for o in out]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{path}: objective ids must be unique")
    return out


async def put_objectives(
    bootstrap: str, prefix: str, objectives: list[ObjectivePolicy], **client: Any
) -> None:
    """Publish (create or replace) objectives; waits until the broker acknowledged every one."""
    records = [(o.objective_id, dump(o)) for o in objectives]
    await publish(bootstrap, prefix + topics.OBJECTIVES.name, records, client)


async def delete_objective(bootstrap: str, prefix: str, objective_id: str, **client: Any) -> None:
    """Write a tombstone: the health worker stops judging the objective."""
    await publish(bootstrap, prefix + topics.OBJECTIVES.name, [(objective_id, None)], client)


async def read_objectives(bootstrap: str, prefix: str, **client: Any) -> dict[str, ObjectivePolicy]:
    """The current objectives on the topic (latest value per key, tombstones removed; a record
    that does not validate changes nothing, as in the health worker)."""
    return await read_latest(
        bootstrap, prefix + topics.OBJECTIVES.name, topics.OBJECTIVES.partitions, parse_objective, client
    )
