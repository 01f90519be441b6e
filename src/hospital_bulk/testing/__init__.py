"""Fakes and contract suites for testing code that talks to a Hospital Directory.

:class:`FakeDirectory` is an in-memory directory with the upstream's semantics
(``UPSTREAM.md``): the batch cap checked before the slow part of a create, one
all-or-nothing activation per batch, 404 for empty batches, fixed-window rate
limits, ids counted from 1, the oldest hospitals dropped past capacity. It fails
on cue with :meth:`FakeDirectory.inject`. One core serves two faces:

- the :class:`~hospital_bulk.DirectoryClient` methods, to hand it to the engine;
- :meth:`FakeDirectory.http_handler`, the same directory answering over HTTP with
  the real paths, statuses and bodies, for ``httpx.MockTransport``.

The contract suites, ``hospital_bulk.testing.store_contract`` and
``hospital_bulk.testing.directory_contract``, need pytest: import them by name
(``docs/testing.md``). This package does not import them, so the library never
needs pytest.
"""

from __future__ import annotations

from ._core import OPERATIONS, DirectoryStats, Fault, Operation
from ._fake import FakeDirectory

__all__ = ["OPERATIONS", "DirectoryStats", "FakeDirectory", "Fault", "Operation"]
