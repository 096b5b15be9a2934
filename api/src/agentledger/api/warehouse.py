"""The API's door to the warehouse's named queries (``agentledger.warehouse.queries``).

No SQL here: each method calls one named query function with the caller's tenant filter and
turns whatever it returns (Arrow table, DataFrame, DuckDB relation, list of rows) into plain
JSON-ready dicts. When the warehouse is not installed or has no data yet, a ``ConfigError``
becomes a 503 that says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from agentledger.errors import AgentLedgerError, ConfigError

Row = dict[str, Any]


def _value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return format(v, "f")  # money stays exact on the wire
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return _value(v.item())
    return v


def _row(item: Any) -> Row:
    if isinstance(item, BaseModel):
        item = item.model_dump()
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    if not isinstance(item, dict):
        raise TypeError(f"cannot read a row of type {type(item).__name__}")
    return {str(k): _value(v) for k, v in item.items()}


def as_rows(result: Any) -> list[Row]:
    """Plain dicts from whatever a named query returns."""
    if result is None:
        return []
    if hasattr(result, "fetch_arrow_table"):  # DuckDB relation
        result = result.fetch_arrow_table()
    if hasattr(result, "to_pylist"):  # pyarrow Table
        return [_row(r) for r in result.to_pylist()]
    if hasattr(result, "to_dict") and hasattr(result, "columns"):  # pandas DataFrame
        return [_row(r) for r in result.to_dict("records")]
    if isinstance(result, dict):
        return [_row(result)]
    return [_row(r) for r in result]


class WarehouseReader:
    """Named queries over the Parquet warehouse at ``root`` (opened lazily, once)."""

    def __init__(self, root: str, queries: Any = None, catalog: Any = None) -> None:
        self.root = root
        self._queries = queries
        self._catalog = catalog
        # One DuckDB connection, used by one thread at a time; queries run off the event loop
        # so a slow query never stalls ingest.
        self._lock = threading.Lock()

    def _module(self) -> Any:
        if self._queries is None:
            try:
                self._queries = importlib.import_module("agentledger.warehouse.queries")
            except ImportError as exc:
                raise ConfigError(f"warehouse queries are not available: {exc}") from None
        return self._queries

    def catalog(self) -> Any:
        if self._catalog is None:
            self._catalog = open_catalog(self.root)
        return self._catalog

    def has(self, name: str) -> bool:
        """True when the warehouse offers the named query ``name``."""
        try:
            return callable(getattr(self._module(), name, None))
        except ConfigError:
            return False

    def call(self, name: str, **kwargs: Any) -> Any:
        """Call the named query ``name`` with the catalog first; raw result."""
        fn: Callable[..., Any] | None = getattr(self._module(), name, None)
        if fn is None:
            raise ConfigError(f"the warehouse has no named query {name!r} yet")
        try:
            return fn(self.catalog(), **{k: v for k, v in kwargs.items() if v is not None})
        except AgentLedgerError:
            raise
        except Exception as exc:  # DuckDB/IO errors: a missing dataset becomes a clear 503
            if "No files found" in str(exc) or "does not exist" in str(exc):
                raise ConfigError(f"the warehouse at {self.root} has no data yet") from None
            raise

    def rows(self, name: str, **kwargs: Any) -> list[Row]:
        with self._lock:
            return as_rows(self.call(name, **kwargs))

    async def arows(self, name: str, **kwargs: Any) -> list[Row]:
        """``rows`` in a worker thread (for async routes)."""
        return await asyncio.to_thread(self.rows, name, **kwargs)


def open_catalog(root: str) -> Any:
    """The warehouse's DuckDB catalog over ``root``."""
    try:
        mod = importlib.import_module("agentledger.warehouse.catalog")
    except ImportError as exc:
        raise ConfigError(f"the warehouse catalog is not available: {exc}") from None
    for name in ("open_catalog", "connect", "Catalog"):
        factory = getattr(mod, name, None)
        if factory is not None:
            return factory(root)
    raise ConfigError("agentledger.warehouse.catalog has no open_catalog/connect/Catalog")
