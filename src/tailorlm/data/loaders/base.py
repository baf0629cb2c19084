"""What every loader shares: errors that name file/line/field, streaming readers, the base class.

Readers never hold a whole file: lines are read one at a time from a plain or
gzip file (told apart by the magic bytes ``1f 8b``, not by the extension), while
the raw bytes are counted for progress and hashed (sha256) on the way through.

A loader turns one *unit* of input (a JSON line, a CSV row, a LaMP question, a
Persona-Chat line) into a list of records before yielding any of them, so a
malformed unit either stops the load (the default) or is skipped whole
(``skip_bad``): a half-converted unit never reaches the store.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from pydantic import BaseModel, ValidationError

from tailorlm.data.records import Record

__all__ = [
    "ByteTracker",
    "LoadError",
    "LoadReport",
    "Loader",
    "Where",
    "build",
    "count_lines",
    "format_rating",
    "iter_csv",
    "iter_delimited",
    "iter_json_array",
    "open_binary",
    "open_text",
    "parse_json_line",
]

GZIP_MAGIC = b"\x1f\x8b"
MAX_ERRORS_KEPT = 20


# -- errors and reports ----------------------------------------------------------------


class LoadError(ValueError):
    """Malformed input, with where it is.

    ``str(err)`` reads ``reviews.json.gz:17: field 'overall': must be a number, got 'five'``.

    Attributes:
        file: the path of the file as given to the loader.
        line: 1-based line number (for CSV: the physical line the row starts on), or None.
        field: the source field or column at fault, or None when the whole line is bad.
        message: what is wrong, without the location.
        recoverable: False when reading cannot go on past the error (a corrupt gzip
            stream, broken JSON inside an array); ``skip_bad`` cannot skip those.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        recoverable: bool = True,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.message = message
        self.recoverable = recoverable
        super().__init__(str(self))

    def __str__(self) -> str:
        where = Path(self.file).name if self.file else "<input>"
        if self.line is not None:
            where += f":{self.line}"
        what = f"field {self.field!r}: {self.message}" if self.field else self.message
        return f"{where}: {what}"

    def __reduce__(self) -> Any:  # keep keyword-only attributes through pickling
        return (_rebuild_error, (self.message, self.file, self.line, self.field, self.recoverable))


def _rebuild_error(message: str, file: str | None, line: int | None, fld: str | None, rec: bool) -> LoadError:
    return LoadError(message, file=file, line=line, field=fld, recoverable=rec)


@dataclass
class LoadReport:
    """What one ``load_dataset`` call did.

    ``records`` counts records handed to the store (upserts included); ``added`` is
    ``store.counts()`` after minus before, per table, so a second load of the same
    file adds nothing. ``skipped`` counts malformed units left out under
    ``skip_bad`` (their first 20 messages are in ``errors``); ``duplicates`` counts
    units a loader dropped on purpose (e.g. a second Amazon review of the same item
    by the same reviewer). ``sha256`` is the file's hash, or for a multi-file
    dataset the hash of its ``sha256sum``-style manifest (sorted by file name).
    """

    source: str
    path: str
    records: int
    skipped: int
    errors: list[str]
    added: dict[str, int]
    seconds: float
    sha256: str | None
    duplicates: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.inf


@dataclass(frozen=True, slots=True)
class Where:
    """A location in the input, to raise errors from."""

    file: str
    line: int | None = None

    def error(self, message: str, field: str | None = None, *, recoverable: bool = True) -> LoadError:
        return LoadError(message, file=self.file, line=self.line, field=field, recoverable=recoverable)


# -- coercion helpers ---------------------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def build(cls: type[BaseModel], at: Where, names: Mapping[str, str] | None = None, /, **kwargs: Any) -> Any:
    """``cls(**kwargs)``, turning a pydantic ValidationError into a LoadError.

    ``names`` maps record fields to the source field they came from, so the error
    names what the user sees in their file (``overall``, not ``rating``).
    """
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = err.get("loc") or ()
        rec_field = str(loc[0]) if loc else None
        src = (names or {}).get(rec_field, rec_field) if rec_field else None
        if len(loc) > 1 and src:
            src += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        msg = err.get("msg", "invalid value")
        if "input" in err and err.get("type") != "missing" and not isinstance(err["input"], dict):
            msg += f", got {_show(err['input'])}"
        raise at.error(msg, src) from None


