"""Owner ids: who runs a job, in the store's eyes.

An owner id is ``host:pid:random``: host and pid let a process on the same host
see at once that a crashed owner is gone, without waiting for its lease to expire.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """Whether ``owner`` names a process on this host that no longer exists."""
    if owner is None:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
