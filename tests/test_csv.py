"""Reading and validating CSV files: one test per rule of docs/csv.md.

Each malformed or tricky input states the finding it must give: its code, data row
and physical line (and column where there is one). ``found()`` condenses a report
to those so that the whole expectation fits in one ``expected == actual``.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import codecs
import hashlib
import io
from pathlib import Path

import pytest

from hospital_bulk import (
    CsvOptions,
    CsvReader,
    CsvRow,
    FindingCode,
    HospitalRecord,
    Severity,
    ValidationReport,
    read_csv,
    validate_csv,
)
from hospital_bulk.csv import _duplicates, _text

Code = FindingCode
Found = tuple[FindingCode, int | None, int | None, str | None]


def found(report: ValidationReport) -> list[Found]:
    """(code, row, line, column) of every finding kept, errors first."""
    return [(f.code, f.row, f.line, f.column) for f in (*report.errors, *report.warnings)]


def records(rows: list[CsvRow]) -> list[tuple[int, int, HospitalRecord]]:
    """(row, line, record) of every valid row."""
    return [(row.row, row.line, row.record) for row in rows]


def read(data: bytes, options: CsvOptions | None = None) -> tuple[ValidationReport, list[CsvRow]]:
    """``read_csv``, after checking that ``validate_csv`` gives the same report."""
    options = options or CsvOptions()
    report, rows = read_csv(data, options)
    assert report == validate_csv(data, options)
    return report, rows


def H(name: str, address: str, phone: str | None = None) -> HospitalRecord:  # noqa: N802
    """A record, short: the tables of expected rows stay readable."""
    return HospitalRecord(name, address, phone)


@pytest.fixture(name="small_chunks")
def fixture_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes arrive 5 at a time, so every line, character and BOM straddles chunks."""
    monkeypatch.setattr(_text, "CHUNK_BYTES", 5)


# -- the happy paths -------------------------------------------------------------------


def test_a_plain_file_reads_back() -> None:
    """A header and two rows: both valid, phone optional, values trimmed."""
    data = b"name,address,phone\nGeneral Hospital,1 Main St,555-0100\n  Clinic , 2 Oak Ave ,\n"
    report, rows = read(data)
    assert [
        (1, 2, H("General Hospital", "1 Main St", "555-0100")),
        (2, 3, H("Clinic", "2 Oak Ave")),
    ] == records(rows)
    assert ValidationReport(total_rows=2, valid_rows=2, has_header=True) == report
    assert report.valid


def test_a_utf8_bom_is_skipped() -> None:
    """A UTF-8 BOM is not part of the first header cell; the encoding says it was there."""
    report, rows = read(codecs.BOM_UTF8 + b"name,address\nA,B\n")
    assert ([(1, 2, H("A", "B"))], True, "utf-8-sig") == (
        records(rows),
        report.has_header,
        report.encoding,
    )


def test_header_columns_in_any_order() -> None:
    """Columns are found by name, whatever their order."""
    _, rows = read(b"phone,address,name\n555-0100,1 Main St,General\n")
    assert [H("General", "1 Main St", "555-0100")] == [row.record for row in rows]


@pytest.mark.parametrize(
    "header",
    [
        "Hospital Name,Street Address,Phone Number",
        "HOSPITAL,location,Tel",
        "hospital_name , hospital-address , telephone",
        "Name,Address,Contact Number",
    ],
)
def test_header_aliases(header: str) -> None:
    """Documented aliases count as the column names, in any case and spacing."""
    report, rows = read(f"{header}\nA,B,555-0100\n".encode())
    assert (True, [H("A", "B", "555-0100")]) == (report.has_header, [r.record for r in rows])


def test_headerless_rows_are_name_address_phone() -> None:
    """Without a header, rows of 2 or 3 cells are name, address[, phone]."""
    report, rows = read(b"General Hospital,12 Main St\nClinic,3 Oak Ave,555-0100\n")
    assert [
        (1, 1, H("General Hospital", "12 Main St")),
        (2, 2, H("Clinic", "3 Oak Ave", "555-0100")),
    ] == records(rows)
    assert (False, 2) == (report.has_header, report.valid_rows)