def as_str(value: Any, at: Where, name: str, *, required: bool = True, empty_ok: bool = True) -> str | None:
    """A string field: ints are accepted (ids often are numbers), other types are errors."""
    if value is None or (isinstance(value, str) and not value.strip() and not empty_ok):
        if required:
            raise at.error("missing" if value is None else "must not be empty", name)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise at.error(f"must be a string, got {_show(value)}", name)


def as_float(value: Any, at: Where, name: str, *, required: bool = True) -> float | None:
    """A number: JSON numbers or numeric strings; bools, NaN and text are errors."""
    if value is None or value == "":
        if required:
            raise at.error("missing", name)
        return None
    if isinstance(value, bool):
        raise at.error(f"must be a number, got {_show(value)}", name)
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise at.error(f"must be a number, got {_show(value)}", name) from None
    else:
        raise at.error(f"must be a number, got {_show(value)}", name)
    if not math.isfinite(out):
        raise at.error(f"must be a finite number, got {_show(value)}", name)
    return out


def as_int(value: Any, at: Where, name: str, *, required: bool = True) -> int | None:
    out = as_float(value, at, name, required=required)
    if out is None:
        return None
    if not out.is_integer():
        raise at.error(f"must be a whole number, got {_show(value)}", name)
    return int(out)


