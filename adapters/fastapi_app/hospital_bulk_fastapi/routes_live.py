"""Live progress: a WebSocket and Server-Sent Events, both views of ``processor.watch``.

Both send the same JSON: a ``snapshot`` of the job first (its ``seq`` is the last
event it reflects), then every ``event`` after the cursor, in sequence order
without gaps, and end once the job has settled. ``docs/http-api.md`` has the
details.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, cast

import anyio
import attrs
from fastapi import APIRouter, Depends, Header, Query, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocketDisconnect

from hospital_bulk import BulkProcessor, Event, Job, JobNotFoundError, StoreError

from .convert import event_message, snapshot_message
from .deps import ProcessorDep, service_of
from .errors import ApiError, responses
from .schemas import ErrorMessage

router = APIRouter(tags=["live"])

#: Close codes of the WebSocket beyond the standard ones.
CLOSE_INVALID = 4400
CLOSE_NOT_FOUND = 4404
#: How long an EventSource waits before reconnecting (milliseconds).
SSE_RETRY_MS = 2000


def _watch(
    processor: BulkProcessor, job_id: str, after: int
) -> aclosing[AsyncGenerator[Event, None]]:
    # watch() is an async generator (typed as an iterator): close it as soon as a client
    # leaves, rather than whenever the garbage collector gets to it.
    return aclosing(cast(AsyncGenerator[Event, None], processor.watch(job_id, after)))


@router.websocket("/ws/progress/{batch_id}")
async def progress(websocket: WebSocket, batch_id: str) -> None:
    """A snapshot, then every event live, then ``end``; closed with 1000 after it.

    ``?after=N`` replays the events after sequence N first. An unknown id gets an
    ``error`` message and close code 4404; a bad ``after``, 4400.
    """
    try:
        processor = service_of(websocket.app).processor
    except ApiError:
        await websocket.close(1013, "the service is not running")
        return
    await websocket.accept()
    raw_after = websocket.query_params.get("after")
    after = _cursor_value(raw_after)
    if raw_after is not None and after is None:
        detail = "after must be a non-negative integer: the last sequence number seen"
        await _fail(websocket, CLOSE_INVALID, "invalid_request", detail)
        return
    try:
        job = await processor.get_job(batch_id)
    except JobNotFoundError:
        detail = f"no bulk batch with id {batch_id!r}"
        await _fail(websocket, CLOSE_NOT_FOUND, "job_not_found", detail)
        return
    try:
        await websocket.send_text(snapshot_message(job).model_dump_json())
        start = job.last_seq if after is None else after
        if not await _relay(websocket, processor, job.id, start):
            return  # the client left
        final = await processor.get_job(batch_id)
        await websocket.send_text(snapshot_message(final, "end").model_dump_json())
        await websocket.close(1000, "the job has settled")
    except WebSocketDisconnect:
        return
    except StoreError as error:
        await _fail(websocket, 1011, "store_unavailable", f"the job store failed: {error}")


async def _relay(websocket: WebSocket, processor: BulkProcessor, job_id: str, after: int) -> bool:
    """Send every event of the job after ``after``; ``False`` if the client left first.

    A second task listens, so a client that leaves while the job is quiet is
    noticed at once rather than at the next event.
    """
    left = False
    failure: StoreError | None = None
    async with anyio.create_task_group() as group:

        async def listen() -> None:
            nonlocal left
            # Clients have nothing to say: their messages are read and dropped.
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            left = True
            group.cancel_scope.cancel()

        group.start_soon(listen)
        # Caught here: out of a task group they would come wrapped in an ExceptionGroup.
        try:
            async with _watch(processor, job_id, after) as events:
                async for event in events:
                    await websocket.send_text(event_message(event).model_dump_json())
        except WebSocketDisconnect:
            left = True
        except StoreError as error:
            failure = error
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return not left


async def _fail(websocket: WebSocket, code: int, error: str, detail: str) -> None:
    try:
        await websocket.send_text(ErrorMessage(code=error, detail=detail).model_dump_json())
        await websocket.close(code, detail[:120])  # a close reason is at most 123 bytes
    except WebSocketDisconnect:
        pass


def _cursor_value(raw: str | None) -> int | None:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


# -- Server-Sent Events --------------------------------------------------------------


@attrs.frozen
class Cursor:
    job: Job
    after: int


async def event_cursor(
    processor: ProcessorDep,
    batch_id: str,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Replay the events after this sequence number"),
    ] = None,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=2**62,
            description="Sent by EventSource on reconnection; wins over `after`",
        ),
    ] = None,
) -> Cursor:
    """Where a stream starts: 404 for an unknown job, 204 when a settled job has nothing
    after the cursor (which tells EventSource to stop reconnecting)."""
    job = await processor.get_job(batch_id)
    given = last_event_id if last_event_id is not None else after
    if given is not None and job.state.is_settled and given >= job.last_seq:
        raise HTTPException(204)
    return Cursor(job, job.last_seq if given is None else given)


@router.get(
    "/hospitals/bulk/{batch_id}/events",
    summary="Live progress as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "`snapshot`, then one event per change (`id:` is its sequence "
            "number), then `end` once the job has settled",
        },
        204: {"description": "The job has settled and nothing follows the cursor"},
        **responses(404, 422, 503),
    },
)
async def events(
    processor: ProcessorDep, cursor: Annotated[Cursor, Depends(event_cursor)]
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(event="snapshot", data=snapshot_message(cursor.job), retry=SSE_RETRY_MS)
    try:
        async with _watch(processor, cursor.job.id, cursor.after) as feed:
            async for event in feed:
                data = event_message(event)
                yield ServerSentEvent(id=str(event.seq), event=event.type, data=data)
        job = await processor.get_job(cursor.job.id)
    except StoreError as error:
        failure = ErrorMessage(code="store_unavailable", detail=f"the job store failed: {error}")
        yield ServerSentEvent(event="error", data=failure)
        return
    yield ServerSentEvent(event="end", data=snapshot_message(job, "end"))
