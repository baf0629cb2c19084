"""The loaders' error: malformed input, naming the file, line and field at fault.

:class:`LoadError` is a :class:`tailorlm.errors.DataError` (so also a ``ValueError``)
that carries where the problem is; :class:`Where` is a location to raise one from.

What this module leaves out: deciding whether an error stops a load or is skipped
(``Loader._reject`` in ``base``) and counting skipped units (``load_dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailorlm.errors import DataError

__all__ = ["LoadError", "Where"]


class LoadError(DataError):
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


@dataclass(frozen=True, slots=True)
class Where:
    """A location in the input, to raise errors from."""

    file: str
    line: int | None = None

    def error(self, message: str, field: str | None = None, *, recoverable: bool = True) -> LoadError:
        return LoadError(message, file=self.file, line=self.line, field=field, recoverable=recoverable)
