"""Finding rows that name the same hospital, in about 9 bytes per row.

Every data row's key (the hash of its normalised name and address) is kept in an
``array`` of 64-bit integers. A table of one byte per slot, indexed by the low bits
of the key, says which slots a key has already reached; only rows whose slot was
taken are candidates, and only candidates are compared with all earlier keys, once,
after the last row. The table is 16 MiB of anonymous memory, which the system hands
out page by page as slots are first written, so a small file costs a few pages; for
a million rows about 3% of rows are candidates. Past two million rows it grows.

Two rows with the same 64-bit key are reported as duplicates without comparing the
text: for a million rows the chance of a false report is about 3 in 100 million.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Iterator

# hash() never returns -1, so it marks rows that have no key (invalid rows).
NO_KEY = -1
BATCH = 1 << 14
_TABLE_SIZE = 1 << 24
_TABLE_FILL = 8


def duplicate_key(name: str, address: str) -> int:
    """The key of a trimmed name and address: case and runs of spaces do not count.

    The reader's fast path computes the same value as
    ``hash((name.casefold(), address.casefold()))`` for values without runs of spaces.
    """
    return hash((" ".join(name.split()).casefold(), " ".join(address.split()).casefold()))


class DuplicateFinder:
    """The reader appends to :attr:`keys` and :attr:`lines` and calls :meth:`flush` often."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.lines: list[int] = []
        self._all = array("q")
        self._table = mmap.mmap(-1, _TABLE_SIZE)
        self._candidates: list[tuple[int, int, int]] = []

    def flush(self) -> None:
        """Take in the rows appended since the last flush."""
        keys, lines, table = self.keys, self.lines, self._table
        first_row, mask, candidate = len(self._all) + 1, len(table) - 1, self._candidates.append
        # One tight loop per batch: the table is touched at random, better not between rows.
        for index, key in enumerate(keys):
            slot = key & mask
            if not table[slot]:
                table[slot] = 1
            elif key != NO_KEY:
                candidate((key, first_row + index, lines[index]))
        self._all.extend(keys)
        keys.clear()
        lines.clear()
        if len(self._all) * _TABLE_FILL > len(table):
            self._grow()

    def _grow(self) -> None:
        old, self._table = self._table, mmap.mmap(-1, len(self._table) * 4)
        old.close()
        table, mask = self._table, len(self._table) - 1
        for key in self._all:
            table[key & mask] = 1

    def duplicates(self) -> Iterator[tuple[int, int, int]]:
        """``(row, line, earlier row)`` for each row repeating an earlier one, in row order."""
        self.flush()
        self._table.close()
        wanted = {key for key, _, _ in self._candidates}
        first: dict[int, int] = {}
        if wanted:
            for index, key in enumerate(self._all):
                if key in wanted and key not in first:
                    first[key] = index + 1
        for key, row, line in self._candidates:
            if first[key] != row:
                yield row, line, first[key]