def test_a_data_row_with_one_alias_word_is_not_a_header() -> None:
    """``Hospital,12 Main St`` has one column name only: it is data, not a header."""
    report, rows = read(b"Hospital,12 Main St\n")
    assert (False, [H("Hospital", "12 Main St")]) == (report.has_header, [r.record for r in rows])


def test_semicolon_delimiter() -> None:
    """``;`` is recognised from the first line; commas are then plain text."""
    report, rows = read(b"name;address;phone\nA;12 Main St, Springfield;555-0100\n")
    assert (";", [H("A", "12 Main St, Springfield", "555-0100")]) == (
        report.delimiter,
        [r.record for r in rows],
    )


def test_tab_delimiter() -> None:
    """A tab-separated file is recognised too."""
    report, rows = read(b"name\taddress\nA, Inc.\t1 Main St\n")
    assert ("\t", [H("A, Inc.", "1 Main St")]) == (report.delimiter, [r.record for r in rows])


def test_commas_inside_quotes_do_not_decide_the_delimiter() -> None:
    """The sniffer counts delimiters outside quotes only."""
    report, _ = read(b'"A, B, C, D";"1 Main St, Town"\n')
    assert ";" == report.delimiter


def test_quoted_comma_and_escaped_quotes() -> None:
    """Quoted values keep their commas; ``""`` inside quotes is one quote."""
    _, rows = read(b'name,address\n"The ""Best"" Hospital","12 Main St, Springfield"\n')
    assert [H('The "Best" Hospital', "12 Main St, Springfield")] == [r.record for r in rows]


def test_blank_lines_are_skipped_but_lines_still_count() -> None:
    """Blank lines (also ones of spaces or empty cells) are no rows; ``line`` stays physical."""
    data = b"\n\nname,address\n\n  \nA,B\n,,\n\nC,\n"
    report, rows = read(data)
    assert [(1, 6, H("A", "B"))] == records(rows)
    assert [(Code.MISSING_VALUE, 2, 9, "address")] == found(report)
    assert 2 == report.total_rows


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_line_endings(newline: bytes) -> None:
    """CRLF, CR and LF files read the same, with the same line numbers."""
    data = newline.join([b"name,address", b"A,B", b"", b"C,D", b""])
    _, rows = read(data)
    assert [(1, 2, H("A", "B")), (2, 4, H("C", "D"))] == records(rows)