def format_rating(value: float) -> str:
    """``5.0 -> '5'``, ``3.5 -> '3.5'``: the target string of rating tasks."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_json_line(line: str, at: Where) -> dict[str, Any]:
    """One JSON object from one line, or a LoadError naming the line and column."""
    try:
        obj = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        raise at.error(f"bad JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise at.error("bad JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise at.error(f"expected a JSON object, got {type(obj).__name__}")
    return obj


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


_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


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


def count_lines(path: str | Path) -> int:
    """Number of lines of a plain or gzip file (a last line without newline counts)."""
    n = 0
    last = b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


# -- row and document iterators -----------------------------------------------------------------


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
    file = str(path)
    decoder = json.JSONDecoder()
    udec = codecs.getincrementaldecoder("utf-8")()
    with open_binary(path, tracker=tracker) as f:
        buf = ""
        pos = 0
        line = 1  # line of buf[pos]
        eof = False
        want = chunk_size

        def fill() -> None:
            nonlocal buf, pos, eof, want
            try:
                raw = f.read(want)
            except _GZIP_ERRORS as exc:
                raise LoadError(f"corrupt gzip data: {exc}", file=file, line=line, recoverable=False) from None
            want = min(want * 2, 1 << 26)
            try:
                text = udec.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                at = line + buf.count("\n", pos) + raw.count(b"\n", 0, exc.start)
                raise LoadError(
                    f"invalid UTF-8: {raw[exc.start : exc.start + 4]!r}",
                    file=file,
                    line=at,
                    recoverable=False,
                ) from None
            if not raw:
                eof = True
            if not buf and not pos and text.startswith("\ufeff"):
                text = text[1:]
            buf = buf[pos:] + text
            pos = 0

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                end = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                line += buf.count("\n", pos, end)
                pos = end
                if pos < len(buf) or eof:
                    return
                fill()

        def expect(chars: str, what: str) -> str:
            skip_ws()
            if pos >= len(buf) or buf[pos] not in chars:
                got = buf[pos : pos + 20] if pos < len(buf) else "end of file"
                raise LoadError(
                    f"bad JSON: expected {what}, got {got!r}",
                    file=file,
                    line=line,
                    recoverable=False,
                )
            return buf[pos]

        fill()
        expect("[", "a JSON array '['")
        pos += 1
        first = True
        while True:
            c = expect(']{["-0123456789tfn' if first else "],", "a value or ']'" if first else "',' or ']'")
            if c == "]":
                pos += 1
                skip_ws()
                if pos < len(buf):
                    raise LoadError(
                        f"bad JSON: data after the array: {buf[pos : pos + 20]!r}",
                        file=file,
                        line=line,
                        recoverable=False,
                    )
                return
            if c == ",":
                pos += 1
                skip_ws()
            first = False
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if not eof:
                        fill()
                        continue
                    at = line + buf.count("\n", pos, exc.pos)
                    raise LoadError(f"bad JSON: {exc.msg}", file=file, line=at, recoverable=False) from None
                except RecursionError:
                    raise LoadError("bad JSON: nested too deeply", file=file, line=line, recoverable=False) from None
                if end >= len(buf) and not eof:  # a number may go on in the next chunk
                    fill()
                    continue
                break
            start = line
            line += buf.count("\n", pos, end)
            pos = end
            want = chunk_size  # grow reads only while one element spans them
            yield start, value


# -- the loader base class -----------------------------------------------------------------


OnError = Callable[[LoadError], None]


class Loader:
    """Base class of the dataset loaders.

    Subclasses set ``name`` and ``default_namespace``, take their options as
    keyword-only ``__init__`` arguments and implement :meth:`_records`. Use
    :meth:`iter_records` directly to stream records without a store (it raises
    LoadError on malformed input unless ``on_error`` is given), or
    :func:`tailorlm.data.loaders.load_dataset` to load into one.

    ``namespace``: user and item ids are stored as ``f"{namespace}:{raw_id}"`` so
    several datasets share a store without collisions; ``""`` keeps raw ids;
    ``None`` means the loader's default (the dataset's name).
    """

    name: ClassVar[str] = ""
    default_namespace: ClassVar[str] = ""

    def __init__(self, *, namespace: str | None = None) -> None:
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {type(namespace).__name__}")
        self.namespace = self.default_namespace if namespace is None else namespace
        self.duplicates = 0
        self._on_error: OnError | None = None
        self._tracker: ByteTracker | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r})"

    # -- the API ----------------------------------------------------------------

    def files(self, path: str | Path) -> list[Path]:
        """The files a load of ``path`` reads (for progress totals and the load's sha256)."""
        p = Path(path)
        if p.is_dir():
            raise LoadError(f"{self.name} loader wants a file, got the folder {p}", file=p)
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        return [p]

    def iter_records(
        self,
        path: str | Path,
        *,
        on_error: OnError | None = None,
        tracker: ByteTracker | None = None,
    ) -> Iterator[Record]:
        """Stream the records of ``path``.

        Raises:
            LoadError: malformed input, unless ``on_error`` is given: then each
                recoverable error is passed to it and the bad unit is skipped.
        """
        self.duplicates = 0
        self._on_error = on_error
        self._tracker = tracker
        yield from self._records(Path(path))

    # -- for subclasses -------------------------------------------------------------

    def _records(self, path: Path) -> Iterator[Record]:  # pragma: no cover - abstract
        raise NotImplementedError

    def uid(self, raw: str) -> str:
        return f"{self.namespace}:{raw}" if self.namespace else raw

    iid = uid

    def _reject(self, err: LoadError) -> None:
        """Raise ``err``, or hand it to ``on_error`` (skip_bad) when it can be skipped."""
        if self._on_error is None or not err.recoverable:
            raise err
        self._on_error(err)

    def _open(self, path: Path, *, encoding: str = "utf-8", strict: bool = True) -> TextLines:
        return open_text(path, encoding=encoding, tracker=self._tracker, strict=strict)

    def _lines(self, lines: TextLines) -> Iterator[tuple[int, str]]:
        """(line number, text) of non-blank lines; undecodable lines go to :meth:`_reject`."""
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except LoadError as exc:
                self._reject(exc)
                continue
            if line.strip():
                yield lines.lineno, line

    def _delimited(self, lines: TextLines, sep: str) -> Iterator[tuple[int, list[str]]]:
        for n, line in self._lines(lines):
            yield n, line.rstrip("\r\n").split(sep)
