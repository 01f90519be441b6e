"""The checks the upstream makes before its handlers touch anything, and the
answers by which the fake directory refuses a call.

- :class:`Answer`, :class:`NotSent` and :class:`Lost`: how the core stops a call,
  whether a check here, a missing hospital or an injected fault stopped it;
- :class:`Window` (one fixed rate-limit window, as the upstream keeps it) and
  :class:`SlidingWindow` (a sliding log, for testing pacing against any phase), and
  :func:`throttled`, the 429 worded as slowapi words it;
- :func:`parse_batch_id`, :func:`parse_hospital_id` and :func:`hospital_fields`:
  path parameters and bodies validated, and refused with the 422 bodies FastAPI
  and pydantic send.

Kept apart from :mod:`._core` so that the core reads as what each operation does to
the stored hospitals, while the wording that must match the upstream's frameworks
to the letter sits here, in one place.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any, Literal, get_args
from uuid import UUID

import attrs

from hospital_bulk._models import UPSTREAM_LIMITS, RateLimit


class Answer(Exception):  # noqa: N818 - a signal inside the fake, not an error users see
    """An error answer: the HTTP face sends it, the client face raises from it."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class NotSent(Exception):  # noqa: N818 - a signal inside the fake
    """The connection was refused: nothing reached the directory."""


class Lost(Exception):  # noqa: N818 - a signal inside the fake
    """The call ran, then the connection broke before its answer."""


@attrs.define
class Window:
    """A fixed window that opens at the first request after the last one closed."""

    limit: RateLimit
    opened: float = -math.inf
    used: int = 0

    def admit(self, now: float) -> bool:
        if now >= self.opened + self.limit.window:
            self.opened, self.used = now, 0
        self.used += 1
        return self.used <= self.limit.count


@attrs.define
class SlidingWindow:
    """A sliding log: a request is admitted while fewer than ``count`` were admitted in
    the ``window`` seconds before it (``limits``' moving window). Refused requests do
    not count. The upstream's limiter is a fixed window; this one is stricter at every
    moment, so pacing that never draws a 429 from it never draws one from any phase of
    a fixed window either."""

    limit: RateLimit
    admitted: collections.deque[float] = attrs.field(factory=collections.deque)

    def admit(self, now: float) -> bool:
        admitted = self.admitted
        while admitted and admitted[0] <= now - self.limit.window:
            admitted.popleft()
        if len(admitted) >= self.limit.count:
            return False
        admitted.append(now)
        return True


#: How the fake's rate limiter counts: ``fixed`` as the upstream does, ``sliding``
#: for tests that pacing survives any limiter.
LimitMode = Literal["fixed", "sliding"]
LIMIT_MODES: tuple[LimitMode, ...] = get_args(LimitMode)


def rate_window(limit: RateLimit, mode: LimitMode) -> Window | SlidingWindow:
    """A new, empty window of ``mode``."""
    return SlidingWindow(limit) if mode == "sliding" else Window(limit)


def throttled(operation: str, limit: RateLimit | None) -> Answer:
    """The 429 the upstream sends when ``operation`` exceeds ``limit``."""
    # Without a configured limit, an injected 429 words the upstream's own.
    defaults = {"create": UPSTREAM_LIMITS.create, "ping": UPSTREAM_LIMITS.ping}
    limit = limit or defaults.get(operation, UPSTREAM_LIMITS.other)
    return Answer(429, {"error": f"Rate limit exceeded: {_describe(limit)}"})


def _describe(limit: RateLimit) -> str:
    """A limit as slowapi words it: "30 per 1 minute"."""
    if limit.window % 60 == 0:
        return f"{limit.count} per {limit.window / 60:g} minute"
    return f"{limit.count} per {limit.window:g} second"


UNPARSABLE = object()  # stands for an HTTP body that is not JSON

_NOT_UUID, _NOT_STRING = "Input should be a valid UUID", "Input should be a valid string"


def parse_batch_id(raw: str) -> UUID:
    """The ``batch_id`` path parameter, or the 422 FastAPI answers for it."""
    batch_id = _uuid(raw)
    if batch_id is None:
        raise _invalid("uuid_parsing", ["path", "batch_id"], _NOT_UUID, raw)
    return batch_id


def parse_hospital_id(raw: str) -> int:
    """The ``hospital_id`` path parameter, or the 422 FastAPI answers for it."""
    if re.fullmatch(r"\s*[+-]?\d+\s*", raw) is None:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        raise _invalid("int_parsing", ["path", "hospital_id"], msg, raw)
    return int(raw)


def hospital_fields(body: object, *, with_batch: bool) -> tuple[str, str, str | None, UUID | None]:
    """Validate a create (or update) body as the upstream's pydantic model does."""
    if body is UNPARSABLE:
        raise _invalid("json_invalid", ["body"], "JSON decode error")
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise _invalid("model_attributes_type", ["body"], msg, body)
    errors = []
    for key in ("name", "address"):
        value = body.get(key)
        if key not in body:
            errors.append(_error("missing", ["body", key], "Field required"))
        elif not isinstance(value, str):
            errors.append(_error("string_type", ["body", key], _NOT_STRING, value))
        elif not value.strip():
            msg = f"Value error, {key} must not be blank"
            errors.append(_error("value_error", ["body", key], msg, value))
    phone = body.get("phone")
    if phone is not None and not isinstance(phone, str):
        errors.append(_error("string_type", ["body", "phone"], _NOT_STRING, phone))
    raw_batch_id = body.get("creation_batch_id") if with_batch else None
    batch_id = None if raw_batch_id is None else _uuid(raw_batch_id)
    if raw_batch_id is not None and batch_id is None:
        loc = ["body", "creation_batch_id"]
        errors.append(_error("uuid_parsing", loc, _NOT_UUID, raw_batch_id))
    if errors:
        raise Answer(422, {"detail": errors})
    return body["name"], body["address"], phone, batch_id


def _error(kind: str, loc: list[str], msg: str, value: object = None) -> dict[str, Any]:
    """One pydantic error as FastAPI reports it in a 422."""
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def _invalid(kind: str, loc: list[str], msg: str, value: object = None) -> Answer:
    return Answer(422, {"detail": [_error(kind, loc, msg, value)]})


def _uuid(raw: object) -> UUID | None:
    try:
        return UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