@pytest.mark.parametrize("utf16", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(utf16: str) -> None:
    """UTF-16 with a BOM, either byte order, is decoded."""
    text = "name,address\nHôpital Saint-Éloi,1 Rue de Paris\n"
    bom = codecs.BOM_UTF16_LE if utf16.endswith("le") else codecs.BOM_UTF16_BE
    report, rows = read(bom + text.encode(utf16))
    assert ("utf-16", [H("Hôpital Saint-Éloi", "1 Rue de Paris")]) == (
        report.encoding,
        [r.record for r in rows],
    )


def test_valid_phones() -> None:
    """Digits with + - ( ) . and spaces, and x or ext before an extension, are phones."""
    phones = ["555-0100", "+1 (555) 010-2000 ext 12", "555.010.2000 x7", "(555) 0100 EXT. 3", "911"]
    data = "name,address,phone\n" + "".join(f"H{i},A,{p}\n" for i, p in enumerate(phones))
    report, rows = read(data.encode())
    assert (phones, []) == ([r.record.phone for r in rows], found(report))


# -- the header --------------------------------------------------------------------------


def test_an_unknown_column_is_a_warning_and_ignored() -> None:
    """Extra columns are allowed: a warning says their values are ignored."""
    report, rows = read(b"name,address,notes\nA,B,\tanything\x07\n")
    assert ([H("A", "B")], [(Code.UNKNOWN_COLUMN, None, 1, "notes")]) == (
        [r.record for r in rows],
        found(report),
    )
    assert (True, Severity.WARNING) == (report.valid, report.warnings[0].severity)


def test_a_column_without_a_name_is_a_warning() -> None:
    """A trailing delimiter in the header makes a column with no name: ignored, said so."""
    report, rows = read(b"name,address,\nA,B,\n")
    assert ([(Code.UNKNOWN_COLUMN, None, 1, None)], [H("A", "B")]) == (
        found(report),
        [r.record for r in rows],
    )
    assert "column 3 has no name" in report.warnings[0].message


@pytest.mark.parametrize(
    ("header", "column"),
    [("name,name,address", "name"), ("name,address,phone,phone_number", "phone")],
)
def test_a_duplicate_column_is_an_error(header: str, column: str) -> None:
    """Two columns meaning the same thing: which one counts? An error; no row is valid."""
    report, rows = read(f"{header}\nA,B,C,D\n".encode())
    assert ([(Code.DUPLICATE_COLUMN, None, 1, column)], 1, 0, []) == (
        found(report),
        report.total_rows,
        report.valid_rows,
        rows,
    )


def test_a_missing_column_is_an_error() -> None:
    """A header of column names without address: missing_column, rows counted, none valid."""
    report, rows = read(b"name,phone\nA,555-0100\nB,555-0101\n")
    assert ([(Code.MISSING_COLUMN, None, 1, "address")], 2, []) == (
        found(report),
        report.total_rows,
        rows,
    )


# -- values ------------------------------------------------------------------------------


def test_missing_name_and_address() -> None:
    """Empty or whitespace-only name and address are missing values, each reported.

    A no-break space is whitespace too. (A row whose cells are all whitespace is a
    blank line, not a row with missing values.)
    """
    report, rows = read(b"name,address\n   ,B\nA,\n\xc2\xa0,C\n")
    assert [
        (Code.MISSING_VALUE, 1, 2, "name"),
        (Code.MISSING_VALUE, 2, 3, "address"),
        (Code.MISSING_VALUE, 3, 4, "name"),
    ] == found(report)
    assert (3, 0, []) == (report.total_rows, report.valid_rows, rows)


def test_control_characters() -> None:
    """A tab in a comma file or a bell inside a value is a control character."""
    report, _ = read(b"name,address\nA\tB,C\nD,E\x07F\n")
    assert [
        (Code.CONTROL_CHARACTER, 1, 2, "name"),
        (Code.CONTROL_CHARACTER, 2, 3, "address"),
    ] == found(report)
    assert "U+0007" in report.errors[1].message


def test_a_quoted_newline_is_a_control_character() -> None:
    """A value spanning lines is read as one value, then refused; the next line is right."""
    report, rows = read(b'name,address\n"General\nHospital",B\nC,D\n')
    assert ([(Code.CONTROL_CHARACTER, 1, 2, "name")], [(2, 4, H("C", "D"))]) == (
        found(report),
        records(rows),
    )
    assert "line break" in report.errors[0].message


@pytest.mark.parametrize("separator", ["\x0c", "\u2028", "\x1e"])
def test_other_line_separators_do_not_end_a_line(separator: str) -> None:
    """Only CR and LF end a line: a form feed or U+2028 is a control character in a value."""
    report, rows = read(f"name,address\nA{separator}B,C\nD,E\n".encode())
    assert ([(Code.CONTROL_CHARACTER, 1, 2, "name")], [(2, 3, H("D", "E"))]) == (
        found(report),
        records(rows),
    )


def test_a_field_too_long() -> None:
    """501 characters (after trimming) is over the default limit; the value is shortened."""
    report, _ = read(b"name,address\n" + b"A" * 501 + b",  " + b"B" * 500 + b"  \n")
    assert [(Code.FIELD_TOO_LONG, 1, 2, "name")] == found(report)
    assert 100 == len(report.errors[0].value or "")


def test_a_10_mb_field_does_not_blow_up() -> None:
    """A 10 MB value is too long; it is not kept whole and the next row is still read."""
    data = b'name,address\n"A",' + b"x" * 10_000_000 + b"\nB,C\n"
    report, rows = read(data)
    assert ([(Code.FIELD_TOO_LONG, 1, 2, None)], [(2, 3, H("B", "C"))]) == (
        found(report),
        records(rows),
    )


def test_a_200_kb_field_is_too_long() -> None:
    """A value over the csv module's 128 KiB field limit is too long as well."""
    report, rows = read(b"name,address\nA," + b"x" * 200_000 + b"\nB,C\n")
    assert ([(Code.FIELD_TOO_LONG, 1, 2, None)], [(2, 3, H("B", "C"))]) == (
        found(report),
        records(rows),
    )


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("55", "2 digits"),
        ("call me", "'c'"),
        ("555-0100 or 555-0101", "'o'"),
        ("+1 555 0100 ex 4", "'e'"),
    ],
)
def test_invalid_phones(phone: str, reason: str) -> None:
    """Fewer than 3 digits, or anything but phone characters, is an invalid phone."""
    report, _ = read(f"name,address,phone\nA,B,{phone}\n".encode())
    assert [(Code.INVALID_PHONE, 1, 2, "phone")] == found(report)
    assert reason in report.errors[0].message
    assert phone == report.errors[0].value


