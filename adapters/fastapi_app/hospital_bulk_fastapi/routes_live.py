"""Live progress: a WebSocket and Server-Sent Events, both views of ``processor.watch``.

Both send the same JSON: a ``snapshot`` of the job first (its ``seq`` is the last
event it reflects), then every ``event`` after the cursor, in sequence order
without gaps, and end once the job has settled, or with a ``service.stopping``
message when the service shuts down. ``docs/http-api.md`` has the details.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Literal, cast

import anyio
import attrs
from fastapi import APIRouter, Depends, Header, Query, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocketDisconnect

from hospital_bulk import BulkProcessor, Event, Job, JobNotFoundError, StoreError

from .convert import event_message, snapshot_message
from .deps import ProcessorDep, ServiceDep, service_of
from .errors import ApiError, responses
from .schemas import ErrorMessage, StoppingMessage
from .stopping import STOPPING_DETAIL, Stopping

router = APIRouter(tags=["live"])

#: Close codes of the WebSocket beyond the standard ones.
CLOSE_INVALID = 4400
CLOSE_NOT_FOUND = 4404
#: The service is shutting down (RFC 6455's "going away").
CLOSE_GOING_AWAY = 1001
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
    ``error`` message and close code 4404; a bad ``after``, 4400. When the service
    shuts down, a ``service.stopping`` message, then close code 1001.
    """
    try:
        service = service_of(websocket.app)
    except ApiError:
        await websocket.close(1013, "the service is not running")
        return
    await websocket.accept()
    with service.stopping.stream():
        await _progress(websocket, service.processor, service.stopping, batch_id)


async def _progress(
    websocket: WebSocket, processor: BulkProcessor, stopping: Stopping, batch_id: str
) -> None:
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
        start = job.last_seq if after is None else after
        if stopping.began:
            await _say_stopping(websocket, stopping, job.id, start)
            return
        await websocket.send_text(snapshot_message(job).model_dump_json())
        ending, last = await _relay(websocket, processor, stopping, job.id, start)
        if ending == "left":
            return
        if ending == "stopping":
            await _say_stopping(websocket, stopping, job.id, last)
            return
        final = await processor.get_job(batch_id)
        await websocket.send_text(snapshot_message(final, "end").model_dump_json())
        await websocket.close(1000, "the job has settled")
    except WebSocketDisconnect:
        return
    except StoreError as error:
        await _fail(websocket, 1011, "store_unavailable", f"the job store failed: {error}")


async def _say_stopping(websocket: WebSocket, stopping: Stopping, job_id: str, seq: int) -> None:
    await websocket.send_text(_stopping_message(stopping, job_id, seq).model_dump_json())
    await websocket.close(CLOSE_GOING_AWAY, "the service is shutting down")


def _stopping_message(stopping: Stopping, job_id: str, seq: int) -> StoppingMessage:
    return StoppingMessage(
        batch_id=job_id, seq=seq, detail=STOPPING_DETAIL, retry_after=stopping.retry_after
    )


async def _relay(
    websocket: WebSocket, processor: BulkProcessor, stopping: Stopping, job_id: str, after: int
) -> tuple[Literal["settled", "left", "stopping"], int]:
    """Send every event of the job after ``after`` until it settles, the client leaves
    or the service stops; which of them, and the last sequence number sent.

    Other tasks listen to the client and to the stop, so that either is noticed at
    once rather than at the next event.
    """
    ending: Literal["settled", "left", "stopping"] = "settled"
    failure: StoreError | None = None
    async with anyio.create_task_group() as group:

        async def listen() -> None:
            nonlocal ending
            # Clients have nothing to say: their messages are read and dropped.
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            ending = "left"
            group.cancel_scope.cancel()

        async def stop() -> None:
            nonlocal ending
            await stopping.requested.wait()
            ending = "stopping"
            group.cancel_scope.cancel()

        group.start_soon(listen)
        group.start_soon(stop)
        # Caught here: out of a task group they would come wrapped in an ExceptionGroup.
        try:
            async with _watch(processor, job_id, after) as events:
                async for event in events:
                    await websocket.send_text(event_message(event).model_dump_json())
                    after = event.seq
        except WebSocketDisconnect:
            ending = "left"
        except StoreError as error:
            failure = error
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return ending, after


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
            "number), then `end` once the job has settled, or `service.stopping` when the "
            "service shuts down",
        },
        204: {"description": "The job has settled and nothing follows the cursor"},
        **responses(404, 422, 503),
    },
)
async def events(
    service: ServiceDep, cursor: Annotated[Cursor, Depends(event_cursor)]
) -> AsyncIterator[ServerSentEvent]:
    processor, stopping = service.processor, service.stopping
    with stopping.stream():
        job_id, after = cursor.job.id, cursor.after
        if not stopping.began:
            snapshot = snapshot_message(cursor.job)
            yield ServerSentEvent(event="snapshot", data=snapshot, retry=SSE_RETRY_MS)
        try:
            async with _watch(processor, job_id, after) as feed:
                while not isinstance(event := await _next_unless_stopping(feed, stopping), str):
                    data = event_message(event)
                    yield ServerSentEvent(id=str(event.seq), event=event.type, data=data)
                    after = event.seq
            if event == "stopping":
                message = _stopping_message(stopping, job_id, after)
                yield ServerSentEvent(event=message.type, data=message)
                return
            job = await processor.get_job(job_id)
        except StoreError as error:
            detail = f"the job store failed: {error}"
            yield ServerSentEvent(
                event="error", data=ErrorMessage(code="store_unavailable", detail=detail)
            )
            return
        yield ServerSentEvent(event="end", data=snapshot_message(job, "end"))


async def _next_unless_stopping(
    feed: AsyncIterator[Event], stopping: Stopping
) -> Event | Literal["settled", "stopping"]:
    """The feed's next event; ``settled`` once it ends; ``stopping`` once the service
    stops, even while waiting (the feed is then done with)."""
    if stopping.began:
        return "stopping"
    result: Event | Literal["settled", "stopping"] = "stopping"
    failure: Exception | None = None
    # No task group spans a yield of the stream: one per event, around the wait only.
    async with anyio.create_task_group() as group:

        async def stop() -> None:
            await stopping.requested.wait()
            group.cancel_scope.cancel()

        group.start_soon(stop)
        try:
            result = await anext(feed)
        except StopAsyncIteration:
            result = "settled"
        except Exception as error:  # raised out of the group: unwrapped
            failure = error
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result
