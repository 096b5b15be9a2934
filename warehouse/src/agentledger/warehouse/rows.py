"""Kafka record values -> columns of the three datasets.

The priced topic is the hot one (≥ 100k events/s): its envelopes are parsed with orjson
straight into column lists, without building pydantic objects (which alone caps a core near
120k events/s). The worker that writes it validated every event already; when a record does
not have the expected shape, it is decoded again with ``wire.decode_priced``, which either
accepts it (then it goes through the models) or raises a ``ContractError`` naming the
problem. Control commands and alerts are low volume and always go through the models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from agentledger.errors import ContractError
from agentledger.events import AlertEvent, ControlCommand
from agentledger.warehouse import schema
from agentledger.wire import decode_priced, dump

_EVENT_COLS = [f.name for f in schema.EVENTS if f.name not in schema.PRICE_NAMES]
_FROM_EVENT = [n for n in _EVENT_COLS if not n.startswith("source_") and n not in schema.JSON_FIELDS]
_JSON_COLS = [n for n in _EVENT_COLS if n in schema.JSON_FIELDS]


def _json_or_none(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


class ColumnBuffer:
    """Rows of one dataset as Python lists per column, converted to Arrow in one go."""

    def __init__(self, arrow_schema: pa.Schema) -> None:
        self.schema = arrow_schema
        self.columns: dict[str, list[Any]] = {f.name: [] for f in arrow_schema}
        self.rows = 0

    def _truncate(self, rows: int) -> None:
        for values in self.columns.values():
            del values[rows:]
        self.rows = rows

    def to_table(self) -> pa.Table:
        arrays = []
        for f in self.schema:
            values = self.columns[f.name]
            if pa.types.is_timestamp(f.type) or pa.types.is_decimal(f.type):
                # ISO-8601 / decimal strings: Arrow's cast parses them exactly, in C++.
                if values and not isinstance(next((v for v in values if v is not None), ""), str):
                    arrays.append(pa.array(values, f.type))
                else:
                    arrays.append(pa.array(values, pa.string()).cast(f.type))
            else:
                arrays.append(pa.array(values, f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def clear(self) -> None:
        self._truncate(0)


class EventBuffer:
    """Flattens priced envelopes into the wide ``events`` table.

    Each record is converted to Arrow when it arrives (the events' dicts go to Arrow's C++
    converter in one call), so a record whose values do not fit (a bad timestamp, a string
    where a count belongs) is rejected alone, not at flush time with its whole batch.
    """

    def __init__(self) -> None:
        self.schema = schema.EVENTS
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add_priced(self, raw: bytes, partition: int, offset: int) -> int:
        """Append every event of one priced envelope; returns how many.

        Raises ``ContractError`` when the record is not a valid priced envelope.
        """
        try:
            doc = orjson.loads(raw)
            if doc.get("v", 1) != 1:
                raise ValueError("unsupported envelope version")
            table = _convert(doc["events"], partition, offset)
        except (KeyError, TypeError, ValueError, AttributeError, pa.ArrowException):
            _, priced = decode_priced(raw)  # raises ContractError with the reason
            table = _convert([orjson.loads(dump(p)) for p in priced], partition, offset)
        count: int = table.num_rows
        self.tables.append(table)
        self.rows += count
        return count

    def add_many(self, records: list[tuple[bytes, int]], partition: int) -> list[tuple[bytes, int]]:
        """Append many envelopes through Arrow's JSON reader (``fastjson``); returns the
        ``(value, offset)`` records it did not take, for ``add_priced`` one by one."""
        from agentledger.warehouse.fastjson import convert_many

        table, left = convert_many([v for v, _ in records], [o for _, o in records], partition)
        if table is not None and table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows
        return [records[i] for i in left]

    def to_table(self) -> pa.Table:
        if not self.tables:
            return self.schema.empty_table()
        return pa.concat_tables(self.tables)

    def clear(self) -> None:
        self.tables, self.rows = [], 0


def _wire_type(t: pa.DataType) -> pa.DataType:
    """How a column arrives in JSON: timestamps and decimals as strings."""
    return pa.string() if pa.types.is_timestamp(t) or pa.types.is_decimal(t) else t


_STRUCT = pa.struct([pa.field(n, _wire_type(schema.EVENTS.field(n).type)) for n in _FROM_EVENT])
_REQUIRED = ("event_id", "ts", "type", "tenant", "agent", "trace_id", "span_id")


def _convert(items: list[dict[str, Any]], partition: int, offset: int) -> pa.Table:
    if not items:
        raise ContractError("priced envelope without events")
    events = [item["event"] for item in items]
    struct = pa.array(events, _STRUCT)
    columns: dict[str, pa.Array] = {}
    for name, values in zip(_FROM_EVENT, struct.flatten(), strict=True):
        target = schema.EVENTS.field(name).type
        columns[name] = values if values.type == target else values.cast(target)
    for name in _REQUIRED:
        if columns[name].null_count:
            raise ValueError(f"{name} missing")
    for name in _JSON_COLS:
        columns[name] = pa.array([_json_or_none(e.get(name)) for e in events], pa.string())
    columns["cost_usd"] = pa.array([str(i["cost_usd"]) for i in items], pa.string()).cast(schema.USD)
    columns["priced"] = pa.array([i["priced"] for i in items], pa.bool_())
    columns["price_source"] = pa.array([i.get("price_source") for i in items], pa.string())
    received = pa.array([i.get("received_ts") for i in items], pa.string())
    columns["received_ts"] = received.cast(schema.TS)
    columns["time_flag"] = pa.array([i.get("time_flag") for i in items], pa.string())
    n = len(items)
    columns["source_partition"] = pa.array(np.full(n, partition, dtype=np.int32))
    columns["source_offset"] = pa.array(np.full(n, offset, dtype=np.int64))
    return pa.Table.from_arrays([columns[f.name] for f in schema.EVENTS], schema=schema.EVENTS)


def command_row(cmd: ControlCommand, partition: int, offset: int) -> dict[str, Any]:
    s, p = cmd.scope, cmd.params
    return {
        "command_id": cmd.command_id,
        "ts": cmd.ts,
        "scope_kind": s.kind.value,
        "scope_key": s.key,
        "tenant": s.tenant,
        "agent": s.agent,
        "agent_version": s.agent_version,
        "workflow": s.workflow,
        "trace_id": s.trace_id,
        "provider": s.provider,
        "model": s.model,
        "action": cmd.action.value,
        "reason": cmd.reason,
        "policy_id": cmd.policy_id,
        "params": dump(p).decode(),
        "rate_per_s": p.rate_per_s,
        "fallback_provider": p.fallback_provider,
        "target_version": p.target_version,
        "kill_reason": p.kill_reason,
        "expires_at": cmd.expires_at,
        "issued_by": cmd.issued_by,
        "cause_event_id": cmd.cause_event_id,
        "source_partition": partition,
        "source_offset": offset,
    }


def alert_row(alert: AlertEvent, partition: int, offset: int) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "dedup_key": alert.dedup_key,
        "ts": alert.ts,
        "rule": alert.rule,
        "entity": alert.entity,
        "tenant": alert.tenant,
        "state": alert.state.value,
        "severity": alert.severity.value,
        "summary": alert.summary,
        "figures": _json_or_none(alert.figures),
        "policy_id": alert.policy_id,
        "command_id": alert.command_id,
        "source_partition": partition,
        "source_offset": offset,
    }


class ModelBuffer(ColumnBuffer):
    """Commands or alerts: each record is one JSON model."""

    def __init__(self, dataset: str) -> None:
        super().__init__(schema.SCHEMAS[dataset])
        self.dataset = dataset

    def add_record(self, raw: bytes, partition: int, offset: int) -> int:
        """Append one record; raises ``ContractError`` when it is not a valid model."""
        from pydantic import ValidationError

        from agentledger.wire import describe

        try:
            if self.dataset == "commands":
                row = command_row(ControlCommand.model_validate_json(raw), partition, offset)
            else:
                row = alert_row(AlertEvent.model_validate_json(raw), partition, offset)
        except ValidationError as exc:
            raise ContractError(describe(exc)) from None
        for name, value in row.items():
            self.columns[name].append(value)
        self.rows += 1
        return 1