# -- rows and columns ----------------------------------------------------------------------


def test_too_many_and_too_few_columns_with_a_header() -> None:
    """With a header every row has exactly as many cells as the header."""
    report, rows = read(b"name,address,phone\nA,B\nC,D,555-0100,extra\nE,F,\n")
    assert [
        (Code.TOO_FEW_COLUMNS, 1, 2, None),
        (Code.TOO_MANY_COLUMNS, 2, 3, None),
    ] == found(report)
    assert [(3, 4, H("E", "F"))] == records(rows)


def test_too_many_and_too_few_columns_without_a_header() -> None:
    """Without a header one cell is too few and four are too many."""
    report, _ = read(b"A,B\nonly a name\nC,D,555-0100,extra\n")
    assert [
        (Code.TOO_FEW_COLUMNS, 2, 2, None),
        (Code.TOO_MANY_COLUMNS, 3, 3, None),
    ] == found(report)


def test_too_many_rows_stops_the_read() -> None:
    """The first row over ``max_rows`` is an error, and nothing after it is read."""
    data = b"name,address\nA,B\n\nC,D\nE,F\nbad\n"
    report, rows = read(data, CsvOptions(max_rows=2))
    assert ([(Code.TOO_MANY_ROWS, 3, 5, None)], 2) == (found(report), len(rows))
    assert 2 == report.total_rows


def test_exactly_max_rows_is_fine() -> None:
    """``max_rows`` rows are allowed."""
    report, _ = read(b"A,B\nC,D\n", CsvOptions(max_rows=2))
    assert (True, 2) == (report.valid, report.valid_rows)


def test_duplicate_rows_are_a_warning_naming_both_rows() -> None:
    """Same name and address, case and runs of spaces aside: a warning on the later row."""
    data = (
        b"name,address,phone\nGeneral Hospital,1 Main St,\nX,Y,\n"
        b" general  HOSPITAL ,1 MAIN ST,555-0100\n"
    )
    report, rows = read(data)
    assert ([(Code.DUPLICATE_ROW, 3, 4, None)], 3) == (found(report), len(rows))
    assert "same name and address as row 1" in report.warnings[0].message
    assert report.valid


# -- broken files ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\r\n\t\n", codecs.BOM_UTF8, b",,\n , \n"])
def test_an_empty_file(data: bytes) -> None:
    """No bytes, only whitespace, only a BOM or only empty cells: empty_file."""
    report, _ = read(data)
    assert ([(Code.EMPTY_FILE, None, None, None)], 0) == (found(report), report.total_rows)


def test_only_a_header() -> None:
    """A header and blank lines, no data: no_data_rows."""
    report, _ = read(b"name,address,phone\n\n\n")
    assert [(Code.NO_DATA_ROWS, None, None, None)] == found(report)


def test_latin1_is_an_encoding_error_naming_the_byte() -> None:
    """A Latin-1 ô is not UTF-8: the error gives its row, line and offset; reading stops there."""
    data = b"name,address\nA,B\nH\xf4pital,C\nD,E\n"
    report, rows = read(data)
    assert ([(Code.ENCODING, 2, 3, None)], [(1, 2, H("A", "B"))]) == (
        found(report),
        records(rows),
    )
    assert "byte 18 " in report.errors[0].message
    assert "f4" == report.errors[0].value


