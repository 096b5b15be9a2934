"""The FastAPI app factory: ``create_app()`` wires settings, Kafka clients, key store and
routers; the lifespan starts and stops the Kafka clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka.errors import KafkaError
from fastapi import FastAPI

from agentledger.api import errors
from agentledger.api.bodylimit import BodyLimitMiddleware
from agentledger.api.config import ApiSettings, get_api_settings
from agentledger.api.contenttype import ContentTypeMiddleware
from agentledger.api.headers import SecurityHeadersMiddleware
from agentledger.api.kafka import CompactedView, Publisher
from agentledger.api.keys import KeyStore
from agentledger.api.ratelimit import EventRateLimiter
from agentledger.api.routers import (
    budgets,
    control,
    dashboards,
    health,
    ingest,
    objectives,
    policies,
    queries,
    rollouts,
    tools,
)
from agentledger.api.routers import keys as provider_keys
from agentledger.api.sessions import DashboardSignIn
from agentledger.api.state import ApiState, TopicNames
from agentledger.errors import ConfigError
from agentledger.events import BudgetStatus, ControlCommand, ObjectivePolicy, Policy
from agentledger.rollout import RolloutPolicy
from agentledger.settings import Settings, get_settings
from agentledger.tools import TOOL_RECORD
from agentledger.warehouse.reader import WarehouseReader


def create_app(
    settings: Settings | None = None,
    api_settings: ApiSettings | None = None,
    *,
    bootstrap: str | None = None,
    topic_prefix: str | None = None,
    keys_path: Path | None = None,
    warehouse: WarehouseReader | None = None,
) -> FastAPI:
    """A ready app. Arguments override settings (tests pass their broker and prefix)."""
    s = settings or get_settings()
    a = api_settings or get_api_settings()
    broker = bootstrap or s.kafka_bootstrap
    if not broker:
        raise ConfigError(
            "the API needs Kafka: set AGENTLEDGER_KAFKA_BOOTSTRAP or run `agentledger kafka up`"
        )
    names = TopicNames.with_prefix(s.topic_prefix if topic_prefix is None else topic_prefix)
    client_options = s.kafka_client_options()
    state = ApiState(
        settings=a,
        keys=KeyStore(keys_path or a.resolved_keys_path()),
        limiter=EventRateLimiter(a.ingest_rate_per_s, a.ingest_burst),
        topics=names,
        publisher=Publisher(broker, client_options, a.produce_timeout_s),
        policies=CompactedView(names.policies, broker, client_options, Policy.model_validate_json),
        budgets=CompactedView(names.budgets, broker, client_options, BudgetStatus.model_validate_json),
        control=CompactedView(
            names.control,
            broker,
            client_options,
            ControlCommand.model_validate_json,
            id_of=lambda c: c.command_id,  # idempotent retries by command_id
        ),
        rollouts=CompactedView(names.rollouts, broker, client_options, RolloutPolicy.model_validate_json),
        objectives=CompactedView(
            names.objectives, broker, client_options, ObjectivePolicy.model_validate_json
        ),
        tools=CompactedView(names.tools, broker, client_options, TOOL_RECORD.validate_json),
        warehouse=warehouse or WarehouseReader(s.warehouse_root),
    )
    sign_in = DashboardSignIn.open(s.home, a)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        views = (state.policies, state.budgets, state.control, state.rollouts, state.objectives, state.tools)
        try:
            await state.publisher.read_record_limit(names.events, s)
            await state.publisher.start()
            for view in views:
                await view.start()
        except KafkaError as exc:
            for view in views:
                await view.stop()
            await state.publisher.stop()
            raise ConfigError(f"the API cannot reach Kafka at {broker}: {exc}") from None
        try:
            yield
        finally:
            for view in views:
                await view.stop()
            await state.publisher.stop()
            state.keys.close()
            sign_in.close()

    app = FastAPI(
        title="agentledger",
        version="1",
        summary="Ingest, OTLP, queries, policies, control and dashboards for AI agent cost.",
        lifespan=lifespan,
    )
    app.add_middleware(ContentTypeMiddleware)  # one content-type rule on every route
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=a.max_body_bytes)  # every route
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.ledger = state
    app.state.sign_in = sign_in
    errors.install(app)
    for module in (
        health,
        ingest,
        queries,
        budgets,
        policies,
        objectives,
        control,
        rollouts,
        tools,
        provider_keys,
        dashboards,
    ):
        app.include_router(module.router)
    return app
