"""What the fake directory can suffer: its operations and the faults it injects."""

from __future__ import annotations

import enum
from typing import Literal, get_args

Operation = Literal[
    "create",
    "list",
    "activate",
    "delete_batch",
    "delete_hospital",
    "ping",
    # Reached only over HTTP: GET /hospitals/, GET and PUT /hospitals/{id}.
    "list_all",
    "get_hospital",
    "update_hospital",
]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)


class Fault(enum.Enum):
    """A failure :meth:`FakeDirectory.inject` makes calls suffer."""

    #: 400 with a reason, nothing stored: ``RejectedError``.
    REJECT = "reject"
    #: 429 without Retry-After, nothing stored: ``ThrottledError``.
    THROTTLE = "throttle"
    #: Connection refused, nothing stored: ``NotSentError`` (``httpx.ConnectError``).
    NOT_SENT = "not_sent"
    #: 500 before anything is stored: ``MaybeLandedError``.
    FAIL_BEFORE_STORING = "fail_before_storing"
    #: The call takes effect, then its answer is lost: ``MaybeLandedError``
    #: (``httpx.RemoteProtocolError`` over HTTP).
    FAIL_AFTER_STORING = "fail_after_storing"
    #: The call takes effect, then its answer is replaced by a 500: ``MaybeLandedError``.
    ERROR_AFTER_STORING = "error_after_storing"
    #: The call is held ``seconds`` (the rule's) before it takes effect and answers:
    #: held past the client's timeout, the create lands after its caller gave up.
    HOLD = "hold"