@pytest.mark.usefixtures("small_chunks")
def test_the_encoding_offset_is_absolute_far_into_the_file() -> None:
    """The offset counts from the file's first byte, BOM included, past many chunks."""
    head = codecs.BOM_UTF8 + b"name,address\n" + b"".join(b"H%d,A\n" % i for i in range(700))
    report = validate_csv(head + b"C,\xe9\n")
    assert ([(Code.ENCODING, 701, 702, None)], 700) == (found(report), report.total_rows)
    assert f"byte {len(head) + 2:,} " in report.errors[0].message


def test_an_encoding_error_inside_a_quoted_value_is_reported_once() -> None:
    """A bad byte in the middle of a multi-line quoted value gives only the encoding error,
    for the row that starts on the line before."""
    report, _ = read(b'name,address\n"A\nB\xff",C\n')
    assert [(Code.ENCODING, 1, 3, None)] == found(report)


def test_a_truncated_utf16_file() -> None:
    """An odd byte at the end of a UTF-16 file is an encoding error too."""
    data = codecs.BOM_UTF16_LE + "name,address\nA,B\n".encode("utf-16-le") + b"C"
    report, _ = read(data)
    assert [(Code.ENCODING, 2, 3, None)] == found(report)
    assert f"byte {len(data) - 1} " in report.errors[0].message
    assert "not valid UTF-16" in report.errors[0].message
    assert "encoding=" not in report.errors[0].message


def test_an_unterminated_quote() -> None:
    """A quote that never closes swallows the rest of the file: malformed_csv where it starts."""
    report, rows = read(b'name,address\nA,B\nC,"D\nE,F\n')
    assert ([(Code.MALFORMED_CSV, 2, 3, None)], 1) == (found(report), len(rows))
    assert "line 3" in report.errors[0].message


def test_text_after_a_closing_quote() -> None:
    """``"A"B`` is not CSV: malformed_csv for that row, the next rows are read."""
    report, rows = read(b'name,address\n"A"B,C\nD,E\n')
    assert ([(Code.MALFORMED_CSV, 1, 2, None)], [(2, 3, H("D", "E"))]) == (
        found(report),
        records(rows),
    )


def test_a_nul_byte() -> None:
    """A NUL byte means the file is binary or UTF-16 without BOM: malformed_csv."""
    report, _ = read(b"name,address\nA\x00,B\nC,D\n")
    assert [(Code.MALFORMED_CSV, 1, 2, None)] == found(report)


def test_utf16_without_bom_is_reported_as_nul_bytes() -> None:
    """UTF-16 without a BOM decodes as UTF-8 full of NULs: every row is malformed."""
    report, _ = read("name,address\nA,B\n".encode("utf-16-le"))
    assert (Code.MALFORMED_CSV, False) == (report.errors[0].code, report.valid)


# -- encoding and delimiter options ---------------------------------------------------------

#: What Excel on Windows saves as "CSV": cp1252, where 0x96 is an en dash.
EXCEL_CP1252 = "name,address\nClínica São José,Rua 1\nHôpital \u2013 Nord,2 rue du Nord\n".encode(
    "cp1252"
)


def test_a_cp1252_file_is_refused_by_default_with_a_suggestion() -> None:
    """Read as UTF-8, Excel's cp1252 fails on row 1, line 2; the message says to save it as
    UTF-8 or pass encoding=cp1252, and shows the line read that way."""
    report, rows = read(EXCEL_CP1252)
    assert ([(Code.ENCODING, 1, 2, None)], []) == (found(report), rows)
    message = report.errors[0].message
    assert "Save the file as UTF-8" in message
    assert "encoding=cp1252" in message
    assert "'Clínica São José,Rua 1'" in message


def test_a_cp1252_file_reads_with_encoding_cp1252() -> None:
    """encoding=cp1252 reads the accents and the en dash; the report names the encoding."""
    report, rows = read(EXCEL_CP1252, CsvOptions(encoding="cp1252"))
    assert [
        (1, 2, H("Clínica São José", "Rua 1")),
        (2, 3, H("Hôpital \u2013 Nord", "2 rue du Nord")),
    ] == records(rows)
    assert (True, "cp1252") == (report.valid, report.encoding)


