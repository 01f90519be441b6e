"""FakeDirectory: an in-memory Hospital Directory with fault injection, and two faces.

:class:`FakeDirectory` is an in-memory directory with the upstream's semantics
(``UPSTREAM.md``): the batch cap checked before the slow part of a create, one
all-or-nothing activation per batch, 404 for empty batches, fixed-window rate
limits (or sliding ones, to test pacing against any limiter), ids counted from 1,
the oldest hospitals dropped past capacity. It fails on cue with
:meth:`FakeDirectory.inject`. One core serves two faces:

- the :class:`~hospital_bulk.DirectoryClient` methods, to hand it to the engine;
- :meth:`FakeDirectory.http_handler`, the same directory answering over HTTP with
  the real paths, statuses and bodies, for ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from typing import Any, TypeVar
from uuid import UUID

import httpx

from hospital_bulk._client import reason_from_json
from hospital_bulk._convert import unstructure
from hospital_bulk._models import Hospital, HospitalRecord
from hospital_bulk.exceptions import (
    DirectoryError,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
)

from ._core import ONE_CLIENT, DirectoryCore, DirectoryStats
from ._faults import OPERATIONS, Fault, Operation
from ._rules import LIMIT_MODES, UNPARSABLE, Answer, LimitMode, Lost, NotSent

__all__ = [
    "LIMIT_MODES",
    "OPERATIONS",
    "DirectoryStats",
    "FakeDirectory",
    "Fault",
    "LimitMode",
    "Operation",
]

T = TypeVar("T")


class FakeDirectory(DirectoryCore):
    """An in-memory Hospital Directory with the upstream's exact semantics.

    ``latency`` is how long a create takes (other calls are instant). The batch cap
    is counted before that sleep and the hospital stored after it, so concurrent
    creates can overshoot ``batch_cap`` as they do upstream; a create whose caller
    gives up during the sleep still lands, as it would upstream. ``create_limit``
    applies to creates, ``other_limit`` to every other operation but ``ping``, each
    operation in its own window (slowapi counts per route); ``None`` is unlimited.
    ``capacity`` is how many hospitals are kept (the oldest go first); ``clock``
    drives the rate-limit windows. ``limit_mode`` is how the limits count: ``"fixed"``
    windows, each opened by the first request after the last one closed, as the
    upstream keeps them; or ``"sliding"``, refusing a request when ``count`` were
    admitted in the ``window`` seconds before it — not the upstream's, but strict at
    every moment, for testing that pacing survives a limiter of any phase.

    Use it directly as a :class:`~hospital_bulk.DirectoryClient`, or over HTTP::

        httpx.AsyncClient(transport=httpx.MockTransport(fake.http_handler))

    Besides the faults injected on cue, :meth:`start_chaos` makes it fail at random,
    seeded, with given chances per fault and outages now and then (:class:`Chaos`).
    """

    # The DirectoryClient face.

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        body = {
            "name": record.name,
            "address": record.address,
            "phone": record.phone,
            "creation_batch_id": str(batch_id),
        }
        return await _as_client(self._create(body))

    async def list_batch(self, batch_id: UUID) -> list[Hospital]:
        return await _as_client(self._list(str(batch_id)), absent=[])

    async def activate_batch(self, batch_id: UUID) -> int:
        return await _as_client(self._activate(str(batch_id)))

    async def delete_batch(self, batch_id: UUID) -> int:
        return await _as_client(self._delete_batch(str(batch_id)), absent=0)

    async def delete_hospital(self, hospital_id: int) -> bool:
        return await _as_client(self._delete_hospital(str(hospital_id)), absent=False)

    async def ping(self) -> None:
        await _as_client(self._ping())

    # The HTTP face.

    async def aclose(self) -> None:
        """Nothing to release: the directory is plain memory."""

    async def http_handler(
        self, request: httpx.Request, *, client: str = ONE_CLIENT
    ) -> httpx.Response:
        """Answer ``request`` as the upstream would; for ``httpx.MockTransport``.

        ``client`` says who is calling (the upstream keys its rate limits by client
        IP): each client has its own windows. Leave it out for one client.
        """
        try:
            return await self._route(request, client)
        except Answer as answer:
            return _response(answer.status, answer.body)
        except NotSent:
            raise httpx.ConnectError("Connection refused (injected)", request=request) from None
        except Lost:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response (injected)", request=request
            ) from None

    async def _route(self, request: httpx.Request, client: str) -> httpx.Response:
        path = request.url.path
        path_known = False
        for method, pattern, operation in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and method == request.method:
                return await self._serve(operation, match.groupdict(), request, client)
            path_known = path_known or match is not None
        if path_known:
            raise Answer(405, {"detail": "Method Not Allowed"})
        # Starlette redirects a wrong trailing slash rather than serving it.
        other = path[:-1] if path.endswith("/") else path + "/"
        if path != "/" and any(pattern.fullmatch(other) for _, pattern, _ in _ROUTES):
            location = str(request.url.copy_with(path=other))
            return httpx.Response(307, headers={"location": location})
        raise Answer(404, {"detail": "Not Found"})

    async def _serve(
        self, operation: Operation, params: dict[str, str], request: httpx.Request, client: str
    ) -> httpx.Response:
        batch_id, hospital_id = params.get("batch_id", ""), params.get("hospital_id", "")
        match operation:
            case "ping":
                await self._ping(client=client)
                return _response(200, {"status": "OK"})
            case "create":
                return _response(200, _wire(await self._create(_json_body(request), client=client)))
            case "list_all":
                return _response(200, [_wire(h) for h in await self._list_all(client=client)])
            case "list":
                return _response(200, [_wire(h) for h in await self._list(batch_id, client=client)])
            case "activate":
                count = await self._activate(batch_id, client=client)
                message = f"Activated {count} hospitals in batch {batch_id}"
                return _response(200, {"activated_count": count, "message": message})
            case "delete_batch":
                count = await self._delete_batch(batch_id, client=client)
                message = f"Deleted {count} hospitals of batch {batch_id}"
                return _response(200, {"deleted_count": count, "message": message})
            case "get_hospital":
                return _response(200, _wire(await self._get(hospital_id, client=client)))
            case "update_hospital":
                return _response(
                    200, _wire(await self._update(hospital_id, _json_body(request), client=client))
                )
            case "delete_hospital":
                await self._delete_hospital(hospital_id, client=client)
                return httpx.Response(204)


# (method, path, operation) in the upstream's routing order.
_ROUTES: list[tuple[str, re.Pattern[str], Operation]] = [
    ("GET", re.compile(r"/"), "ping"),
    ("POST", re.compile(r"/hospitals/"), "create"),
    ("GET", re.compile(r"/hospitals/"), "list_all"),
    ("GET", re.compile(r"/hospitals/batch/(?P<batch_id>[^/]+)"), "list"),
    ("DELETE", re.compile(r"/hospitals/batch/(?P<batch_id>[^/]+)"), "delete_batch"),
    ("PATCH", re.compile(r"/hospitals/batch/(?P<batch_id>[^/]+)/activate"), "activate"),
    ("GET", re.compile(r"/hospitals/(?P<hospital_id>[^/]+)"), "get_hospital"),
    ("PUT", re.compile(r"/hospitals/(?P<hospital_id>[^/]+)"), "update_hospital"),
    ("DELETE", re.compile(r"/hospitals/(?P<hospital_id>[^/]+)"), "delete_hospital"),
]


async def _as_client(call: Awaitable[T], absent: T | None = None) -> T:
    """Await a core call, raising what ``HttpDirectoryClient`` would raise for its answer."""
    try:
        return await call
    except Answer as answer:
        if answer.status == 404 and absent is not None:
            return absent
        raise _client_error(answer) from None
    except NotSent:
        raise NotSentError("connection refused (injected)") from None
    except Lost:
        raise MaybeLandedError("the connection broke before the answer (injected)") from None


def _client_error(answer: Answer) -> DirectoryError:
    message = reason_from_json(answer.body) or str(answer.body)
    if answer.status == 429:
        return ThrottledError(message)  # the upstream never sends Retry-After
    if answer.status >= 500:
        return MaybeLandedError(message, status=answer.status)
    return RejectedError(message, status=answer.status)


def _json_body(request: httpx.Request) -> object:
    try:
        return json.loads(request.content)
    except ValueError:
        return UNPARSABLE


def _wire(hospital: Hospital) -> dict[str, Any]:
    """A hospital as the upstream sends it: ``created_at`` naive, in UTC."""
    data: dict[str, Any] = unstructure(hospital)
    if hospital.created_at is not None:
        data["created_at"] = hospital.created_at.replace(tzinfo=None).isoformat()
    return data


def _response(status: int, body: object) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body)
    return httpx.Response(status, json=body)
