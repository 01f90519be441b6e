"""Liveness and readiness, for orchestrators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .deps import service_of
from .errors import ApiError
from .schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="The process is alive",
    response_model=HealthOut,
    response_model_exclude_none=True,
)
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    summary="The service can take work: running, and its job store answers",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Not ready: starting, or no store"}},
)
async def readyz(request: Request) -> Response:
    try:
        await service_of(request.app).processor.ping()
    except ApiError as error:
        return _unavailable(str(error.detail))
    except Exception as error:  # whatever the store raises, the answer is "not ready"
        return _unavailable(f"the job store does not answer: {error}")
    return JSONResponse(HealthOut(status="ok").model_dump(mode="json", exclude_none=True))


def _unavailable(detail: str) -> Response:
    body = HealthOut(status="unavailable", detail=detail).model_dump(mode="json")
    return JSONResponse(body, 503, headers={"Retry-After": "5"})
