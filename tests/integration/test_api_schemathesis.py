"""Schemathesis against the API's own OpenAPI document, with a real broker and warehouse
behind it: no 500s, and every status answered is one the document declares."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events


def _document() -> dict[str, object]:
    """The OpenAPI document (building the app opens no connection)."""
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", home=Path("/nonexistent")), ApiSettings())
    return app.openapi()


SCHEMA = schemathesis.openapi.from_dict(_document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Running:
    url: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home: Path = tmp_path_factory.mktemp("api")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    land_priced(Store(str(home / "wh")), priced_events(40, seed=3), "part-0")
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    with ApiServer(app) as url:
        yield Running(url, keys)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_errors_and_only_documented_statuses(
    api: Running, operation: schemathesis.APIOperation
) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def run(case: schemathesis.Case) -> None:
        for role in ("admin", "acme_read"):
            case.call_and_validate(
                base_url=api.url,
                headers={"Authorization": f"Bearer {api.keys[role]}"},
                checks=CHECKS,
                timeout=30,
            )

    run()
