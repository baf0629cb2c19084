"""MovieLens 100K in GroupLens' original layout or as RecBole atomic files.

``path`` is the dataset folder or any file in it.

- GroupLens (``u.data``, ``u.user``, ``u.item``, optional ``u.genre``): ``u.data`` is
  ``user<TAB>item<TAB>rating<TAB>timestamp``; ``u.user`` ``id|age|gender|occupation|zip``;
  ``u.item`` ``id|title (year)|release date|video release date|IMDb URL|19 genre flags``
  in Latin-1.
- RecBole (``<name>.inter``, ``<name>.user``, ``<name>.item``): tab separated with a
  ``name:type`` header (``token``, ``token_seq`` (space separated), ``float``,
  ``float_seq``). Known columns are mapped (user_id, item_id, rating, timestamp;
  age, gender, occupation, zip_code; movie_title, release_year, class); any other
  column goes to ``attributes``.

Both layouts give the same records for the same data: ``User(age, gender,
occupation, location=zip)``, ``Item(title without the "(year)", attributes
{"year", "genres"})``, ``Interaction(interaction="rating", value, timestamp)`` and a
``movielens-rating`` ``TaskExample`` per rating (input: ``"Toy Story (1995).
Genres: Animation, Children's, Comedy."``; target: ``"3"``; ``example_id =
f"rating:{item}:{timestamp}"``). The user and item files are read first (the item
catalogue stays in memory, to write the examples' inputs), then the ratings are
streamed. The default namespace is ``ml-100k`` for GroupLens and the file stem
(e.g. ``ml-100k``) for RecBole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_float, as_int, build, format_rating
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Interaction, Item, Record, TaskExample, User

__all__ = ["GENRES", "MovieLensLoader"]

GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

_TITLE_YEAR = re.compile(r"^(.*\S)\s+\((\d{4})\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})\s*$")

_USER_COLS = {"age": "age", "gender": "gender", "occupation": "occupation", "zip_code": "location"}
_ITEM_COLS = {
    "movie_title": "title",
    "title": "title",
    "release_year": "year",
    "class": "genres",
    "genre": "genres",
    "genres": "genres",
}


class MovieLensLoader(Loader):
    """ML-100K (GroupLens or RecBole layout) -> users, movies, ratings, rating examples."""

    name = "movielens"
    default_namespace = "ml-100k"

    def __init__(self, *, namespace: str | None = None, item_encoding: str | None = None) -> None:
        """``item_encoding``: of the item file; default Latin-1 for GroupLens, UTF-8 for RecBole."""
        self._explicit_ns = namespace is not None
        super().__init__(namespace=namespace)
        self.item_encoding = item_encoding

    # -- layout -----------------------------------------------------------------------

    def _layout(self, path: Path) -> tuple[str, dict[str, Path | None]]:
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        folder = path if path.is_dir() else path.parent
        if (folder / "u.data").is_file() and not (path.is_file() and path.suffix in (".inter", ".user", ".item")):
            return "grouplens", {
                "user": _maybe(folder / "u.user"),
                "item": _maybe(folder / "u.item"),
                "genre": _maybe(folder / "u.genre"),
                "inter": folder / "u.data",
            }
        if path.is_file() and path.suffix in (".inter", ".user", ".item"):
            stem = path.with_suffix("")
        else:
            inters = sorted(folder.glob("*.inter"))
            if not inters:
                raise LoadError(
                    "no MovieLens data here: want u.data (GroupLens) or <name>.inter (RecBole)",
                    file=folder,
                )
            if len(inters) > 1:
                raise LoadError(
                    f"several RecBole datasets here ({', '.join(p.name for p in inters)}): pass the .inter file",
                    file=folder,
                )
            stem = inters[0].with_suffix("")
        inter = stem.with_suffix(".inter")
        if not inter.is_file():
            raise LoadError(f"missing {inter.name}", file=inter)
        return "recbole", {
            "user": _maybe(stem.with_suffix(".user")),
            "item": _maybe(stem.with_suffix(".item")),
            "inter": inter,
        }

    def files(self, path: str | Path) -> list[Path]:
        _, files = self._layout(Path(path))
        return [p for p in files.values() if p is not None]

    def _records(self, path: Path) -> Iterator[Record]:
        layout, files = self._layout(path)
        if layout == "recbole" and not self._explicit_ns:
            self.namespace = files["inter"].stem  # type: ignore[union-attr]
        items: dict[str, tuple[str | None, int | None, list[str]]] = {}
        if layout == "grouplens":
            genres = self._genres(files["genre"]) if files["genre"] else list(GENRES)
            if files["user"]:
                yield from self._grouplens_users(files["user"])
            if files["item"]:
                yield from self._grouplens_items(files["item"], genres, items)
            yield from self._grouplens_ratings(files["inter"], items)  # type: ignore[arg-type]
        else:
            if files["user"]:
                yield from self._recbole_users(files["user"])
            if files["item"]:
                yield from self._recbole_items(files["item"], items)
            yield from self._recbole_ratings(files["inter"], items)  # type: ignore[arg-type]

    # -- shared record makers -----------------------------------------------------------

    def _user(self, at: Where, raw_id: str, fields: dict[str, Any], names: dict[str, str]) -> User:
        if not raw_id.strip():
            raise at.error("must not be empty", names.get("user_id", "user_id"))
        return build(User, at, names, user_id=self.uid(raw_id.strip()), **fields)

    def _item(
        self,
        at: Where,
        raw_id: str,
        title: str | None,
        year: int | None,
        genres: list[str],
        extra: dict[str, Any],
        names: dict[str, str],
    ) -> Item:
        if not raw_id.strip():
            raise at.error("must not be empty", names.get("item_id", "item_id"))
        attrs = {"year": year, "genres": genres, **extra}
        return build(Item, at, names, item_id=self.iid(raw_id.strip()), title=title, attributes=attrs)

    def _rating(
        self,
        at: Where,
        user: str,
        item: str,
        rating: float | None,
        ts: int | None,
        items: dict[str, tuple[str | None, int | None, list[str]]],
        names: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> list[Record]:
        for raw, col in ((user, "user_id"), (item, "item_id")):
            if not raw.strip():
                raise at.error("must not be empty", names.get(col, col))
        user, item = user.strip(), item.strip()
        uid, iid = self.uid(user), self.iid(item)
        recs: list[Record] = [
            build(
                Interaction,
                at,
                names,
                user_id=uid,
                item_id=iid,
                interaction="rating",
                value=rating,
                timestamp=ts,
                metadata=extra or {},
            )
        ]
        if rating is not None:
            title, year, genres = items.get(item, (None, None, []))
            text = title or f"movie {item}"
            if year is not None:
                text += f" ({year})"
            text += "."
            if genres:
                text += f" Genres: {', '.join(genres)}."
            recs.append(
                build(
                    TaskExample,
                    at,
                    names,
                    task="movielens-rating",
                    example_id=f"rating:{item}:{ts}",
                    user_id=uid,
                    input=text,
                    target=format_rating(rating),
                    timestamp=ts,
                    metadata={"item_id": iid},
                )
            )
        return recs

    def _guarded(self, rows: Iterator[tuple[int, list[str]]], file: str, make: Any) -> Iterator[Record]:
        for n, fields in rows:
            try:
                recs = make(Where(file, n), fields)
            except LoadError as exc:
                self._reject(exc)
                continue
            yield from recs

    # -- GroupLens ------------------------------------------------------------------------

    def _genres(self, path: Path) -> list[str]:
        out: dict[int, str] = {}
        with self._open(path, encoding="latin-1") as lines:
            for n, fields in self._delimited(lines, "|"):
                at = Where(str(path), n)
                if len(fields) != 2:
                    raise at.error(f"expected 'name|index', got {len(fields)} fields")
                out[as_int(fields[1], at, "index")] = fields[0]  # type: ignore[index]
        return [out[i] for i in sorted(out)]

    def _grouplens_users(self, path: Path) -> Iterator[Record]:
        names = {
            "user_id": "user id",
            "age": "age",
            "gender": "gender",
            "occupation": "occupation",
            "location": "zip code",
        }

        def make(at: Where, f: list[str]) -> list[Record]:
            _need(at, f, ["user id", "age", "gender", "occupation", "zip code"])
            age = as_int(f[1], at, "age", required=False)
            return [
                self._user(
                    at,
                    f[0],
                    {
                        "age": age,
                        "gender": f[2] or None,
                        "occupation": f[3] or None,
                        "location": f[4] or None,
                    },
                    names,
                )
            ]

        with self._open(path, encoding="latin-1") as lines:
            yield from self._guarded(self._delimited(lines, "|"), str(path), make)

    def _grouplens_items(
        self,
        path: Path,
        genres: list[str],
        items: dict[str, tuple[str | None, int | None, list[str]]],
    ) -> Iterator[Record]:
        names = {"item_id": "movie id", "title": "movie title"}
        cols = [
            "movie id",
            "movie title",
            "release date",
            "video release date",
            "IMDb URL",
            *genres,
        ]

        def make(at: Where, f: list[str]) -> list[Record]:
            _need(at, f, cols)
            title, year = _split_title(f[1])
            if year is None and (m := _DATE_YEAR.search(f[2])):
                year = int(m.group(1))
            flags = f[5 : 5 + len(genres)]
            bad = next((i for i, x in enumerate(flags) if x.strip() not in ("0", "1")), None)
            if bad is not None:
                raise at.error(f"genre flag must be 0 or 1, got {flags[bad]!r}", genres[bad])
            gs = [g for g, x in zip(genres, flags, strict=True) if x.strip() == "1"]
            extra = {k: v for k, v in (("release_date", f[2]), ("imdb_url", f[4])) if v}
            rec = self._item(at, f[0], title, year, gs, extra, names)
            items[f[0].strip()] = (title, year, gs)
            return [rec]

        with self._open(path, encoding=self.item_encoding or "latin-1") as lines:
            yield from self._guarded(self._delimited(lines, "|"), str(path), make)

    def _grouplens_ratings(
        self, path: Path, items: dict[str, tuple[str | None, int | None, list[str]]]
    ) -> Iterator[Record]:
        names = {
            "user_id": "user id",
            "item_id": "item id",
            "value": "rating",
            "target": "rating",
            "timestamp": "timestamp",
        }

        def make(at: Where, f: list[str]) -> list[Record]:
            _need(at, f, ["user id", "item id", "rating", "timestamp"])
            rating = as_float(f[2], at, "rating")
            ts = as_int(f[3], at, "timestamp", required=False)
            return self._rating(at, f[0], f[1], rating, ts, items, names)

        with self._open(path) as lines:
            yield from self._guarded(self._delimited(lines, "\t"), str(path), make)

    # -- RecBole atomic files ----------------------------------------------------------------

    def _atomic(
        self, path: Path, key: tuple[str, ...], encoding: str = "utf-8"
    ) -> Iterator[tuple[Where, dict[str, Any]]]:
        """Rows of a RecBole atomic file as {column name: typed value}; errors go to _reject."""
        file = str(path)
        with self._open(path, encoding=encoding) as lines:
            rows = self._delimited(lines, "\t")
            header = next(rows, None)
            if header is None:
                raise LoadError("empty file: want a 'name:type' header", file=file, line=1)
            n0, head = header
            cols: list[tuple[str, str]] = []
            for h in head:
                name, _, typ = h.strip().partition(":")
                if typ not in ("token", "token_seq", "float", "float_seq"):
                    raise LoadError(
                        f"header column {h!r} is not 'name:type' with type token, token_seq, float or float_seq",
                        file=file,
                        line=n0,
                        field=name or h,
                    )
                cols.append((name, typ))
            missing = [k for k in key if k not in {c for c, _ in cols}]
            if missing:
                raise LoadError(f"header has no {missing[0]!r} column", file=file, line=n0, field=missing[0])
            for n, f in rows:
                at = Where(file, n)
                try:
                    _need(at, f, [c for c, _ in cols])
                    row: dict[str, Any] = {}
                    for (name, typ), v in zip(cols, f, strict=False):
                        if typ == "token":
                            row[name] = v
                        elif typ == "token_seq":
                            row[name] = v.split()
                        elif typ == "float":
                            row[name] = as_float(v, at, name, required=False)
                        else:
                            row[name] = [as_float(x, at, name) for x in v.split()]
                except LoadError as exc:
                    self._reject(exc)
                    continue
                yield at, row

    def _recbole_users(self, path: Path) -> Iterator[Record]:
        names = {"user_id": "user_id", **{v: k for k, v in _USER_COLS.items()}}
        for at, row in self._atomic(path, ("user_id",)):
            try:
                fields: dict[str, Any] = {"attributes": {}}
                for col, v in row.items():
                    if col == "user_id":
                        continue
                    if col == "age":
                        fields["age"] = as_int(v, at, "age", required=False)
                    elif col in _USER_COLS:
                        fields[_USER_COLS[col]] = v or None
                    else:
                        fields["attributes"][col] = v
                rec = self._user(at, _token(row, "user_id", at), fields, names)
            except LoadError as exc:
                self._reject(exc)
                continue
            yield rec

    def _recbole_items(
        self, path: Path, items: dict[str, tuple[str | None, int | None, list[str]]]
    ) -> Iterator[Record]:
        names = {"item_id": "item_id", "title": "movie_title"}
        for at, row in self._atomic(path, ("item_id",), self.item_encoding or "utf-8"):
            try:
                raw = _token(row, "item_id", at)
                title: str | None = None
                year: int | None = None
                genres: list[str] = []
                extra: dict[str, Any] = {}
                for col, v in row.items():
                    kind = _ITEM_COLS.get(col)
                    if col == "item_id":
                        continue
                    if kind == "title":
                        title = (" ".join(v) if isinstance(v, list) else v) or None
                    elif kind == "year":
                        year = int(v) if isinstance(v, str) and v.strip().isdigit() else None
                    elif kind == "genres":
                        genres = v if isinstance(v, list) else v.split()
                    else:
                        extra[col] = v
                rec = self._item(at, raw, title, year, genres, extra, names)
            except LoadError as exc:
                self._reject(exc)
                continue
            items[raw.strip()] = (title, year, genres)
            yield rec

    def _recbole_ratings(
        self, path: Path, items: dict[str, tuple[str | None, int | None, list[str]]]
    ) -> Iterator[Record]:
        names = {
            "user_id": "user_id",
            "item_id": "item_id",
            "value": "rating",
            "target": "rating",
            "timestamp": "timestamp",
        }
        for at, row in self._atomic(path, ("user_id", "item_id")):
            try:
                rating = row.get("rating")
                ts = row.get("timestamp")
                if ts is not None:
                    if not ts.is_integer():
                        raise at.error(f"must be whole seconds, got {ts!r}", "timestamp")
                    ts = int(ts)
                extra = {k: v for k, v in row.items() if k not in ("user_id", "item_id", "rating", "timestamp")}
                recs = self._rating(
                    at,
                    _token(row, "user_id", at),
                    _token(row, "item_id", at),
                    rating,
                    ts,
                    items,
                    names,
                    extra,
                )
            except LoadError as exc:
                self._reject(exc)
                continue
            yield from recs


def _maybe(p: Path) -> Path | None:
    return p if p.is_file() else None


def _need(at: Where, fields: list[str], cols: list[str]) -> None:
    if len(fields) < len(cols):
        raise at.error(f"expected {len(cols)} fields, got {len(fields)}", cols[len(fields)])
    if len(fields) > len(cols):
        raise at.error(f"expected {len(cols)} fields, got {len(fields)}")


def _token(row: dict[str, Any], col: str, at: Where) -> str:
    v = row.get(col)
    if not isinstance(v, str) or not v.strip():
        raise at.error("missing" if v is None else "must not be empty", col)
    return v


def _split_title(raw: str) -> tuple[str | None, int | None]:
    raw = raw.strip()
    if m := _TITLE_YEAR.match(raw):
        return m.group(1), int(m.group(2))
    return raw or None, None
