"""Streaming reads for the loaders: bytes (plain or gzip), text lines, CSV rows, JSON arrays.

Readers never hold a whole file: lines are read one at a time from a plain or
gzip file (told apart by the magic bytes ``1f 8b``, not by the extension), while
the raw bytes are counted for progress and hashed (sha256) on the way through.
A top-level JSON array is decoded one element at a time.

What this module leaves out: what the values mean (``_coerce`` and each format's
loader) and whether a bad line stops the load (``Loader._reject`` in ``base``).
Every error raised here is a :class:`LoadError` naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tailorlm.data.loaders._errors import LoadError

__all__ = [
    "GZIP_MAGIC",
    "ByteTracker",
    "TextLines",
    "count_lines",
    "iter_csv",
    "iter_delimited",
    "iter_json_array",
    "open_binary",
    "open_text",
]

GZIP_MAGIC = b"\x1f\x8b"

# What a truncated or corrupt gzip stream raises while being read.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


# -- byte-level reading: progress, hashing, gzip ---------------------------------------------


class ByteTracker:
    """Counts raw bytes read across a load's files, reports progress, keeps each file's sha256."""

    def __init__(
        self,
        total: int = 0,
        callback: Callable[[int, int], None] | None = None,
        *,
        every: int = 1 << 18,
    ) -> None:
        self.total = total
        self.read = 0
        self.callback = callback
        self.every = every
        self._next = every
        self.hashes: dict[str, str] = {}

    def add(self, n: int) -> None:
        self.read += n
        if self.callback is not None and self.read >= self._next:
            self._next = self.read + self.every
            self.callback(self.read, max(self.total, self.read))

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.read, max(self.total, self.read))


class _CountingRaw(io.RawIOBase):
    """A raw file that counts and hashes every byte it hands out."""

    def __init__(self, path: Path, tracker: ByteTracker | None) -> None:
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._path = str(path)
        self._tracker = tracker
        self._sha = hashlib.sha256()
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        if n:
            self._sha.update(memoryview(b)[:n])
            if self._tracker is not None:
                self._tracker.add(n)
        elif n == 0:
            self._eof = True
        return n or 0

    def close(self) -> None:
        if not self.closed:
            # Only a file read to the end has a meaningful hash; the registry hashes the rest.
            if self._eof and self._tracker is not None:
                self._tracker.hashes[self._path] = self._sha.hexdigest()
            self._f.close()
        super().close()


def open_binary(path: str | Path, *, tracker: ByteTracker | None = None) -> BinaryIO:
    """Open ``path`` for reading bytes, transparently gunzipping when it starts with 1f 8b."""
    buffered = io.BufferedReader(_CountingRaw(Path(path), tracker), buffer_size=1 << 16)
    try:
        magic = buffered.peek(2)[:2]
    except BaseException:
        buffered.close()
        raise
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]


def count_lines(path: str | Path) -> int:
    """Number of lines of a plain or gzip file (a last line without newline counts)."""
    n = 0
    last = b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


# -- text lines -----------------------------------------------------------------------------


class TextLines:
    """Decoded lines of a plain or gzip file, one at a time, with the current line number.

    ``strict=True``: a line that is not valid in ``encoding`` raises a recoverable
    LoadError from ``__next__`` (iteration can go on with the next line).
    ``strict=False``: the line is decoded with replacement characters and its
    problem is kept in ``bad_lines`` (line -> message) for the caller to report,
    which CSV parsing needs because a row may span several lines.
    Lines keep their line ending.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        encoding: str = "utf-8",
        tracker: ByteTracker | None = None,
        strict: bool = True,
    ) -> None:
        self.path = str(path)
        self.encoding = encoding
        self.strict = strict
        self.lineno = 0
        self.bad_lines: dict[int, str] = {}
        self._stream = open_binary(path, tracker=tracker)
        self._first = True

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> TextLines:
        return self

    def __next__(self) -> str:
        try:
            raw = self._stream.readline()
        except _GZIP_ERRORS as exc:
            raise LoadError(
                f"corrupt gzip data: {exc}", file=self.path, line=self.lineno + 1, recoverable=False
            ) from None
        if not raw:
            raise StopIteration
        self.lineno += 1
        if self._first:
            self._first = False
            if raw.startswith(codecs.BOM_UTF8) and self.encoding.replace("-", "").lower() == "utf8":
                raw = raw[len(codecs.BOM_UTF8) :]
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 4]
            msg = f"invalid {self.encoding.upper()} at byte {exc.start + 1} of the line: {bad!r}"
            if self.strict:
                raise LoadError(msg, file=self.path, line=self.lineno) from None
            self.bad_lines[self.lineno] = msg
            return raw.decode(self.encoding, errors="replace")


def open_text(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    tracker: ByteTracker | None = None,
    strict: bool = True,
) -> TextLines:
    """Lines of a plain or gzip text file (see :class:`TextLines`); use as a context manager."""
    return TextLines(path, encoding=encoding, tracker=tracker, strict=strict)


# -- rows -------------------------------------------------------------------------------------


def iter_delimited(lines: TextLines, sep: str) -> Iterator[tuple[int, list[str]]]:
    """Unquoted delimited lines (MovieLens, RecBole): (line number, fields); blank lines skipped.

    Decoding errors propagate from ``lines`` as recoverable LoadErrors; catch them per line.
    """
    for line in lines:
        s = line.rstrip("\r\n")
        if s.strip():
            yield lines.lineno, s.split(sep)


