"""The dataset loader base class, and the names every loader shares.

A loader turns one *unit* of input (a JSON line, a CSV row, a LaMP question, a
Persona-Chat line) into a list of records before yielding any of them, so a
malformed unit either stops the load (the default) or is skipped whole
(``skip_bad``): a half-converted unit never reaches the store.

What this module leaves out, each in its own private module and re-exported here
so ``from tailorlm.data.loaders.base import ...`` keeps working: the error type
(``_errors``), value coercion (``_coerce``) and the streaming readers (``_io``).
Format detection and ``load_dataset`` are in ``registry``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tailorlm.data.loaders._coerce import as_float, as_int, as_str, build, format_rating, parse_json_line
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import (
    GZIP_MAGIC,
    ByteTracker,
    TextLines,
    count_lines,
    iter_csv,
    iter_delimited,
    iter_json_array,
    open_binary,
    open_text,
)
from tailorlm.data.records import Record

__all__ = [
    "GZIP_MAGIC",
    "MAX_ERRORS_KEPT",
    "ByteTracker",
    "LoadError",
    "LoadReport",
    "Loader",
    "OnError",
    "TextLines",
    "Where",
    "as_float",
    "as_int",
    "as_str",
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

# How many skipped units' messages a LoadReport keeps (``skip_bad``); the rest are only counted.
MAX_ERRORS_KEPT = 20


@dataclass
class LoadReport:
    """What one ``load_dataset`` call did.

    ``records`` counts records handed to the store (upserts included); ``added`` is
    ``store.counts()`` after minus before, per table, so a second load of the same
    file adds nothing. ``skipped`` counts malformed units left out under
    ``skip_bad`` (their first 20 messages are in ``errors``); ``duplicates`` counts
    units a loader dropped on purpose (e.g. a second Amazon review of the same item
    by the same reviewer); ``dropped_fields`` counts optional fields a loader left
    out of a kept record because they did not parse (only when asked to, e.g.
    LaMP's ``drop_bad_optional``). ``sha256`` is the file's hash, or for a multi-file
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
    dropped_fields: int = 0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.inf


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
        self.dropped_fields = 0  # optional fields left out of kept records (see LoadReport)
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
        self.dropped_fields = 0
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
