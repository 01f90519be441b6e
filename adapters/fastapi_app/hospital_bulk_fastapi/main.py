"""The app for servers: ``uvicorn hospital_bulk_fastapi.main:app``.

Importing this reads the settings from the environment and nothing else: the
store and the upstream are opened by the lifespan, when the server starts.
"""

from __future__ import annotations

from .app import create_app

app = create_app()
