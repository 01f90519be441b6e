"""Finding rows that name the same hospital, in a few bytes per row.

A row's key is the hash of its normalised name and address. Keys go into an
``array`` of 64-bit integers (row ``n`` at index ``n - 1``), and a table of 32-bit
row numbers, indexed by the low bits of the key, remembers the first row whose key
fell into each slot. A row that finds its slot taken compares its key with that
row's: equal means a duplicate of it; different means the slot belongs to another
key, and a small dict (key -> first row) settles it. The reader inlines the common
case, a free slot, and calls :meth:`DuplicateFinder.taken` otherwise.

The table is anonymous memory that the system hands out page by page as slots are
written, so a small file costs a few pages; 4 Mi slots (16 MiB) serve a million
rows at a quarter full, and the table grows fourfold beyond that.

Two rows with the same 64-bit key are reported as duplicates without comparing the
text: for a million rows the chance of a false report is about 3 in 100 million.
"""

from __future__ import annotations

import mmap
from array import array

# hash() never returns -1, so it marks rows that have no key (invalid rows).
NO_KEY = -1
_SLOTS = 1 << 22
_FILL = 4


def duplicate_key(name: str, address: str) -> int:
    """The key of a trimmed name and address: case and runs of whitespace do not count.

    For values without runs of whitespace this is ``hash(f"{name}\\x00{address}".casefold())``,
    which the reader's fast path computes directly. (Valid values hold no NUL, so the
    two parts cannot run into each other.)
    """
    return hash(f"{' '.join(name.split())}\x00{' '.join(address.split())}".casefold())


class DuplicateFinder:
    """Every data row appends its key to :attr:`keys`; valid rows also claim a slot."""

    def __init__(self, keep: int) -> None:
        self.keys = array("q")
        self.found: list[tuple[int, int, int]] = []  # (row, line, earlier row), the first `keep`
        self.count = 0
        self._keep = keep
        self._others: dict[int, int] = {}
        self._memory = mmap.mmap(-1, 4 * _SLOTS)
        self.firsts = memoryview(self._memory).cast("i")
        self.mask = _SLOTS - 1

    @property
    def rows_before_growing(self) -> int:
        return len(self.firsts) // _FILL

    def add(self, key: int, row: int, line: int) -> None:
        """Take in valid row ``row`` (its key already appended); the reader inlines this."""
        slot = key & self.mask
        if first := self.firsts[slot]:
            self.taken(key, row, line, first)
        else:
            self.firsts[slot] = row

    def taken(self, key: int, row: int, line: int, first: int) -> None:
        """``row``'s slot was first taken by row ``first``."""
        if self.keys[first - 1] == key:
            earlier = first
        elif (earlier := self._others.setdefault(key, row)) == row:
            return
        self.count += 1
        if len(self.found) < self._keep:
            self.found.append((row, line, earlier))

    def grow(self) -> None:
        """Four times the slots, filled again from every key so far."""
        slots = 4 * len(self.firsts)
        self.close()
        self._memory = mmap.mmap(-1, 4 * slots)
        self.firsts = firsts = memoryview(self._memory).cast("i")
        self.mask = mask = len(firsts) - 1
        self._others = others = dict[int, int]()
        for row, key in enumerate(self.keys, 1):
            if key != NO_KEY:
                slot = key & mask
                if not (first := firsts[slot]):
                    firsts[slot] = row
                elif self.keys[first - 1] != key:
                    others.setdefault(key, row)

    def close(self) -> None:
        self.firsts.release()
        self._memory.close()
