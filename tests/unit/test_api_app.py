"""The app factory: clear start-up error without Kafka; the OpenAPI document declares the
errors every route can answer (Schemathesis holds the API to it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.errors import ConfigError
from agentledger.settings import Settings


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    return create_app(Settings(kafka_bootstrap="127.0.0.1:9", home=tmp_path), ApiSettings())


def test_no_kafka_is_a_clear_configuration_error(tmp_path: Path) -> None:
    app = _app(tmp_path)

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(ConfigError, match=r"cannot reach Kafka at 127\.0\.0\.1:9"):
        asyncio.run(start())
    with pytest.raises(ConfigError, match="needs Kafka"):
        create_app(Settings(kafka_bootstrap=None, home=tmp_path), ApiSettings())


def test_every_keyed_route_documents_401_403_and_json_errors(tmp_path: Path) -> None:
    doc = _app(tmp_path).openapi()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if path in ("/healthz", "/readyz"):  # unkeyed probes
                continue
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            body = op["responses"]["401"]["content"]["application/json"]["schema"]
            assert body["required"] == ["error", "detail"]


def test_an_unexpected_error_is_a_500_without_its_trace(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from agentledger.api.keys import KeyScope, KeyStore
    from agentledger.warehouse.reader import WarehouseReader

    class BrokenCatalog:  # every query fails with an error that names a secret path
        def query(self, sql: str, params: object = None) -> list[dict[str, object]]:
            raise RuntimeError("secret at /srv/warehouse/passwords")

    reader = WarehouseReader("unused", catalog=BrokenCatalog())  # type: ignore[arg-type]
    app = create_app(
        Settings(kafka_bootstrap="127.0.0.1:9", home=tmp_path),
        ApiSettings(keys_path=tmp_path / "keys.sqlite"),
        warehouse=reader,
    )
    store = KeyStore(tmp_path / "keys.sqlite")
    _, token = store.create("r", {KeyScope.READ}, "acme")
    store.close()
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no Kafka needed here
    response = client.get("/v1/costs", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal", "detail": "internal error (see the server log)"}
    assert "secret" not in response.text and "Traceback" not in response.text
