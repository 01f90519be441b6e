"""The directory client protocol and its httpx implementation."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from types import TracebackType
from typing import Any, Literal, Protocol, Self, overload
from uuid import UUID

import attrs
import cattrs
import httpx

from ._convert import structure
from ._models import Hospital, HospitalRecord
from .exceptions import (
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
    UnreadableAnswerError,
)

DEFAULT_BASE_URL = "https://hospital-directory.onrender.com"


class DirectoryClient(Protocol):
    """What the engine needs from a Hospital Directory.

    Every method raises a :class:`~hospital_bulk.exceptions.DirectoryError`
    subclass on failure, classified by whether the call may have taken effect.
    """

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        """Create one (inactive) hospital in ``batch_id``."""
        ...

    async def list_batch(self, batch_id: UUID) -> list[Hospital]:
        """Every hospital of ``batch_id``; an empty or unknown batch is ``[]``."""
        ...

    async def activate_batch(self, batch_id: UUID) -> int | None:
        """Activate every hospital of ``batch_id``; returns how many were activated, or
        ``None`` when the directory did not say (its 2xx says: all of them)."""
        ...

    async def delete_batch(self, batch_id: UUID) -> int:
        """Delete every hospital of ``batch_id``; a missing batch is ``0``."""
        ...

    async def delete_hospital(self, hospital_id: int) -> bool:
        """Delete one hospital; ``False`` when it did not exist."""
        ...

    async def ping(self) -> None:
        """Raise unless the directory answers."""
        ...

    async def aclose(self) -> None:
        """Release what the client holds (connections). Whoever made it closes it."""
        ...


@attrs.frozen
class DirectoryTimeouts:
    """Seconds allowed for each phase of one request to the directory.

    ``read`` covers the upstream's 5-second creates on top of its 20-30 second cold
    start. ``pool`` is generous because waiting for a free connection is normal
    under load, and giving up early only turns into a retry.
    """

    connect: float = 10.0
    read: float = 60.0
    write: float = 10.0
    pool: float = 30.0


class HttpDirectoryClient:
    """A :class:`DirectoryClient` talking to the Hospital Directory API over HTTP.

    Pass ``http`` to share an ``httpx.AsyncClient`` (or to test with a mock
    transport): it is used as is and never closed here, and its own ``base_url`` is
    ignored. Otherwise the client creates, and :meth:`aclose` closes, its own with
    ``timeouts`` and at most ``max_connections`` connections.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http: httpx.AsyncClient | None = None,
        timeouts: DirectoryTimeouts = DirectoryTimeouts(),  # frozen, so one shared default is safe
        max_connections: int = 50,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid base_url {base_url!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=timeouts.connect,
                    read=timeouts.read,
                    write=timeouts.write,
                    pool=timeouts.pool,
                ),
                # Idle connections are dropped after 2 s, well before servers commonly
                # close them (uvicorn: 5 s): a create sent on a connection the server is
                # closing fails with no answer, and must then be reconciled.
                limits=httpx.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=2.0,
                ),
            )
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        """Create one inactive hospital in ``batch_id``.

        Only ``id`` is required in the answer; fields it lacks are taken from the
        request. An answer without an integer ``id`` raises
        :class:`~hospital_bulk.exceptions.MaybeLandedError`: the hospital may exist.
        """
        sent = {
            "name": record.name,
            "address": record.address,
            "phone": record.phone,
            "creation_batch_id": str(batch_id),
        }
        response = await self._send("POST", "/hospitals/", json=sent)
        body = _json(response)
        # bool is an int subclass, and cattrs would turn "7" into 7: demand a real int.
        if not isinstance(body, dict) or type(body.get("id")) is not int:
            raise _invalid(response, "a create answer without an integer id")
        return _hospital({**sent, "active": False, **body}, response)

    async def list_batch(self, batch_id: UUID) -> list[Hospital]:
        """Every hospital of ``batch_id``; the upstream's 404 for an empty batch is ``[]``."""
        response = await self._send("GET", f"/hospitals/batch/{batch_id}", absent_ok=True)
        if response is None:
            return []
        body = _json(response)
        if not isinstance(body, list):
            raise _invalid(response, "a batch listing that is not a list")
        return [_hospital(item, response) for item in body]

    async def activate_batch(self, batch_id: UUID) -> int | None:
        """Activate every hospital of ``batch_id`` and return ``activated_count``.

        A success whose body has no count (empty, ``{}``, ``{"activated": true}``)
        returns ``None``: the 2xx itself says the batch was activated, all of it.
        An empty batch is :class:`~hospital_bulk.exceptions.RejectedError` (404), a
        batch already activated is ``RejectedError`` (400).
        """
        response = await self._send("PATCH", f"/hospitals/batch/{batch_id}/activate")
        return _count(response, "activated_count")

    async def delete_batch(self, batch_id: UUID) -> int:
        """Delete every hospital of ``batch_id``; returns ``deleted_count``.

        A missing batch (404) is ``0``, and so is a success whose body has no count.
        """
        response = await self._send("DELETE", f"/hospitals/batch/{batch_id}", absent_ok=True)
        return 0 if response is None else _count(response, "deleted_count") or 0

    async def delete_hospital(self, hospital_id: int) -> bool:
        """Delete one hospital: ``True`` once deleted, ``False`` when it did not exist."""
        response = await self._send("DELETE", f"/hospitals/{hospital_id}", absent_ok=True)
        return response is not None

    async def ping(self) -> None:
        """Return once the directory answers ``GET /`` with a 2xx."""
        await self._send("GET", "/")

    @overload
    async def _send(
        self, method: str, path: str, *, json: object = None, absent_ok: Literal[False] = False
    ) -> httpx.Response: ...

    @overload
    async def _send(
        self, method: str, path: str, *, json: object = None, absent_ok: bool
    ) -> httpx.Response | None: ...

    async def _send(
        self, method: str, path: str, *, json: object = None, absent_ok: bool = False
    ) -> httpx.Response | None:
        """Send one request; return its 2xx response, or ``None`` for a 404 if ``absent_ok``.

        Everything else becomes the DirectoryError whose class says whether the
        request may have taken effect: the engine's retry safety rests on this.
        """
        try:
            response = await self._http.request(method, self.base_url + path, json=json)
        # Nothing left this process (UnsupportedProtocol included): safe to send again.
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.UnsupportedProtocol,
        ) as exc:
            raise NotSentError(f"{method} {path} was not sent: {_describe(exc)}") from exc
        # The request may have been read and applied before the exchange broke.
        except httpx.HTTPError as exc:
            raise MaybeLandedError(f"{method} {path} got no answer: {_describe(exc)}") from exc
        status = response.status_code
        if response.is_success:
            return response
        if status == 404 and absent_ok:
            return None
        reason = _reason(response)
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise ThrottledError(reason, retry_after=retry_after)
        if 400 <= status < 500 and status != 408:
            raise RejectedError(reason, status=status)
        # 5xx, 408 and any unexpected status (a redirect, say): the upstream may have acted.
        raise MaybeLandedError(reason, status=status)


