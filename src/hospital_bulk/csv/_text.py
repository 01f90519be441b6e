"""From bytes to physical lines: encoding detection, incremental decoding, line splitting.

The csv module counts one line for every string it pulls from its input, so handing
it exactly one physical line per string makes ``reader.line_num`` a physical line
number, quoted newlines included. Only ``\\r\\n``, ``\\r`` and ``\\n`` end a line
(as for csv); ``str.splitlines`` also breaks at form feeds, U+2028 and a few more,
so a chunk holding one of those is split by a slower regex instead.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections.abc import Callable, Generator, Iterator
from typing import BinaryIO

import attrs

CHUNK_BYTES = 1 << 20
# A longer line is not kept in memory: it could only hold a field far over any limit,
# and a file without line breaks must not be read into memory whole.
MAX_LINE_CHARS = 1 << 20
# Stands in for such a line; the NULs keep it from ever passing as data.
OVERLONG_LINE = "\x00line too long\x00"

Source = bytes | BinaryIO | os.PathLike[str]

# (BOM, the encoding reported, the codec that decodes what follows the BOM)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
#: Encodings whose own decoders insist on a BOM: the BOM picks the byte order, and
#: without one the file is read little-endian (as ``bytes.decode`` does, and Excel writes).
_BOM_FAMILIES = {
    "utf-16": ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")),
    "utf-32": ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be")),
}
_LONGEST_BOM = len(codecs.BOM_UTF32_LE)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
#: The default: UTF-8, or what a byte order mark says (UTF-8 with a BOM, UTF-16).
DEFAULT_ENCODING = "utf-8"
#: How much of the line holding an undecodable byte is kept, before it (characters)
#: and from it on (bytes), to show that line read in another encoding.
_SAMPLE = 100


def encoding_name(encoding: str) -> str:
    """Python's own name of the text encoding ``encoding`` (``latin-1`` is ``iso8859-1``).

    Raises :class:`ValueError` for a name Python does not know, or one of a codec that
    does not turn bytes into text (``base64``). ``utf-8-sig`` is the default's
    ``utf-8``: both drop a BOM.
    """
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str, not {type(encoding).__name__}")
    try:
        name = codecs.lookup(encoding).name
        # LookupError for bytes-to-bytes and text-to-text codecs (an empty input is
        # not checked); UnicodeError for "undefined", which refuses everything.
        b"x".decode(name, "ignore")
    except (LookupError, UnicodeError):
        raise ValueError(
            f"unknown encoding {encoding!r}: give a text encoding Python knows, such as"
            " utf-8, cp1252 (Excel on Windows), latin-1 or utf-16"
        ) from None
    return DEFAULT_ENCODING if name == "utf-8-sig" else name


def delimiter_char(delimiter: str) -> str:
    """``delimiter`` as the one character it names (``tab`` or ``\\t`` is a tab).

    Raises :class:`ValueError` for anything the reader cannot split rows at: more than
    one character, a quote, a line break, a space, a letter or a digit.
    """
    if not isinstance(delimiter, str):
        raise TypeError(f"delimiter must be a str, not {type(delimiter).__name__}")
    char = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
    if len(char) != 1:
        raise ValueError(
            f"delimiter {delimiter!r} is not one character: give one, such as ';' or '|', or 'tab'"
        )
    if char == '"' or char.isalnum() or (char.isspace() and char != "\t") or char == "\x00":
        raise ValueError(
            f"delimiter {delimiter!r} cannot separate values: it must not be a quote, a"
            " letter, a digit, a space or a line break"
        )
    return char


@attrs.frozen
class DecodeFailure:
    """Where decoding stopped. ``offset`` counts bytes from the start of the file, BOM included."""

    offset: int
    line: int
    bad_bytes: bytes
    reason: str
    #: The line holding the bad byte: its end of the text before the byte, and the
    #: bytes from the bad one to the line's end, each cut to a hundred or so.
    before: str = ""
    after: bytes = b""


def _byte_chunks(source: Source) -> Generator[bytes, None, None]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source).cast("B")
        for start in range(0, len(data), CHUNK_BYTES):
            yield bytes(data[start : start + CHUNK_BYTES])
    elif isinstance(source, os.PathLike):
        with open(source, "rb") as file:
            yield from _read(file)
    else:
        yield from _read(source)


def sha256_of(source: Source) -> str:
    """The SHA-256 of a source's bytes, in hex, read in chunks."""
    if isinstance(source, str):
        raise TypeError(
            "a str is ambiguous: pass a pathlib.Path for a file name or bytes for the content"
        )
    digest = hashlib.sha256()
    for chunk in _byte_chunks(source):
        digest.update(chunk)
    return digest.hexdigest()


