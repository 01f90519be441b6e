"""The HTTP service: a thin FastAPI adapter over :mod:`hospital_bulk`.

``create_app()`` builds it; ``uvicorn hospital_bulk_fastapi.main:app`` serves it
with settings from the environment (see :class:`ServiceSettings`).
"""

from __future__ import annotations

from .app import create_app
from .deps import ProcessorDep, Service, ServiceDep, get_processor, get_service, service_of
from .settings import ServiceSettings
from .stopping import begin_shutdown

__all__ = [
    "ProcessorDep",
    "Service",
    "ServiceDep",
    "ServiceSettings",
    "begin_shutdown",
    "create_app",
    "get_processor",
    "get_service",
    "service_of",
]
