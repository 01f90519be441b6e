"""Hypothesis: what the CSV reader promises for any input.

- Valid records written by ``csv.writer`` (any column order and header spelling,
  with or without a header, phone or not) read back equal, on the expected lines.
- The cheap test the reader tries first never disagrees with the full row check.
- No input, however broken, makes reading raise: there is always a report, the
  same from ``validate_csv`` as from ``read_csv``, and its counts add up.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hospital_bulk import (
    CsvOptions,
    HospitalRecord,
    ValidationReport,
    read_csv,
    validate_csv,
)
from hospital_bulk.csv import _text
from hospital_bulk.csv._header import ALIASES, Layout, is_header
from hospital_bulk.csv._rows import CONTROL, FindingLog, check_row

# Text a name or address may hold: no control characters or line separators
# (U+FEFF at the very start of a file would be taken for a BOM), trimmed, not empty.
value_text = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufeff"),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
phones = st.from_regex(
    r"\+?[0-9]{1,3}( ?\([0-9]{3}\))? ?[0-9]{3}[-. ]?[0-9]{4}( ([xX]|ext|EXT\.?) ?[0-9]{1,5})?",
    fullmatch=True,
)
hospital_records = st.builds(
    HospitalRecord, name=value_text, address=value_text, phone=st.none() | phones
)
column_names = {
    column: st.sampled_from(
        [alias for alias, canonical in ALIASES.items() if canonical == column]
    ).flatmap(
        lambda alias: st.sampled_from([alias, alias.upper(), alias.replace("_", " ").title()])
    )
    for column in ("name", "address", "phone")
}


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[HospitalRecord], bool]:
    """A file of valid records, and whether it has a header."""
    rows = draw(st.lists(hospital_records, min_size=1, max_size=30))
    with_header = draw(st.booleans())
    with_phone = any(row.phone for row in rows) or draw(st.booleans())
    columns = ["name", "address", "phone"] if with_phone else ["name", "address"]
    if with_header:
        columns = draw(st.permutations(columns))
        delimiter = draw(st.sampled_from([",", ";", "\t"]))
    else:
        # Without a header the first row must not read as one, and a first line with
        # more ";" than "," outside quotes is read with ";" (docs/csv.md).
        assume(not is_header([rows[0].name, rows[0].address]))
        assume(not any(";" in cell for cell in (rows[0].name, rows[0].address)))
        delimiter = ","
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
    )
    if with_header:
        writer.writerow([draw(column_names[column]) for column in columns])
    for row in rows:
        values = {"name": row.name, "address": row.address, "phone": row.phone or ""}
        writer.writerow([values[column] for column in columns])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return out.getvalue().encode(encoding), rows, with_header


@given(csv_files())
def test_valid_records_read_back_equal(file: tuple[bytes, list[HospitalRecord], bool]) -> None:
    """Every record comes back as written, row n on line n (+1 after a header)."""
    data, records, with_header = file
    report, rows = read_csv(data)
    first_line = 2 if with_header else 1
    expected = [(n, n + first_line - 1, record) for n, record in enumerate(records, 1)]
    assert expected == [(row.row, row.line, row.record) for row in rows]
    assert (0, len(records), with_header) == (
        report.error_count,
        report.valid_rows,
        report.has_header,
    )


# Cells near the edge of validity: spaces of all kinds, controls, phone-like text.
tricky_cells = st.text(
    st.sampled_from(list("aZé9 0-+().xX,;\"'\t\n\r\x07\x00\xa0\u2003\u2028\x85ext")),
    max_size=12,
)


plain_cells = st.sampled_from(["A", "b c", "Zé 9", " A", "b  c", "x\xa0y", "", "A\tB"])
phone_cells = st.sampled_from(
    ["", "5", "55", "555", "(55)", "5-5-5", "555 ", "555 x1", "55.5."]
) | st.text(st.sampled_from(list("0123456789 -+().xXet")), max_size=8)
tricky_rows = st.one_of(
    st.tuples(plain_cells, plain_cells, phone_cells).map(list),
    st.lists(tricky_cells, min_size=2, max_size=4),
)


@given(tricky_rows, st.integers(min_value=1, max_value=20))
@example(["A", "B", "55"], 20)
@example(["A", "B", "555 "], 20)
@example(["A b", "B", ""], 3)
def test_the_cheap_test_agrees_with_the_full_check(cells: list[str], max_length: int) -> None:
    """Whatever the reader decides for a row is what ``check_row`` decides, values included."""
    out = io.StringIO()
    csv.writer(out).writerows([["name", "address", "phone"], cells])
    report, rows = read_csv(out.getvalue().encode(), CsvOptions(max_field_length=max_length))
    # The reader's own dialect: leading spaces before a quote are skipped.
    parsed = list(csv.reader(io.StringIO(out.getvalue(), newline=""), skipinitialspace=True))
    assume(len(parsed) == 2 and "".join(parsed[1]).strip())
    log = FindingLog(10)
    checked = check_row(
        parsed[1],
        Layout(width=3, header=("name", "address", "phone")),
        row=1,
        line=2,
        max_length=max_length,
        delimiter=",",
        log=log,
    )
    expected = [] if checked is None else [HospitalRecord(*checked)]
    assert (expected, log.errors) == ([row.record for row in rows], list(report.errors))


def check_consistent(report: ValidationReport, options: CsvOptions) -> None:
    assert isinstance(report, ValidationReport)
    assert 0 <= report.valid_rows <= report.total_rows
    assert len(report.errors) == min(report.error_count, options.max_findings)
    assert len(report.warnings) == min(report.warning_count, options.max_findings)
    assert report.valid == (report.error_count == 0)


def check_never_raises(data: bytes, options: CsvOptions) -> None:
    report, rows = read_csv(data, options)
    check_consistent(report, options)
    assert report == validate_csv(data, options)
    assert report.valid_rows == len(rows)
    for row in rows:
        for value in (row.record.name, row.record.address, row.record.phone or "x"):
            assert value == value.strip()
            assert value
            assert not CONTROL.search(value)


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=5))
def test_any_bytes_give_a_report(data: bytes, max_findings: int) -> None:
    """Random bytes never raise; the report is consistent and both entry points agree."""
    check_never_raises(data, CsvOptions(max_findings=max_findings))


# Pieces that reach the parser's corners far more often than random bytes do.
PIECES = [b",", b";", b"\t", b'"', b"\n", b"\r", b"\r\n", b" ", b"a", b"Z", b"5",
          b"55555", b"\x00", b"\x07", b"\xff", b"\xc3\xa9", b"\xc3", b"\xef\xbb\xbf",
          b"\xff\xfe", b"\xe2\x80\xa8", b"\x0c", b"name", b"address", b"phone",
          b"Hospital", b"tel", b"ext"]  # fmt: skip


@given(
    st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join),
    st.integers(min_value=1, max_value=9),
    st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
)
def test_csv_like_bytes_give_a_report(data: bytes, chunk: int, max_rows: int | None) -> None:
    """CSV-like garbage, read in chunks of any size, never raises either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_text, "CHUNK_BYTES", chunk)
        check_never_raises(data, CsvOptions(max_rows=max_rows, max_field_length=6))


