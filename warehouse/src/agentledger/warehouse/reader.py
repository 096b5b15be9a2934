"""The warehouse as the API and the dashboards read it: named queries, typed, JSON-ready.

``reader.rows(queries.costs, group_by=["agent"], tenant="acme")`` runs one named query of
``agentledger.warehouse.queries`` on a catalog opened lazily, once, and gives its rows with
exact money as decimal strings and times as ISO text. The query is the function itself, so a
renamed query or a wrong parameter fails type checking. A warehouse with no data yet is a
``ConfigError`` that says so (the API answers 503, a dashboard panel shows a note).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec

from agentledger.errors import AgentLedgerError, ConfigError
from agentledger.warehouse.catalog import Catalog

Row = dict[str, Any]
P = ParamSpec("P")
Query = Callable[Concatenate[Catalog, P], list[Row]]
"""A named query: the catalog first, then its own parameters."""


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
    return v


def json_row(row: Row) -> Row:
    """A query's row with JSON-ready values."""
    return {str(k): _value(v) for k, v in row.items()}


class WarehouseReader:
    """Named queries over the Parquet warehouse at ``root``. ``catalog`` is opened on the
    first query unless given (tests pass one)."""

    def __init__(self, root: str, catalog: Catalog | None = None) -> None:
        self.root = root
        self._catalog = catalog
        # One DuckDB connection, used by one thread at a time; queries run off the event loop
        # so a slow query never stalls ingest.
        self._lock = threading.Lock()

    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.root)
        return self._catalog

    def rows(self, query: Query[P], /, *args: P.args, **kwargs: P.kwargs) -> list[Row]:
        """``query(catalog, *args, **kwargs)``, rows JSON-ready."""
        with self._lock:
            try:
                found = query(self.catalog(), *args, **kwargs)
            except AgentLedgerError:
                raise
            except Exception as exc:  # DuckDB/IO errors: a missing dataset becomes a clear 503
                if "No files found" in str(exc) or "does not exist" in str(exc):
                    raise ConfigError(f"the warehouse at {self.root} has no data yet") from None
                raise
            return [json_row(r) for r in found]

    async def arows(self, query: Query[P], /, *args: P.args, **kwargs: P.kwargs) -> list[Row]:
        """``rows`` in a worker thread (for async routes)."""
        return await asyncio.to_thread(self.rows, query, *args, **kwargs)
