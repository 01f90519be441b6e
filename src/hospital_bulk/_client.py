"""The directory client protocol and its httpx implementation."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from ._models import Hospital, HospitalRecord


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

    async def activate_batch(self, batch_id: UUID) -> int:
        """Activate every hospital of ``batch_id``; returns how many were activated."""
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