@given(st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join))
def test_chunk_size_does_not_matter(data: bytes) -> None:
    """Reading 3 bytes at a time gives the same report and rows as reading all at once."""
    whole = read_csv(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_text, "CHUNK_BYTES", 3)
        assert whole == read_csv(data)


@given(
    st.lists(hospital_records, min_size=1, max_size=20),
    st.sampled_from(["cp1252", "latin-1", "utf-16-le", "gb18030", "shift_jis"]),
    st.sampled_from([",", ";", "|", "\t"]),
    st.integers(min_value=1, max_value=9),
)
def test_records_in_any_encoding_and_delimiter_read_back_equal(
    records: list[HospitalRecord], encoding: str, delimiter: str, chunk: int
) -> None:
    """Written in an encoding with a delimiter, read with both named, in chunks of any
    size: every record comes back as written."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["name", "address", "phone"])
    for record in records:
        writer.writerow([record.name, record.address, record.phone or ""])
    try:
        data = out.getvalue().encode(encoding)
    except UnicodeEncodeError:
        assume(False)
        raise
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_text, "CHUNK_BYTES", chunk)
        report, rows = read_csv(data, CsvOptions(encoding=encoding, delimiter=delimiter))
    assert (records, 0) == ([row.record for row in rows], report.error_count)


@given(
    st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join),
    st.sampled_from(["cp1252", "latin-1", "utf-16", "utf-32", "gb18030", "ascii"]),
    st.sampled_from([None, "|", ";", "\t"]),
    st.integers(min_value=1, max_value=9),
)
def test_any_encoding_and_delimiter_give_a_report(
    data: bytes, encoding: str, delimiter: str | None, chunk: int
) -> None:
    """Garbage read in any encoding, with any delimiter, in chunks of any size, never
    raises, and the chunks do not change the report."""
    options = CsvOptions(encoding=encoding, delimiter=delimiter, max_field_length=6)
    whole = read_csv(data, options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_text, "CHUNK_BYTES", chunk)
        check_never_raises(data, options)
        assert whole == read_csv(data, options)
