"""``GET /healthz``: liveness, ``GET /readyz``: readiness (Kafka), no key needed; ``GET /`` leads a browser to the dashboards."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.responses import RedirectResponse

from agentledger.api.state import ApiState, get_state

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "not ready: the body names what is down"}},
    summary="Readiness: Kafka answers and every topic the API writes has a leader",
)
async def readyz(state: ApiState = Depends(get_state)) -> Response:
    """200 ``{"status": "ready"}``, or 503 ``{"status": "unavailable", "down": {part: why}}``
    (for a load balancer; ``/healthz`` only says the process runs)."""
    t = state.topics
    down = await state.publisher.problems([t.events, t.policies, t.control, t.objectives])
    for view in (state.policies, state.budgets, state.control, state.objectives):
        if not view.running:
            down[view.topic] = "the API stopped following this topic (see the server log)"
    if down:
        body = orjson.dumps({"status": "unavailable", "down": down})
        return Response(body, status_code=503, media_type="application/json", headers={"Retry-After": "1"})
    return Response(b'{"status":"ready"}', media_type="application/json")


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/overview", status_code=307)
