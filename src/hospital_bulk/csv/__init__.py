"""Reading and validating hospital CSV files, in one streaming pass.

:func:`validate_csv` checks a file, :func:`read_csv` also keeps its valid rows, and
:class:`CsvReader` yields them one by one; :class:`CsvOptions` sets the limits.
The rules users see are in ``docs/csv.md``; how the pass is built is told in
``_reader``. Inside this package ``import csv`` is still the standard library's:
imports are absolute.
"""

from __future__ import annotations

from ._reader import CsvOptions, CsvReader, CsvRow, read_csv, validate_csv
from ._text import Source

__all__ = ["CsvOptions", "CsvReader", "CsvRow", "Source", "read_csv", "validate_csv"]
