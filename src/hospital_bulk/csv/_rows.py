"""The full check of one data row: what decides whether a row is valid.

The reader first tries a cheaper test (in ``_reader``) that only accepts rows this
check accepts too, with the same values; every other row is decided here.
"""

from __future__ import annotations

import re
import unicodedata

from hospital_bulk._models import Finding, FindingCode, Severity

from ._header import Layout
from ._text import MAX_LINE_CHARS, OVERLONG_LINE

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PHONE = re.compile(r"(?:[0-9+\-(). x]|ext)*", re.IGNORECASE)
_DIGIT = re.compile(r"[0-9]")
VALUE_LIMIT = 100

Cells = tuple[str, str, str | None]


def shorten(value: str) -> str:
    """``value`` cut to :data:`VALUE_LIMIT` characters for a finding."""
    return value if len(value) <= VALUE_LIMIT else value[: VALUE_LIMIT - 1] + "…"


def phone_problem(phone: str) -> str | None:
    """Why ``phone`` (trimmed, not empty) is not a phone number, or ``None``."""
    end = _PHONE.match(phone)
    stop = end.end() if end else 0
    if stop < len(phone):
        return f"it contains {phone[stop]!r} at position {stop + 1}"
    digits = len(_DIGIT.findall(phone))
    if digits < 3:
        return f"it has {digits} digit{'' if digits == 1 else 's'}, at least 3 are needed"
    return None


class FindingLog:
    """Keeps the first ``keep`` errors and the first ``keep`` warnings; counts them all."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        self.error_count = 0
        self.warning_count = 0

    def add(self, finding: Finding) -> None:
        if finding.severity is Severity.ERROR:
            self.error_count += 1
            if len(self.errors) < self.keep:
                self.errors.append(finding)
        else:
            self.warning_count += 1
            if len(self.warnings) < self.keep:
                self.warnings.append(finding)


def _describe(char: str) -> str:
    if char in "\r\n":
        return "a line break (quoted values must stay on one line)"
    if char == "\t":
        return "a tab (U+0009)"
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"


def check_row(
    fields: list[str],
    layout: Layout,
    *,
    row: int,
    line: int,
    max_length: int,
    delimiter: str,
    log: FindingLog,
) -> Cells | None:
    """The trimmed name, address and phone of a valid row; ``None`` once findings are logged."""

    def error(code: FindingCode, message: str, column: str | None, value: str | None) -> None:
        log.add(Finding(code, message, row=row, line=line, column=column, value=value))

    errors_before = log.error_count
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    joined = "".join(fields)
    if OVERLONG_LINE in joined:
        message = f"a line of this row is longer than {MAX_LINE_CHARS:,} characters; it was skipped"
        error(FindingCode.FIELD_TOO_LONG, message, None, None)
        return None
    if "\x00" in joined:
        message = "the row contains a NUL byte: this is not a text CSV file (UTF-16 without BOM?)"
        error(FindingCode.MALFORMED_CSV, message, None, shorten(delimiter.join(fields)))
        return None
    count = len(fields)
    if layout.header is None:
        phone_at = 2 if count == 3 else None
        expected = "without a header a row is name, address and optionally phone"
        too_few, too_many = count < 2, count > 3
    else:
        phone_at = layout.phone
        expected = f"the header has {layout.width} columns ({', '.join(layout.header)})"
        too_few, too_many = count < layout.width, count > layout.width
    if too_few or too_many:
        value = shorten(delimiter.join(fields))
        if too_many:
            hint = f"put values that contain {shown} in double quotes"
            code = FindingCode.TOO_MANY_COLUMNS
        else:
            hint = f"separate the values with {shown} and leave unknown ones empty"
            code = FindingCode.TOO_FEW_COLUMNS
        has = f"{count} cell{'' if count == 1 else 's'}"
        error(code, f"the row has {has} but {expected}; {hint}", None, value)
        return None
    cells: list[str] = []
    for column, index in (("name", layout.name), ("address", layout.address), ("phone", phone_at)):
        raw = fields[index] if index is not None else ""
        value = raw.strip()
        if control := CONTROL.search(raw):
            where = control.start() + 1
            message = f"{column} contains {_describe(control.group())} at position {where}"
            error(FindingCode.CONTROL_CHARACTER, message + "; remove it", column, shorten(raw))
        elif not value and column != "phone":
            message = f"{column} is empty; every row needs a {column}"
            error(FindingCode.MISSING_VALUE, message, column, shorten(raw))
        elif len(value) > max_length:
            message = f"{column} is {len(value):,} characters long; the limit is {max_length:,}"
            error(FindingCode.FIELD_TOO_LONG, message, column, shorten(value))
        elif column == "phone" and value and (problem := phone_problem(value)):
            message = (
                f"phone {shorten(value)!r} is not a phone number: {problem}; use digits, spaces"
                " and + - ( ) ., with 'x' or 'ext' before an extension (+1 (555) 010-2000 ext 12)"
            )
            error(FindingCode.INVALID_PHONE, message, column, shorten(value))
        cells.append(value)
    if log.error_count != errors_before:
        return None
    name, address, phone = cells
    return name, address, phone or None