@pytest.mark.usefixtures("small_chunks")
def test_an_encoding_reads_across_chunks() -> None:
    """A multi-byte encoding cut into 5-byte chunks reads like the whole file."""
    data = "name,address\n北京协和医院,东城区\n".encode("gb18030")
    _, rows = read(data, CsvOptions(encoding="gb18030"))
    assert [(1, 2, H("北京协和医院", "东城区"))] == records(rows)


def test_bytes_undefined_in_cp1252_suggest_latin1() -> None:
    """0x81 means nothing in cp1252: the suggestion is latin-1, which reads any byte."""
    report, _ = read(b"name,address\nA\x81,B\n")
    assert "encoding=latin-1" in report.errors[0].message


def test_an_encoding_error_in_the_first_line_has_no_row() -> None:
    """A bad byte before the first line is known to be a header or a row: file-level."""
    report, _ = read(b"n\xe4me,address\nA,B\n")
    assert [(Code.ENCODING, None, 1, None)] == found(report)


def test_a_file_not_in_the_given_encoding() -> None:
    """A byte the given encoding cannot decode is an encoding error naming that encoding."""
    report, _ = read(b"name,address\nA\x81,B\n", CsvOptions(encoding="cp1252"))
    assert [(Code.ENCODING, 1, 2, None)] == found(report)
    assert "not valid cp1252" in report.errors[0].message
    assert "Check that cp1252 is the file's encoding" in report.errors[0].message


def test_encoding_names_are_python_s_own() -> None:
    """Aliases become one name; utf-8-sig is the default, which drops a BOM anyway."""
    assert ["iso8859-1", "cp1252", "utf-8", "utf-8", "utf-16"] == [
        CsvOptions(encoding=name).encoding
        for name in ("latin-1", "Windows-1252", "UTF8", "utf-8-sig", "UTF_16")
    ]


@pytest.mark.parametrize("name", ["klingon", "base64", "rot13", "undefined", ""])
def test_an_unknown_encoding_is_refused(name: str) -> None:
    """A name Python does not know, or a codec that does not decode text, is a ValueError."""
    with pytest.raises(ValueError, match="unknown encoding"):
        CsvOptions(encoding=name)


def test_the_default_still_reads_a_bom() -> None:
    """With the default encoding a UTF-16 BOM still decides."""
    data = codecs.BOM_UTF16_LE + "name,address\nÉ,B\n".encode("utf-16-le")
    report, rows = read(data)
    assert ("utf-16", [(1, 2, H("É", "B"))]) == (report.encoding, records(rows))


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("utf-16", "name,address\nÉ,B\n".encode("utf-16-le")),
        ("utf-16", codecs.BOM_UTF16_BE + "name,address\nÉ,B\n".encode("utf-16-be")),
        ("utf-32", "name,address\nÉ,B\n".encode("utf-32")),
        ("utf-32", codecs.BOM_UTF32_BE + "name,address\nÉ,B\n".encode("utf-32-be")),
    ],
)
def test_utf16_and_utf32_by_name_read_with_or_without_a_bom(encoding: str, data: bytes) -> None:
    """Named, UTF-16 and UTF-32 take the byte order from a BOM, little-endian without."""
    report, rows = read(data, CsvOptions(encoding=encoding))
    assert (encoding, [(1, 2, H("É", "B"))]) == (report.encoding, records(rows))


def test_a_codec_refusing_the_stream_is_an_encoding_error() -> None:
    """A decoder that fails without pointing at a byte still gives a finding, not a crash."""

    class Refusing(codecs.IncrementalDecoder):
        def decode(self, input: bytes, final: bool = False) -> str:
            if b"!" in input:
                raise UnicodeError("the stream is refused")
            return input.decode("ascii")

    def search(name: str) -> codecs.CodecInfo | None:
        if name != "refusing_test_codec":
            return None
        ascii_codec = codecs.lookup("ascii")
        return codecs.CodecInfo(
            ascii_codec.encode, ascii_codec.decode, name=name, incrementaldecoder=Refusing
        )

    codecs.register(search)
    try:
        report, _ = read(b"name,address\nA,B\nC!,D\n", CsvOptions(encoding="refusing_test_codec"))
    finally:
        codecs.unregister(search)
    assert [(Code.ENCODING, None, 1, None)] == found(report)
    assert "the stream is refused" in report.errors[0].message


