"""CsvOptions: how to read one file, and its limits."""

from __future__ import annotations

import attrs
from attrs.validators import ge, instance_of, optional

from ._text import DEFAULT_ENCODING, delimiter_char, encoding_name


def _delimiter(value: str | None) -> str | None:
    return None if value is None else delimiter_char(value)


@attrs.frozen
class CsvOptions:
    """How to read one file, and its limits.

    ``encoding`` is ``utf-8`` by default, which also reads a file whose byte order mark
    says UTF-8 or UTF-16; any other name Python knows (``cp1252``, ``latin-1``) reads the
    file in that encoding. It is kept as Python names it (``latin-1`` becomes
    ``iso8859-1``); an unknown name is a :class:`ValueError`. ``delimiter`` is one
    character (``tab`` names a tab); ``None`` picks ``,``, ``;`` or tab from the first
    line.

    ``max_rows`` data rows are allowed (``None``: any number); the first row over it is
    a ``too_many_rows`` error and ends the read. At most ``max_findings`` errors and as
    many warnings are kept in full; the counts cover all. ``chunk_size`` valid rows go
    into each list a :class:`CsvReader` yields.
    """

    max_rows: int | None = attrs.field(default=None, validator=optional([instance_of(int), ge(1)]))
    max_field_length: int = attrs.field(default=500, validator=[instance_of(int), ge(1)])
    max_findings: int = attrs.field(default=1000, validator=[instance_of(int), ge(0)])
    chunk_size: int = attrs.field(default=1000, validator=[instance_of(int), ge(1)])
    encoding: str = attrs.field(default=DEFAULT_ENCODING, converter=encoding_name)
    delimiter: str | None = attrs.field(default=None, converter=_delimiter)
