"""The upload size limit, enforced while the body streams in rather than after."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response
from .schemas import ErrorOut

#: Room for the multipart boundaries and part headers around the file itself.
MULTIPART_SLACK = 64 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the upload exceeds {limit} bytes")


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with a 413.

    A declared ``Content-Length`` over the limit is refused before a byte is read;
    a body that grows past it (chunked) stops the read with :class:`ApiError`,
    which FastAPI hands to the error handlers even from inside form parsing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = too_large(self.max_bytes)
            body = ErrorOut(detail=str(error.detail), code=error.code)
            await error_response(413, body, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes; 413 when it is larger than ``limit``."""
    if file.size is not None and file.size > limit:
        raise too_large(limit)
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise too_large(limit)
    return content


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