def test_a_delimiter_overrides_the_sniffing() -> None:
    """delimiter=';' reads a line the sniffing would split at its commas."""
    data = b"name;address\nA, the clinic;1 Main St, Springfield\n"
    report, rows = read(data, CsvOptions(delimiter=";"))
    assert [(1, 2, H("A, the clinic", "1 Main St, Springfield"))] == records(rows)
    assert (True, ";") == (report.valid, report.delimiter)


def test_any_one_character_can_delimit() -> None:
    """A pipe, and 'tab' as a name for the tab."""
    _, rows = read(b"name|address\nA|B\n", CsvOptions(delimiter="|"))
    assert [(1, 2, H("A", "B"))] == records(rows)
    assert "\t" == CsvOptions(delimiter="tab").delimiter


@pytest.mark.parametrize("delimiter", ["", ";;", '"', "a", "1", " ", "\n", "\r"])
def test_a_delimiter_that_cannot_separate_is_refused(delimiter: str) -> None:
    """One character, not a quote, letter, digit, space or line break."""
    with pytest.raises(ValueError, match="delimiter"):
        CsvOptions(delimiter=delimiter)


def test_the_reader_gives_the_file_s_sha256(tmp_path: Path) -> None:
    """The digest is of the bytes read, whatever the source; ready with the report."""
    path = tmp_path / "h.csv"
    path.write_bytes(DATA)
    digests = []
    for source in (DATA, io.BytesIO(DATA), path):
        reader = CsvReader(source)
        with pytest.raises(RuntimeError):
            _ = reader.sha256
        for _ in reader:
            pass
        digests.append(reader.sha256)
    assert [hashlib.sha256(DATA).hexdigest()] * 3 == digests


# -- limits --------------------------------------------------------------------------------


def test_max_findings_keeps_the_first_and_counts_all() -> None:
    """Only ``max_findings`` errors are kept in full, but the count covers them all."""
    data = b"name,address\n" + b",B\n" * 50
    report, _ = read(data, CsvOptions(max_findings=3))
    assert (3, 50, [2, 3, 4]) == (
        len(report.errors),
        report.error_count,
        [f.line for f in report.errors],
    )


def test_options_are_checked() -> None:
    """Nonsense limits are refused when the options are made."""
    with pytest.raises(ValueError, match="chunk_size"):
        CsvOptions(chunk_size=0)


# -- sources and the reader ----------------------------------------------------------------


DATA = b"name,address\nA,B\nC,D\n"


def test_a_path_bytes_and_a_file_object_read_the_same(tmp_path: Path) -> None:
    """The three kinds of source give the same report and rows."""
    path = tmp_path / "hospitals.csv"
    path.write_bytes(DATA)
    results = [read_csv(source) for source in (path, DATA, io.BytesIO(DATA))]
    assert [results[0]] * 3 == results


def test_a_file_object_is_left_open() -> None:
    """The caller opened the file object, so the caller closes it."""
    file = io.BytesIO(DATA)
    read_csv(file)
    assert not file.closed


def test_a_str_source_is_refused() -> None:
    """A str could be a file name or the content: refused with a hint."""
    with pytest.raises(TypeError, match=r"pathlib\.Path"):
        validate_csv("hospitals.csv")  # type: ignore[arg-type]


def test_a_text_mode_file_is_refused() -> None:
    """A file object must give bytes."""
    with pytest.raises(TypeError, match="binary mode"):
        validate_csv(io.StringIO("name,address\n"))  # type: ignore[arg-type]


def test_the_reader_yields_chunks_of_valid_rows() -> None:
    """Valid rows come in lists of ``chunk_size``; the report is there at the end."""
    data = b"name,address\n" + b"".join(b"H%d,A\n" % i for i in range(5)) + b",bad\n"
    reader = CsvReader(data, CsvOptions(chunk_size=2))
    chunks = [[row.row for row in chunk] for chunk in reader]
    assert ([[1, 2], [3, 4], [5]], 6, 5) == (
        chunks,
        reader.report.total_rows,
        reader.report.valid_rows,
    )


