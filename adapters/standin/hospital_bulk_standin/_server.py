"""A stand-in Hospital Directory: the upstream of ``UPSTREAM.md`` on a real socket.

Every upstream request becomes an ``httpx.Request`` answered by
:meth:`~hospital_bulk.testing.FakeDirectory.http_handler`, so the stand-in has the
fake's semantics exactly (paths, statuses, bodies, the batch cap, one activation,
the id counter, latency, rate limits) and adds what only a real server has:

- rate limits per client IP, as the upstream keys them;
- faults that break the connection for real (see :func:`create_directory_app`);
- admin endpoints under ``/_standin/``, a prefix the upstream never serves, to
  inject faults, read stats and reset the directory over HTTP.

The package re-exports what is public here; :mod:`hospital_bulk_standin.app` builds
the app that ``uvicorn hospital_bulk_standin.app:app`` serves. ``docs/standin.md``
has the whole story.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, TypeGuard, cast

import attrs
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hospital_bulk import UPSTREAM_LIMITS, RateLimit
from hospital_bulk.testing import (
    LIMIT_MODES,
    OPERATIONS,
    Chaos,
    FakeDirectory,
    Fault,
    LimitMode,
    Operation,
)

__all__ = [
    "ADMIN_PREFIX",
    "ENV_ADMIN",
    "ENV_CHAOS",
    "ENV_CHAOS_SEED",
    "ENV_CREATE_LIMIT",
    "ENV_LATENCY",
    "ENV_LIMIT_MODE",
    "ENV_OTHER_LIMIT",
    "DirectoryApp",
    "create_directory_app",
    "directory_app_from_env",
    "parse_rate_limit",
]

#: Where the admin endpoints live; the upstream answers 404 for all of it.
ADMIN_PREFIX = "/_standin/"

ENV_LATENCY = "HOSPITAL_DIRECTORY_LATENCY"
ENV_CREATE_LIMIT = "HOSPITAL_DIRECTORY_CREATE_LIMIT"
ENV_OTHER_LIMIT = "HOSPITAL_DIRECTORY_OTHER_LIMIT"
ENV_ADMIN = "HOSPITAL_DIRECTORY_ADMIN"
ENV_LIMIT_MODE = "HOSPITAL_DIRECTORY_LIMIT_MODE"
ENV_CHAOS = "HOSPITAL_DIRECTORY_CHAOS"
ENV_CHAOS_SEED = "HOSPITAL_DIRECTORY_CHAOS_SEED"

# The upstream's own limits, per client IP.
_CREATE_LIMIT = UPSTREAM_LIMITS.create
_OTHER_LIMIT = UPSTREAM_LIMITS.other

# A cut answer declares this many bytes and sends only the first few.
_CUT_LENGTH = 256
_CUT_BODY = b'{"id": '


class DirectoryApp(Starlette):
    """The stand-in's ASGI app: a Starlette app whose ``state.directory`` is the directory.

    Each request is served by whatever ``state.directory`` holds at that moment, so
    a test may swap in a fresh :class:`~hospital_bulk.testing.FakeDirectory`
    without restarting the server.
    """

    def __init__(self, directory: FakeDirectory, *, admin: bool = True) -> None:
        super().__init__(routes=_admin_routes() if admin else [])
        self.state.directory = directory
        self.admin = admin

    @property
    def directory(self) -> FakeDirectory:
        """The directory answering requests (``state.directory``)."""
        directory: FakeDirectory = self.state.directory
        return directory

    # The return value is for uvicorn only: see _serve_upstream.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http" or (self.admin and scope["path"].startswith(ADMIN_PREFIX)):
            await super().__call__(scope, receive, send)
            return None
        return await _serve_upstream(self.directory, scope, receive, send)


def create_directory_app(
    directory: FakeDirectory | None = None,
    *,
    latency: float = 0.0,
    create_limit: RateLimit | None = _CREATE_LIMIT,
    other_limit: RateLimit | None = _OTHER_LIMIT,
    limit_mode: LimitMode = "fixed",
    admin: bool = True,
) -> DirectoryApp:
    """A stand-in Hospital Directory serving ``directory`` (a new one if ``None``).

    ``latency`` (seconds per create; ``5`` is the real one), ``create_limit`` and
    ``other_limit`` (per client IP; ``None`` is unlimited) and ``limit_mode``
    (``"fixed"`` windows as the upstream keeps them, or ``"sliding"``: see
    :class:`~hospital_bulk.testing.FakeDirectory`) configure the directory made here;
    to serve your own directory, configure it instead. ``admin`` adds the endpoints
    under ``/_standin/``:

    - ``POST /_standin/faults`` with ``{"fault": "fail_after_storing",
      "operation": "create", "times": 1, "name": null}`` (all but ``fault``
      optional) injects a fault, answering 201 with the rule; 422 if invalid;
      ``seconds`` says how long ``hold`` holds a create;
    - ``DELETE /_standin/faults`` forgets the faults not used up yet (204);
    - ``POST /_standin/outage`` with ``{"seconds": 20}``: every call answers 503
      and stores nothing for that long (201; ``0`` ends it);
    - ``GET /_standin/stats``: calls per operation, 429s answered, faults
      suffered, creates in flight now and at most, hospitals stored;
    - ``POST /_standin/reset`` starts afresh, as an upstream restart does (204);
    - ``GET /_standin/chaos``: the chaos mode at work, ``{"chaos": "throttle=0.1,...",
      "seed": 7}`` or ``{"chaos": null, "seed": null}``; ``PUT`` with such a body
      starts one (200, or 422), ``DELETE`` ends it (204). See
      :class:`~hospital_bulk.testing.Chaos` for the spelling.

    Over the socket the faults look like this:

    ========================  ================================================
    ``reject``                400, nothing stored
    ``throttle``              the upstream's 429 (no Retry-After), nothing stored
    ``fail_before_storing``   500, nothing stored
    ``error_after_storing``   stored, then 500
    ``fail_after_storing``    stored, then a 200 whose body is cut short: the
                              connection closes mid-response
    ``hold``                  the create is held ``seconds``, then stored and
                              answered (to a caller that may have gone)
    ``not_sent``              nothing stored; the connection closes without a
                              byte of answer (a listening server cannot refuse a
                              request it has read, so clients see a lost answer)
    ========================  ================================================

    Closing a connection is something ASGI cannot say: the stand-in relies on
    uvicorn, which closes it when an app returns a value (it logs the reason).
    """
    if directory is None:
        directory = FakeDirectory(
            latency=latency,
            create_limit=create_limit,
            other_limit=other_limit,
            limit_mode=limit_mode,
        )
    elif (latency, create_limit, other_limit, limit_mode) != (
        0.0,
        _CREATE_LIMIT,
        _OTHER_LIMIT,
        "fixed",
    ):
        # Silently ignoring them, or silently changing the directory, would both surprise.
        raise ValueError("configure the FakeDirectory you pass: latency and limits are its own")
    return DirectoryApp(directory, admin=admin)


def parse_rate_limit(text: str) -> RateLimit | None:
    """``"30/60"`` is 30 requests per 60 seconds, ``"30"`` 30 per minute; ``"0"``,
    ``"none"`` or ``""`` is no limit. Raises ``ValueError`` for anything else."""
    value = text.strip().lower()
    if value in ("", "0", "none", "off"):
        return None
    count_text, slash, window_text = value.partition("/")
    try:
        count, window = int(count_text), float(window_text) if slash else 60.0
    except ValueError:
        count, window = 0, 0.0
    if count < 1 or not (math.isfinite(window) and window > 0):
        raise ValueError(
            f"a rate limit is COUNT/SECONDS (like 30/60), COUNT (per minute) or 0, not {text!r}"
        )
    return RateLimit(count, window)


def directory_app_from_env(environ: Mapping[str, str] = os.environ) -> DirectoryApp:
    """The stand-in configured from ``environ``; unset variables keep the defaults.

    ``HOSPITAL_DIRECTORY_LATENCY`` (seconds per create, default 0),
    ``HOSPITAL_DIRECTORY_CREATE_LIMIT`` (default ``30/60``),
    ``HOSPITAL_DIRECTORY_OTHER_LIMIT`` (default ``50/60``; limits as
    :func:`parse_rate_limit` reads them), ``HOSPITAL_DIRECTORY_LIMIT_MODE``
    (``fixed``, the default and the upstream's, or ``sliding``) and
    ``HOSPITAL_DIRECTORY_ADMIN`` (``0`` hides the admin endpoints; default ``1``);
    ``HOSPITAL_DIRECTORY_CHAOS`` starts a chaos mode (:meth:`Chaos.parse`'s spelling;
    none by default) seeded by ``HOSPITAL_DIRECTORY_CHAOS_SEED`` (default 0).
    """
    latency_text = environ.get(ENV_LATENCY, "0")
    try:
        latency = float(latency_text)
    except ValueError:
        latency = -1.0
    if not (math.isfinite(latency) and latency >= 0):
        raise ValueError(f"{ENV_LATENCY} must be seconds (like 5 or 0.5), not {latency_text!r}")
    admin_text = environ.get(ENV_ADMIN, "1").strip().lower()
    if admin_text not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(f"{ENV_ADMIN} must be 1 or 0, not {admin_text!r}")
    mode = environ.get(ENV_LIMIT_MODE, "fixed").strip().lower()
    if mode not in LIMIT_MODES:
        raise ValueError(f"{ENV_LIMIT_MODE} must be one of {', '.join(LIMIT_MODES)}, not {mode!r}")
    app = create_directory_app(
        latency=latency,
        create_limit=_env_limit(environ, ENV_CREATE_LIMIT, _CREATE_LIMIT),
        other_limit=_env_limit(environ, ENV_OTHER_LIMIT, _OTHER_LIMIT),
        limit_mode=mode,
        admin=admin_text in ("1", "true", "yes", "on"),
    )
    chaos = _env_chaos(environ)
    if chaos is not None:
        app.directory.start_chaos(chaos)
    return app


def _env_chaos(environ: Mapping[str, str]) -> Chaos | None:
    """``HOSPITAL_DIRECTORY_CHAOS`` (as :meth:`Chaos.parse` reads it; unset: none) with
    ``HOSPITAL_DIRECTORY_CHAOS_SEED`` (an integer, default 0)."""
    seed_text = environ.get(ENV_CHAOS_SEED, "0")
    try:
        seed = int(seed_text)
    except ValueError:
        raise ValueError(f"{ENV_CHAOS_SEED} must be an integer, not {seed_text!r}") from None
    try:
        return Chaos.parse(environ.get(ENV_CHAOS, ""), seed=seed)
    except ValueError as exc:
        raise ValueError(f"{ENV_CHAOS}: {exc}") from None


def _env_limit(environ: Mapping[str, str], key: str, default: RateLimit) -> RateLimit | None:
    text = environ.get(key)
    if text is None:
        return default
    try:
        return parse_rate_limit(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


# The upstream face.


async def _serve_upstream(
    directory: FakeDirectory, scope: Scope, receive: Receive, send: Send
) -> str | None:
    """Answer one upstream request through the fake's HTTP face.

    Returns why the connection must close unanswered, or ``None``. ASGI has no
    message for that; uvicorn closes the connection, writing nothing more, when
    the app returns a value, and logs it as an error with the value.
    """
    body = await _read_body(receive)
    if body is None:
        return None  # the client left: nothing to answer
    request = httpx.Request(
        scope["method"], _url(scope), headers=list(scope["headers"]), content=body
    )
    client = scope.get("client")
    try:
        response = await directory.http_handler(request, client=client[0] if client else "")
    except httpx.ConnectError:  # Fault.NOT_SENT
        return "stand-in: closing unanswered (injected not_sent)"
    except httpx.RemoteProtocolError:  # Fault.FAIL_AFTER_STORING
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % _CUT_LENGTH)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _CUT_BODY, "more_body": True})
        return "stand-in: cutting the answer short (injected fail_after_storing)"
    content = await response.aread()
    headers = [(k.lower(), v) for k, v in response.headers.raw]
    if b"content-length" not in (k for k, _ in headers) and response.status_code not in (204, 304):
        headers.append((b"content-length", b"%d" % len(content)))  # as Starlette always says
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _url(scope: Scope) -> httpx.URL:
    """The URL the client asked for, as sent: redirects point back at it."""
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    try:
        base = httpx.URL(f"{scope['scheme']}://{host}")
        if not base.host:
            raise httpx.InvalidURL("no Host header")
    except httpx.InvalidURL:
        server_host, server_port = scope.get("server") or ("localhost", None)
        base = httpx.URL(scheme=scope["scheme"], host=server_host, port=server_port)
    return base.copy_with(raw_path=target)


# The admin face.


def _admin_routes() -> list[Route]:
    prefix = ADMIN_PREFIX.rstrip("/")
    return [
        Route(f"{prefix}/faults", _inject, methods=["POST"]),
        Route(f"{prefix}/faults", _clear_faults, methods=["DELETE"]),
        Route(f"{prefix}/outage", _outage, methods=["POST"]),
        Route(f"{prefix}/stats", _stats, methods=["GET"]),
        Route(f"{prefix}/reset", _reset, methods=["POST"]),
        Route(f"{prefix}/chaos", _chaos, methods=["GET", "PUT", "DELETE"]),
    ]


def _directory(request: Request) -> FakeDirectory:
    return cast(DirectoryApp, request.app).directory


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 422 that says it is none."""
    try:
        body = await request.json()
    except ValueError:
        return _invalid("the body must be JSON")
    if not isinstance(body, dict):
        return _invalid("the body must be a JSON object")
    return body


async def _inject(request: Request) -> Response:
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    faults = [fault.value for fault in Fault]
    raw_fault, operation = body.get("fault"), body.get("operation", "create")
    times, name = body.get("times", 1), body.get("name")
    seconds = body.get("seconds", 0)
    if raw_fault not in faults:
        return _invalid(f"fault must be one of {faults}, not {raw_fault!r}")
    if operation not in OPERATIONS:
        return _invalid(f"operation must be one of {list(OPERATIONS)}, not {operation!r}")
    if type(times) is not int:
        return _invalid(f"times must be an integer, not {times!r}")
    if name is not None and not isinstance(name, str):
        return _invalid(f"name must be a string or null, not {name!r}")
    if not _seconds(seconds):
        return _invalid(f"seconds must be a number of seconds, not {seconds!r}")
    fault = Fault(raw_fault)
    try:
        _directory(request).inject(
            fault, operation=cast(Operation, operation), times=times, name=name, seconds=seconds
        )
    except ValueError as exc:
        return _invalid(str(exc))
    rule = {
        "fault": fault.value,
        "operation": operation,
        "times": times,
        "name": name,
        "seconds": seconds,
    }
    return JSONResponse(rule, status_code=201)


async def _outage(request: Request) -> Response:
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    seconds = body.get("seconds")
    if not _seconds(seconds):
        return _invalid(f"seconds must be a number of seconds, not {seconds!r}")
    _directory(request).outage(seconds)
    return JSONResponse({"seconds": seconds}, status_code=201)


def _seconds(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 3600
    )


async def _clear_faults(request: Request) -> Response:
    _directory(request).clear_faults()
    return Response(status_code=204)


async def _stats(request: Request) -> Response:
    directory = _directory(request)
    stats = attrs.asdict(directory.stats)
    return JSONResponse({**stats, "hospitals": len(directory.hospitals)})


async def _chaos(request: Request) -> Response:
    directory = _directory(request)
    if request.method == "DELETE":
        directory.stop_chaos()
        return Response(status_code=204)
    if request.method == "PUT":
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        text, seed = body.get("chaos"), body.get("seed", 0)
        if text is not None and not isinstance(text, str):
            return _invalid(f"chaos must be a string like 'throttle=0.1,hold=0.1:3', not {text!r}")
        if type(seed) is not int:
            return _invalid(f"seed must be an integer, not {seed!r}")
        try:
            chaos = Chaos.parse(text or "", seed=seed)
        except ValueError as exc:
            return _invalid(str(exc))
        if chaos is None:
            directory.stop_chaos()
        else:
            directory.start_chaos(chaos)
    chaos = directory.chaos
    if chaos is None:
        return JSONResponse({"chaos": None, "seed": None})
    return JSONResponse({"chaos": chaos.describe(), "seed": chaos.seed})


async def _reset(request: Request) -> Response:
    _directory(request).reset()
    return Response(status_code=204)


def _invalid(message: str) -> Response:
    return JSONResponse({"detail": message}, status_code=422)
