"""Reading and validating hospital CSV files, in one streaming pass.

:func:`validate_csv` checks a file, :func:`read_csv` also keeps its valid rows, and
:class:`CsvReader` yields them one by one; :class:`CsvOptions` sets the limits.
:func:`encoding_name` and :func:`delimiter_char` spell (or refuse, with a
:class:`ValueError`) an ``encoding`` and a ``delimiter`` as ``CsvOptions`` keeps them,
for adapters checking what they were given before reading a byte.
The rules users see are in ``docs/csv.md``; how the pass is built is told in
``_reader``. Inside this package ``import csv`` is still the standard library's:
imports are absolute.
"""

from __future__ import annotations

from ._reader import CsvOptions, CsvReader, CsvRow, read_csv, validate_csv
from ._text import Source, delimiter_char, encoding_name

__all__ = [
    "CsvOptions",
    "CsvReader",
    "CsvRow",
    "Source",
    "delimiter_char",
    "encoding_name",
    "read_csv",
    "validate_csv",
]