def test_the_report_is_not_ready_before_the_end() -> None:
    """Asking for the report before the last chunk is an error, not a partial report."""
    reader = CsvReader(DATA)
    with pytest.raises(RuntimeError, match="iterated to the end"):
        _ = reader.report
    iterator = iter(reader)
    next(iterator)
    with pytest.raises(RuntimeError, match="iterated to the end"):
        _ = reader.report


def test_a_reader_is_iterated_once() -> None:
    """A second iteration would need the source again: refused."""
    reader = CsvReader(DATA)
    list(reader)
    with pytest.raises(RuntimeError, match="only once"):
        iter(reader)


def test_a_file_is_closed_when_reading_stops_early(tmp_path: Path) -> None:
    """Dropping a reader half way closes the file it opened."""
    path = tmp_path / "hospitals.csv"
    path.write_bytes(DATA * 3)
    iterator = iter(CsvReader(path, CsvOptions(chunk_size=1)))
    next(iterator)
    iterator.close()  # type: ignore[attr-defined]


@pytest.mark.usefixtures("small_chunks")
def test_tiny_chunks_read_like_one() -> None:
    """Chunk boundaries inside a BOM, a CRLF, a UTF-8 character or a quote change nothing."""
    text = 'name;address\r\n"Hôpital ""É""";"1 rue,\r\n2"\r\nA;B\r\n'
    data = codecs.BOM_UTF8 + text.encode()
    report, rows = read(data)
    assert ([(Code.CONTROL_CHARACTER, 1, 2, "address")], [(2, 4, H("A", "B"))]) == (
        found(report),
        records(rows),
    )
    assert (";", "utf-8-sig") == (report.delimiter, report.encoding)


@pytest.mark.usefixtures("small_chunks")
def test_tiny_chunks_keep_encoding_offsets() -> None:
    """With 5-byte chunks the offset of a bad byte is still absolute."""
    data = "name,address\nÉ,B\n".encode() + b"C,\xc3(\n"
    report, _ = read(data)
    assert [(Code.ENCODING, 2, 3, None)] == found(report)
    assert f"byte {len(data) - 3} " in report.errors[0].message


def test_duplicates_survive_a_growing_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 16-slot table (grown four times here) every duplicate is still found once."""
    monkeypatch.setattr(_duplicates, "_SLOTS", 16)
    names = [f"H{i}" for i in range(300)] + ["h5", "H299", "h 1 0 0", "H5"]
    data = "".join(f"{name},A\n" for name in names).encode()
    report, rows = read(data)
    assert [(301, 301, 6), (302, 302, 300), (304, 304, 6)] == [
        (f.row, f.line, int(f.message.split("row ")[1].split(";")[0])) for f in report.warnings
    ]
    assert (304, 304) == (report.total_rows, len(rows))


def test_duplicates_past_max_findings_are_counted() -> None:
    """A thousand copies of one row: the first few warnings are kept, all are counted."""
    data = b"name,address\n" + b"A,B\n" * 1000
    report, _ = read(data, CsvOptions(max_findings=5))
    assert ([2, 3, 4, 5, 6], 999, True) == (
        [f.row for f in report.warnings],
        report.warning_count,
        report.valid,
    )


def test_a_bad_line_before_an_undecodable_byte_is_reported_whatever_the_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by Hypothesis: a malformed first line followed by a byte ASCII cannot
    decode was reported when the file came in small chunks, and swallowed when the bad
    byte was in the same chunk (the cut at the bad byte took the blame)."""
    from hospital_bulk.csv import _text

    data, options = b'"" \n\xff', CsvOptions(encoding="ascii")
    whole, _ = read_csv(data, options)
    monkeypatch.setattr(_text, "CHUNK_BYTES", 1)
    chunked, _ = read_csv(data, options)

    assert ["malformed_csv", "encoding"] == [finding.code for finding in whole.errors]
    assert whole == chunked
