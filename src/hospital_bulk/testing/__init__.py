"""Fakes and contract suites for testing code that talks to a Hospital Directory.

:class:`FakeDirectory` is an in-memory directory with the upstream's semantics and
faults on cue (its module says more).

The contract suites, ``hospital_bulk.testing.store_contract`` and
``hospital_bulk.testing.directory_contract``, need pytest: import them by name
(``docs/testing.md``). This package does not import them, so the library never
needs pytest.
"""

from __future__ import annotations

from ._chaos import CHAOS_OPERATIONS, Chaos
from ._core import DirectoryStats
from ._fake import FakeDirectory
from ._faults import OPERATIONS, Fault, Operation
from ._rules import LIMIT_MODES, LimitMode

__all__ = [
    "CHAOS_OPERATIONS",
    "LIMIT_MODES",
    "OPERATIONS",
    "Chaos",
    "DirectoryStats",
    "FakeDirectory",
    "Fault",
    "LimitMode",
    "Operation",
]