def reason_from_json(data: object) -> str | None:
    """The upstream's reason in an error body: FastAPI's ``detail`` or slowapi's ``error``.

    A 422 ``detail`` is a list of pydantic errors; each becomes ``loc: msg``.
    """
    if not isinstance(data, dict):
        return None
    detail = data.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_pydantic_error(item) for item in detail)
    error = data.get("error")
    if isinstance(error, str) and error:
        return error
    return None


def _pydantic_error(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    message = str(item.get("msg", "invalid"))
    loc = item.get("loc")
    if isinstance(loc, list) and loc:
        return ".".join(str(part) for part in loc) + ": " + message
    return message


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:  # not JSON (or not text): the raw body is the best reason left
        data = None
    return (
        reason_from_json(data)
        or response.text.strip()
        or f"{response.status_code} {response.reason_phrase}"
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); ``None`` if absent."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _invalid(response: httpx.Response, what: str) -> UnreadableAnswerError:
    # A 2xx we cannot read still says the upstream acted: it may have landed.
    return UnreadableAnswerError(
        f"{what} ({response.status_code}): {response.text[:200]!r}",
        status=response.status_code,
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise _invalid(response, "an answer that is not JSON") from exc


def _hospital(data: object, response: httpx.Response) -> Hospital:
    try:
        return structure(data, Hospital)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise _invalid(response, "an invalid hospital") from exc


def _count(response: httpx.Response, key: str) -> int | None:
    """The count the answer gives; ``None`` when it gives none (the 2xx alone tells)."""
    if not response.content.strip():
        return None
    body = _json(response)
    if not isinstance(body, dict):
        raise _invalid(response, f"an answer without {key}")
    count = body.get(key)
    if count is not None and type(count) is not int:
        raise _invalid(response, f"an invalid {key}")
    return count
