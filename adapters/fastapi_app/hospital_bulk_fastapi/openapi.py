"""The OpenAPI document, tidied after FastAPI builds it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from .errors import responses

#: FastAPI's own 422 body, which the service never sends (errors.py answers ErrorOut).
_UNUSED = ("HTTPValidationError", "ValidationError")
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def install_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = tidy(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise


def tidy(schema: dict[str, Any]) -> dict[str, Any]:
    """Errors are JSON on every route, streaming ones included; drop unused schemas."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            documented = operation.get("responses", {})
            if _FASTAPI_422 in json.dumps(documented.get("422")):
                # FastAPI's own entry for routes whose parameters can be wrong: say what
                # the service sends instead.
                documented["422"] = _json_ready(responses(422)[422])
            for status, response in documented.items():
                if status.startswith(("4", "5")):
                    content = response.get("content", {})
                    merged: dict[str, Any] = {}
                    for media in list(content):
                        merged.update(content.pop(media))
                    if merged:
                        content["application/json"] = merged
    components = schema.get("components", {}).get("schemas", {})
    for name in _UNUSED:
        others = {key: value for key, value in components.items() if key != name}
        if f"#/components/schemas/{name}" not in json.dumps([schema["paths"], others]):
            components.pop(name, None)
    return schema


def _json_ready(entry: dict[str, Any]) -> dict[str, Any]:
    """A ``responses()`` entry as it stands in the document: the model as a reference."""
    model = entry["model"]
    content = {"application/json": {**entry["content"]["application/json"]}}
    content["application/json"]["schema"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"description": entry["description"], "content": content}