def iter_csv(
    lines: TextLines, *, delimiter: str = ",", on_error: Callable[[LoadError], None]
) -> Iterator[tuple[int, list[str]]]:
    """Quoted CSV rows with the physical line each starts on; blank rows skipped.

    ``lines`` must be opened with ``strict=False``: a row touching an undecodable
    line is reported to ``on_error`` (which raises or records it) instead of yielded.
    """

    def feed() -> Iterator[str]:
        yield from lines

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    while True:
        start = lines.lineno + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            on_error(LoadError(f"bad CSV: {exc}", file=lines.path, line=start))
            continue
        if lines.bad_lines:
            bad = [n for n in lines.bad_lines if start <= n <= lines.lineno]
            if bad:
                msg = lines.bad_lines[bad[0]]
                for n in bad:
                    del lines.bad_lines[n]
                on_error(LoadError(msg, file=lines.path, line=bad[0]))
                continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield start, row


# -- JSON arrays --------------------------------------------------------------------------------


_WS = re.compile(r"[ \t\n\r]*")


def iter_json_array(
    path: str | Path, *, tracker: ByteTracker | None = None, chunk_size: int = 1 << 16
) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array, one at a time: (line the element starts on, value).

    Reads the file in chunks and decodes one element at a time with
    ``json.JSONDecoder.raw_decode``, so memory is one element (e.g. one LaMP
    question with its profile) plus a read buffer, not the whole file. An element
    that does not parse is not recoverable (the array cannot be resynchronised).
    """
    with open_binary(path, tracker=tracker) as f:
        yield from _JsonArrayReader(f, str(path), chunk_size).elements()


class _JsonArrayReader:
    """One streaming parse of a JSON array: the decoded text not yet consumed, and where we are.

    ``buf[pos:]`` is text read but not parsed yet; ``line`` is the line of ``buf[pos]``.
    Reads double in size while one element spans them (a number or string may go
    on in the next chunk) and shrink back after each element.
    """

    def __init__(self, f: BinaryIO, file: str, chunk_size: int) -> None:
        self._f = f
        self._file = file
        self._chunk_size = chunk_size
        self._want = chunk_size
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def elements(self) -> Iterator[tuple[int, Any]]:
        self._fill()
        self._expect("[", "a JSON array '['")
        self.pos += 1
        first = True
        while True:
            c = self._expect(']{["-0123456789tfn' if first else "],", "a value or ']'" if first else "',' or ']'")
            if c == "]":
                self._end_of_array()
                return
            if c == ",":
                self.pos += 1
                self._skip_ws()
            first = False
            yield self._value()

    def _error(self, message: str, line: int | None = None) -> LoadError:
        return LoadError(message, file=self._file, line=self.line if line is None else line, recoverable=False)

    def _fill(self) -> None:
        """Append the next chunk of decoded text to the unparsed rest of the buffer."""
        try:
            raw = self._f.read(self._want)
        except _GZIP_ERRORS as exc:
            raise self._error(f"corrupt gzip data: {exc}") from None
        self._want = min(self._want * 2, 1 << 26)
        try:
            text = self._utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            at = self.line + self.buf.count("\n", self.pos) + raw.count(b"\n", 0, exc.start)
            raise self._error(f"invalid UTF-8: {raw[exc.start : exc.start + 4]!r}", at) from None
        if not raw:
            self.eof = True
        if not self.buf and not self.pos and text.startswith("\ufeff"):
            text = text[1:]
        self.buf = self.buf[self.pos :] + text
        self.pos = 0

    def _skip_ws(self) -> None:
        while True:
            end = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            self.line += self.buf.count("\n", self.pos, end)
            self.pos = end
            if self.pos < len(self.buf) or self.eof:
                return
            self._fill()

    def _expect(self, chars: str, what: str) -> str:
        """The next non-blank character, which must be one of ``chars``."""
        self._skip_ws()
        if self.pos >= len(self.buf) or self.buf[self.pos] not in chars:
            got = self.buf[self.pos : self.pos + 20] if self.pos < len(self.buf) else "end of file"
            raise self._error(f"bad JSON: expected {what}, got {got!r}")
        return self.buf[self.pos]

    def _end_of_array(self) -> None:
        """Consume the closing ``]``; only whitespace may follow it."""
        self.pos += 1
        self._skip_ws()
        if self.pos < len(self.buf):
            raise self._error(f"bad JSON: data after the array: {self.buf[self.pos : self.pos + 20]!r}")

    def _value(self) -> tuple[int, Any]:
        """Decode the element at ``pos``, reading more until it is complete: (its line, value)."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if not self.eof:
                    self._fill()
                    continue
                raise self._error(f"bad JSON: {exc.msg}", self.line + self.buf.count("\n", self.pos, exc.pos)) from None
            except RecursionError:
                raise self._error("bad JSON: nested too deeply") from None
            if end >= len(self.buf) and not self.eof:  # a number may go on in the next chunk
                self._fill()
                continue
            break
        start = self.line
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        self._want = self._chunk_size  # grow reads only while one element spans them
        return start, value