def _read(file: BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        yield bytes(chunk)


def _hashed(
    chunks: Generator[bytes, None, None], update: Callable[[bytes], None]
) -> Generator[bytes, None, None]:
    try:
        for chunk in chunks:
            update(chunk)
            yield chunk
    finally:
        chunks.close()


def split_lines(text: str, plain: bool = False) -> list[str]:
    """``text`` cut after each ``\\r\\n``, ``\\r`` or ``\\n``; the last piece may be unended.

    ``plain`` says the text is known to hold none of the other characters
    ``str.splitlines`` breaks at, so its result needs no check.
    """
    lines = text.splitlines(keepends=True)
    if plain:
        return lines
    breaks = text.count("\n")
    if "\r" in text:
        breaks += text.count("\r") - text.count("\r\n")
    unended = 1 if text and text[-1] not in "\r\n" else 0
    if len(lines) != breaks + unended:
        return _LINE.findall(text)
    return lines


def _plain_utf8(data: bytes) -> bool:
    """Whether ``data`` encodes none of the characters besides CR and LF that
    ``str.splitlines`` breaks at. Searching bytes for a byte is a memchr, far faster
    than counting line breaks in the decoded text."""
    if any(byte in data for byte in (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")):
        return False
    if b"\xc2" in data and b"\xc2\x85" in data:
        return False
    return not (b"\xe2" in data and (b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data))


def _line_end(text: str) -> int:
    """The index just past the first line break of ``text``, or -1."""
    lf = text.find("\n")
    cr = text.find("\r", 0, lf if lf >= 0 else len(text))
    if cr >= 0:
        return cr + 2 if text.startswith("\n", cr + 1) else cr + 1
    return lf + 1 if lf >= 0 else -1


class TextLines:
    """Iterating yields lists of complete physical lines, each with its line break.

    Reading stops before the first byte that cannot be decoded; ``failure`` then says
    where it is. ``encoding`` is known once the first list was yielded. With the default
    ``encoding`` (``utf-8``) a byte order mark may say UTF-16 instead; any other
    encoding (a name :func:`encoding_name` gave) is taken as it is. ``sha256`` is the
    digest of every byte read so far: of the whole file once iterated to the end.
    """

    def __init__(self, source: Source, encoding: str = DEFAULT_ENCODING) -> None:
        if isinstance(source, str):
            raise TypeError(
                "a str is ambiguous: pass a pathlib.Path for a file name or bytes for the content"
            )
        self._digest = hashlib.sha256()
        self._chunks = _hashed(_byte_chunks(source), self._digest.update)
        self.encoding = encoding
        self.failure: DecodeFailure | None = None
        self._emitted = 0
        self._carry = ""
        self._carry_plain = True
        self._overlong = False

    def close(self) -> None:
        self._chunks.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def __iter__(self) -> Iterator[list[str]]:
        head = b""
        for chunk in self._chunks:
            head += chunk
            if len(head) >= _LONGEST_BOM:
                break
        codec, fed = self.encoding, 0
        if codec == DEFAULT_ENCODING:
            for bom, encoding, bom_codec in _BOMS:
                if head.startswith(bom):
                    self.encoding, codec, fed = encoding, bom_codec, len(bom)
                    break
        elif family := _BOM_FAMILIES.get(codec):
            codec = family[0][1]
            for bom, bom_codec in family:
                if head.startswith(bom):
                    codec, fed = bom_codec, len(bom)
                    break
        decoder = codecs.getincrementaldecoder(codec)()
        data, final, held_cr = head[fed:], not head, ""
        while True:
            held_bytes = decoder.getstate()[0]
            pending = len(held_bytes)
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                good = bytes(exc.object[: exc.start]).decode(codec, "replace")
                # Only the lines before the bad one are handed on: the bad one is cut.
                lines = self._lines(held_cr + good, final=False)
                failure = DecodeFailure(
                    offset=fed - pending + exc.start,
                    line=self._emitted + 1,
                    bad_bytes=bytes(exc.object[exc.start : exc.end]),
                    reason=exc.reason,
                    before=self._carry[-_SAMPLE:],
                    after=self._line_rest(bytes(exc.object[exc.start :])),
                )
                # Known only once the whole lines before it are read, as when they came
                # in chunks of their own: a fault of theirs is theirs, not the cut's.
                if lines:
                    yield lines
                self.failure = failure
                return
            except UnicodeError as exc:
                # Not a bad byte but a stateful codec refusing the stream (none we know of
                # after the BOM families above): report it where this chunk began.
                lines = self._lines(held_cr, final=False)
                failure = DecodeFailure(
                    offset=fed - pending,
                    line=self._emitted + 1,
                    bad_bytes=b"",
                    reason=str(exc),
                )
                if lines:
                    yield lines
                self.failure = failure
                return
            fed += len(data)
            # A character cut by the chunk boundary is checked whole.
            plain = codec == "utf-8" and _plain_utf8(data) and _plain_utf8(held_bytes + data[:3])
            text, held_cr = held_cr + text, ""
            # A final "\r" may be the first half of "\r\n": keep it for the next chunk.
            if not final and text.endswith("\r"):
                text, held_cr = text[:-1], "\r"
            if lines := self._lines(text, final, plain):
                yield lines
            if final:
                return
            data = next(self._chunks, b"")
            final = not data

    def _line_rest(self, data: bytes) -> bytes:
        """``data`` and the bytes after it up to the end of its line, at most ``_SAMPLE``:
        the same whatever the chunks. Line breaks are bytes of their own only in
        encodings like UTF-8, the one this is for."""
        while not any(end in data for end in b"\r\n") and len(data) < _SAMPLE:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            data += chunk
        ends = [found for end in (b"\r", b"\n") if (found := data.find(end)) >= 0]
        return data[: min([*ends, _SAMPLE])]

    def _lines(self, text: str, final: bool, plain: bool = False) -> list[str]:
        head = []
        if self._overlong:
            end = _line_end(text)
            if end < 0 and not final:
                return []
            head.append(OVERLONG_LINE + "\n")
            text = text[end:] if end >= 0 else ""
            self._overlong = False
        if self._carry:
            # The unended line carried over was checked as part of earlier chunks.
            text, plain = self._carry + text, plain and self._carry_plain
        lines = split_lines(text, plain)
        self._carry, self._carry_plain = "", plain
        if lines and not final and lines[-1][-1] not in "\r\n":
            self._carry = lines.pop()
            if len(self._carry) > MAX_LINE_CHARS:
                self._carry, self._overlong = "", True
        if head:
            lines[:0] = head
        self._emitted += len(lines)
        return lines


def sniff_delimiter(line: str) -> str:
    """The most frequent of ``,``, ``;`` and tab outside quotes; ties and none go to ``,``."""
    counts = dict.fromkeys(",;\t", 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return max(counts, key=lambda delimiter: counts[delimiter])


_SAVE_AS_UTF8 = "Save the file as UTF-8 (in Excel: 'CSV UTF-8')"


def decode_failure_message(failure: DecodeFailure, encoding: str, asked: str) -> str:
    """What went wrong, and what to do: for a file that is not UTF-8, the encoding that
    reads it (Excel on Windows saves "CSV" in cp1252), with its line read that way.

    ``encoding`` is the one read, ``asked`` the one the options named (the default may
    have read UTF-16 by its BOM).
    """
    where = f"byte {failure.offset:,} (line {failure.line})"
    stopped = f"{where} cannot be decoded ({failure.reason}); reading stopped there."
    if asked != DEFAULT_ENCODING:
        return (
            f"the file is not valid {asked}: {stopped} Check that {asked} is the file's"
            " encoding, or save the file as UTF-8 (in Excel: 'CSV UTF-8')"
        )
    if encoding == "utf-16":
        return f"the file is not valid UTF-16: {stopped} {_SAVE_AS_UTF8}"
    guess = "cp1252"
    try:
        after = failure.after.decode(guess)
    except UnicodeDecodeError:
        # Bytes cp1252 leaves undefined: latin-1 reads any byte.
        guess, after = "latin-1", failure.after.decode("latin-1")
    shown = (failure.before + after).strip()
    reads = f" (line {failure.line} then reads {_cut(shown)!r})" if shown else ""
    return (
        f"the file is not valid UTF-8: {stopped} {_SAVE_AS_UTF8}, or pass encoding={guess}"
        f" if that is how it was saved{reads}"
    )


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
