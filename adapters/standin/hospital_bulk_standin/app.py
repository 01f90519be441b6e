"""The stand-in as ``uvicorn hospital_bulk_standin.app:app --port 9000`` serves it.

``app`` is built when this module is imported, from the ``HOSPITAL_DIRECTORY_*``
variables (:func:`~hospital_bulk_standin.directory_app_from_env`): a malformed one
stops uvicorn at start-up with an error naming it.
"""

from __future__ import annotations

from ._server import DirectoryApp, directory_app_from_env

__all__ = ["app"]

app: DirectoryApp = directory_app_from_env()
