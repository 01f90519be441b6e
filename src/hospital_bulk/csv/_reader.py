"""Reading and validating hospital CSV files, in one streaming pass.

The rules users see are in ``docs/csv.md``. How the pass is built:

- ``_text`` turns bytes into physical lines, so ``csv.reader.line_num`` gives
  the line where each row ends; the line where a row starts follows from it.
- ``_header`` recognises the header and says where each column is.
- ``_rows.check_row`` decides whether a row is valid and says why not. Before it,
  a cheap test on the whole row accepts the common clean row (trimmed, printable,
  short, a plain phone) without a call per cell; anything else goes to ``check_row``.
  Both give the same verdict and the same values for the rows the cheap test accepts.
- ``_duplicates`` finds repeated hospitals from a 64-bit hash per row, without
  keeping the rows' text.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from itertools import chain

import attrs

from hospital_bulk._models import Finding, FindingCode, HospitalRecord, Severity, ValidationReport

from ._duplicates import NO_KEY, DuplicateFinder, duplicate_key
from ._header import Layout, header_layout, headerless_layout, is_header
from ._options import CsvOptions
from ._rows import FindingLog, check_row
from ._text import Source, TextLines, decode_failure_message, sniff_delimiter

__all__ = ["CsvOptions", "CsvReader", "CsvRow", "read_csv", "validate_csv"]

# A phone's UTF-8 bytes with its digits turned into "1" and the other characters a
# phone may hold on the cheap test into "0" ("x"/"ext" extensions take the full
# check): all digits exactly when nothing else was there. A table lookup per byte,
# where str.strip(chars) would search the set of characters for each one.
_PHONE_SHAPE = bytes.maketrans(b"0123456789+-(). ", b"1111111111000000")

_Row = tuple[int, int, str, str, str | None]


@attrs.frozen
class CsvRow:
    """A valid data row: ``row`` counts data rows from 1, ``line`` is where it starts."""

    row: int
    line: int
    record: HospitalRecord


class CsvReader:
    """Reads a file incrementally.

    Iterating yields lists of up to ``options.chunk_size`` valid rows, in file order;
    once the iteration is exhausted, :attr:`report` holds the
    :class:`~hospital_bulk.ValidationReport` and :attr:`sha256` the digest of the
    file's bytes. A reader is iterated once.
    """

    def __init__(self, source: Source, options: CsvOptions = CsvOptions()) -> None:
        self._scan = _Scan(source, options)
        self._started = False
        self._report: ValidationReport | None = None

    def __iter__(self) -> Iterator[list[CsvRow]]:
        if self._started:
            raise RuntimeError("a CsvReader can be iterated only once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[list[CsvRow]]:
        for chunk in self._scan.rows(collect=True):
            yield [
                CsvRow(row, line, HospitalRecord(name, address, phone))
                for row, line, name, address, phone in chunk
            ]
        self._report = self._scan.report()

    @property
    def report(self) -> ValidationReport:
        if self._report is None:
            raise RuntimeError("the report is ready once the reader has been iterated to the end")
        return self._report

    @property
    def sha256(self) -> str:
        """The SHA-256 of the file's bytes, in hex, computed as they were read.

        It covers every byte once the report is ready and the file valid; reading stops
        early only at a finding that makes the file invalid (an encoding error, too
        many rows).
        """
        if self._report is None:
            raise RuntimeError("the digest is ready once the reader has been iterated to the end")
        return self._scan.sha256


def validate_csv(source: Source, options: CsvOptions = CsvOptions()) -> ValidationReport:
    """Check a whole file without building records."""
    scan = _Scan(source, options)
    for _ in scan.rows(collect=False):
        pass
    return scan.report()


def read_csv(
    source: Source, options: CsvOptions = CsvOptions()
) -> tuple[ValidationReport, list[CsvRow]]:
    """The report and every valid row, all in memory: :class:`CsvReader` streams instead."""
    reader = CsvReader(source, options)
    rows = [row for chunk in reader for row in chunk]
    return reader.report, rows


class _Scan:
    def __init__(self, source: Source, options: CsvOptions) -> None:
        self._options = options
        self._text = TextLines(source, options.encoding)
        self._log = FindingLog(options.max_findings)
        self._duplicates = DuplicateFinder(options.max_findings)
        self._rows_read = 0
        self._invalid = 0
        self._has_header = False
        self._delimiter = options.delimiter or ","
        self._seen_row = False

    @property
    def sha256(self) -> str:
        return self._text.sha256

    def rows(self, collect: bool) -> Iterator[list[_Row]]:
        try:
            yield from self._rows(collect)
        finally:
            self._text.close()
            self._duplicates.close()

    def _rows(self, collect: bool) -> Iterator[list[_Row]]:
        # One long function on purpose: the per-row path must not pay for calls.
        lists = iter(self._text)
        head: list[list[str]] = []
        for lines in lists:
            head.append(lines)
            if sample := next((line for line in lines if not line.isspace()), None):
                if self._options.delimiter is None:
                    self._delimiter = sniff_delimiter(sample)
                break
        delimiter = self._delimiter
        reader = csv.reader(
            chain.from_iterable(_drain(head, lists)),
            delimiter=delimiter,
            strict=True,
            skipinitialspace=True,
        )
        options, log, duplicates = self._options, self._log, self._duplicates
        max_length, chunk_size = options.max_field_length, options.chunk_size
        limit = sys.maxsize if options.max_rows is None else options.max_rows
        # Reaching stop_at sends a row down the slow path, which grows the duplicate
        # table or stops at max_rows: no per-row test for either.
        stop_at = min(limit, duplicates.rows_before_growing)
        add_key, firsts, mask = duplicates.keys.append, duplicates.firsts, duplicates.mask
        join, phone_shape = " ".join, _PHONE_SHAPE
        layout: Layout | None = None
        decided = False
        width, name_at, address_at, phone_at = -1, 0, 1, 0
        has_phone = empty_last_ok = False
        chunk: list[_Row] = []
        n = k = off = invalid = 0  # data rows, rows from csv, lines minus rows so far, invalid
        phone: str | None = ""
        while True:
            try:
                for k, fields in enumerate(reader, k + 1):  # noqa: B020
                    s = join(fields)
                    if (
                        len(fields) == width
                        and n < stop_at
                        and len(s) <= max_length
                        and s.isprintable()
                        and "  " not in s
                        and s[0] != " "
                        and (s[-1] != " " or (empty_last_ok and not fields[-1]))
                        and (
                            not (phone := fields[phone_at] if has_phone else "")
                            or (
                                (shape := phone.encode().translate(phone_shape)).isdigit()
                                and shape.count(49) > 2  # b"1": the digits
                            )
                        )
                    ):
                        # Trimmed, printable, no run of spaces, short, a plain phone: valid.
                        name, address = fields[name_at], fields[address_at]
                        key = hash(f"{name}\x00{address}".casefold())
                        add_key(key)
                        n += 1
                        # DuplicateFinder.add, inlined.
                        slot = key & mask
                        if earlier := firsts[slot]:
                            duplicates.taken(key, n, k + off, earlier)
                        else:
                            firsts[slot] = n
                    else:
                        line = k + off
                        off = reader.line_num - k
                        if not "".join(fields).strip():
                            continue
                        if not decided:
                            decided = self._seen_row = True
                            if is_header(fields):
                                self._has_header = True
                                layout, findings = header_layout(fields, line)
                                for finding in findings:
                                    log.add(finding)
                            else:
                                layout = headerless_layout(len(fields))
                            if layout is not None:
                                fast = _fast_settings(layout)
                                width, name_at, address_at, phone_at, has_phone, empty_last_ok = (
                                    fast
                                )
                            if self._has_header:
                                continue
                        if n >= stop_at:
                            if n >= limit:
                                self._too_many(n + 1, line)
                                break
                            duplicates.grow()
                            firsts, mask = duplicates.firsts, duplicates.mask
                            stop_at = min(limit, duplicates.rows_before_growing)
                        n += 1
                        cells = None
                        if layout is not None:
                            cells = check_row(
                                fields,
                                layout,
                                row=n,
                                line=line,
                                max_length=max_length,
                                delimiter=delimiter,
                                log=log,
                            )
                        if cells is None:
                            invalid += 1
                            add_key(NO_KEY)
                            continue
                        name, address, phone = cells
                        add_key(key := duplicate_key(name, address))
                        duplicates.add(key, n, line)
                    if collect:
                        chunk.append((n, k + off, name, address, phone or None))
                        if len(chunk) >= chunk_size:
                            yield chunk
                            chunk = []
            except csv.Error as exc:
                line = k + off + 1
                off = reader.line_num - k
                if self._text.failure is not None:
                    continue  # the row was cut where decoding stopped, which is reported
                if decided:
                    if n >= limit:
                        self._too_many(n + 1, line)
                        break
                    n += 1
                    invalid += 1
                    add_key(NO_KEY)
                self._seen_row = True
                log.add(_malformed(exc, row=n if decided else None, line=line))
                continue
            break
        self._rows_read, self._invalid = n, invalid
        if chunk:
            yield chunk

    def _too_many(self, row: int, line: int) -> None:
        limit = self._options.max_rows
        message = (
            f"the file has more than {limit:,} data rows, the most one file may have;"
            " split it into smaller files"
        )
        self._log.add(Finding(FindingCode.TOO_MANY_ROWS, message, row=row, line=line))

    def report(self) -> ValidationReport:
        log, text, rows = self._log, self._text, self._rows_read
        if failure := text.failure:
            # The row the bad byte is in: the rows before it were read whole. Unknown
            # while the first line (a header or a row?) is undecided.
            row = rows + 1 if self._seen_row else None
            message = decode_failure_message(failure, text.encoding, self._options.encoding)
            value = failure.bad_bytes.hex(" ")
            log.add(Finding(FindingCode.ENCODING, message, row=row, line=failure.line, value=value))
        elif not self._seen_row:
            message = "the file is empty: it has no rows, only blank lines or nothing at all"
            log.add(Finding(FindingCode.EMPTY_FILE, message))
        elif self._has_header and rows == 0:
            message = "the file has a header but no data rows below it"
            log.add(Finding(FindingCode.NO_DATA_ROWS, message))
        duplicates = self._duplicates
        for row, line, earlier in duplicates.found:
            message = f"same name and address as row {earlier}; remove one of them"
            log.add(
                Finding(
                    FindingCode.DUPLICATE_ROW,
                    message,
                    row=row,
                    line=line,
                    severity=Severity.WARNING,
                )
            )
        # Duplicates past the first max_findings were only counted.
        log.warning_count += duplicates.count - len(duplicates.found)
        return ValidationReport(
            total_rows=rows,
            valid_rows=rows - self._invalid,
            errors=tuple(log.errors),
            warnings=tuple(log.warnings),
            error_count=log.error_count,
            warning_count=log.warning_count,
            has_header=self._has_header,
            delimiter=self._delimiter,
            encoding=text.encoding,
        )


def _drain(first: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    """``first`` then ``rest``, letting go of each list of ``first`` once it is handed on."""
    while first:
        yield first.pop(0)
    yield from rest


def _fast_settings(layout: Layout) -> tuple[int, int, int, int, bool, bool]:
    """What the cheap test needs: width, name, address and phone index, has phone, empty last."""
    phone_at = 0 if layout.phone is None else layout.phone
    empty_last_ok = layout.width - 1 not in (layout.name, layout.address)
    return (
        layout.width,
        layout.name,
        layout.address,
        phone_at,
        layout.phone is not None,
        empty_last_ok,
    )


def _malformed(exc: csv.Error, row: int | None, line: int) -> Finding:
    reason = str(exc)
    if reason.startswith("field larger than field limit"):
        limit = csv.field_size_limit()
        message = f"a value is longer than {limit:,} characters, the most the CSV reader takes"
        return Finding(FindingCode.FIELD_TOO_LONG, message, row=row, line=line)
    if reason == "unexpected end of data":
        message = (
            f'the file ends inside a quoted value that starts on line {line}: a closing " is'
            " missing"
        )
    else:
        message = (
            f'the row is not valid CSV ({reason}): a value that starts with " must end with'
            ' " right before the delimiter, and a " inside it is written ""'
        )
    return Finding(FindingCode.MALFORMED_CSV, message, row=row, line=line)
