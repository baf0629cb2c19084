"""Your own data: JSON lines or CSV, one record per line/row, with a field mapping.

Options (both loaders):

- ``record``: ``"document"`` (default), ``"interaction"``, ``"preference"``,
  ``"user"``, ``"item"`` or ``"example"`` (a TaskExample);
- ``mapping``: ``{record field: source column}``; fields not named map to the
  column of the same name (identity), e.g. ``{"user_id": "author", "text": "body"}``.
  JSON sources may use dotted paths (``"meta.author"``);
- ``defaults``: constant values for fields the source lacks, e.g. ``{"doc_kind": "post"}``;
- ``extras``: ``True`` (default) puts the columns that no field used into the
  record's ``metadata`` (documents, interactions, examples) or ``attributes``
  (users, items); ``False`` ignores them;
- ``namespace``: default ``""`` (your ids are kept as they are); a non-empty
  namespace prefixes user and item ids as in the dataset loaders;
- CSV only: ``delimiter`` (default ``","``, or TAB for ``.tsv`` files).

In CSV an empty cell is a missing value, and a ``metadata``/``attributes`` cell
must hold a JSON object. Values are validated by the record models; an error
names the line and the *source* column. An ``example`` without ``example_id``
gets one derived from (task, input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import build, parse_json_line
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import iter_csv
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import (
    Document,
    Interaction,
    Item,
    Preference,
    Record,
    TaskExample,
    User,
    content_id,
)

__all__ = ["RECORD_TYPES", "CsvLoader", "JsonlLoader"]

RECORD_TYPES: dict[str, type] = {
    "document": Document,
    "interaction": Interaction,
    "preference": Preference,
    "user": User,
    "item": Item,
    "example": TaskExample,
}

_MISSING = object()
_ID_FIELDS = ("user_id", "item_id", "doc_id", "interaction_id", "pref_id", "example_id")


class _MappedLoader(Loader):
    default_namespace = ""

    def __init__(
        self,
        *,
        namespace: str | None = None,
        record: str = "document",
        mapping: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        extras: bool = True,
    ) -> None:
        super().__init__(namespace=namespace)
        if record not in RECORD_TYPES:
            raise ValueError(f"record must be one of {', '.join(RECORD_TYPES)}, got {record!r}")
        self.record = record
        self.cls = RECORD_TYPES[record]
        self.fields = [f for f in self.cls.model_fields if f != "kind"]
        mapping = dict(mapping or {})
        for what, given in (("mapping", mapping), ("defaults", defaults or {})):
            unknown = [k for k in given if k not in self.fields]
            if unknown:
                raise ValueError(
                    f"{what}: {record} records have no field {unknown[0]!r} (fields: {', '.join(self.fields)})"
                )
        for k, v in mapping.items():
            if not isinstance(v, str) or not v:
                raise ValueError(f"mapping[{k!r}] must be a column name, got {v!r}")
        self.mapping = {f: mapping.get(f, f) for f in self.fields}
        self.defaults = dict(defaults or {})
        self.extras = extras
        self.bag = "attributes" if record in ("user", "item") else "metadata" if record != "preference" else None
        self._names = dict(self.mapping)

    def _convert(self, at: Where, src: Mapping[str, Any], *, csv: bool) -> Record:
        kw: dict[str, Any] = dict(self.defaults)
        used: set[str] = set()
        for f, col in self.mapping.items():
            v = _get(src, col)
            if v is _MISSING:
                continue
            used.add(col.split(".", 1)[0] if col not in src else col)
            if csv and v == "":
                continue
            if f == self.bag and isinstance(v, str):
                try:
                    v = json.loads(v)
                except json.JSONDecodeError as exc:
                    raise at.error(f"must be a JSON object: {exc.msg}", col) from None
            if f == self.bag and not isinstance(v, dict):
                raise at.error(f"must be an object, got {type(v).__name__}", col)
            kw[f] = v
        for f in _ID_FIELDS:
            v = kw.get(f)
            if isinstance(v, int) and not isinstance(v, bool):  # numeric ids are common in JSON
                kw[f] = v = str(v)
            if f in ("user_id", "item_id") and self.namespace and isinstance(v, str):
                kw[f] = self.uid(v.strip())
        if self.extras and self.bag is not None:
            rest = {k: v for k, v in src.items() if k not in used and not (csv and v == "")}
            if rest:
                kw[self.bag] = {**rest, **kw.get(self.bag, {})}
        if self.record == "example" and kw.get("example_id") in (None, ""):
            kw["example_id"] = content_id(kw.get("task"), kw.get("input"))
        return build(self.cls, at, self._names, **kw)


def _get(src: Mapping[str, Any], col: str) -> Any:
    if col in src:
        return src[col]
    if "." in col:
        cur: Any = src
        for part in col.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return _MISSING
            cur = cur[part]
        return cur
    return _MISSING


class JsonlLoader(_MappedLoader):
    """JSON lines, one object per line, plain or gzip -> one record each."""

    name = "jsonl"

    def _records(self, path: Path) -> Iterator[Record]:
        file = str(path)
        with self._open(path) as lines:
            for n, line in self._lines(lines):
                at = Where(file, n)
                try:
                    rec = self._convert(at, parse_json_line(line, at), csv=False)
                except LoadError as exc:
                    self._reject(exc)
                    continue
                yield rec


class CsvLoader(_MappedLoader):
    """CSV (or TSV) with a header row, plain or gzip -> one record per row."""

    name = "csv"

    def __init__(self, *, delimiter: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter

    def _records(self, path: Path) -> Iterator[Record]:
        file = str(path)
        delim = self.delimiter or ("\t" if ".tsv" in path.suffixes else ",")
        with self._open(path, strict=False) as lines:
            rows = iter_csv(lines, delimiter=delim, on_error=self._reject)
            first = next(rows, None)
            if first is None:
                return
            n0, header = first
            header = [h.strip() for h in header]
            if len(set(header)) != len(header) or not all(header):
                raise LoadError(f"header must name every column once, got {header}", file=file, line=n0)
            for n, row in rows:
                at = Where(file, n)
                try:
                    if len(row) < len(header):
                        raise at.error(f"expected {len(header)} fields, got {len(row)}", header[len(row)])
                    if len(row) > len(header):
                        raise at.error(f"expected {len(header)} fields, got {len(row)}")
                    rec = self._convert(at, dict(zip(header, row, strict=True)), csv=True)
                except LoadError as exc:
                    self._reject(exc)
                    continue
                yield rec
