"""POPQUORN (Pei & Jurgens 2023) annotation CSV: one annotator's rating of one text per row.

Columns: ``instance_id, user_id, text, <rating column>, gender, race, age,
occupation, education`` (the offensiveness file's rating column is
``offensiveness``; pass ``rating_column`` for the politeness or other files).

- annotators -> ``User(gender, age_band=age, occupation, attributes {race, education})``,
  written once per annotator (again if a later row disagrees);
- texts -> ``Item(item_id=instance_id, text)``, once per text;
- ratings -> ``Interaction(interaction="rating", value)`` and a ``TaskExample``
  (``task="popquorn-<rating column>"``, ``example_id = instance_id``, input: the
  text, target: the rating as ``"1"``..``"5"``).

POPQUORN rows carry no time: interactions and examples have no timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_float, build, format_rating
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import iter_csv
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Interaction, Item, Record, TaskExample, User

__all__ = ["PopquornLoader"]

_DEMOGRAPHICS = ("gender", "race", "age", "occupation", "education")


class PopquornLoader(Loader):
    """POPQUORN CSV -> annotators, texts, ratings, per-annotator rating examples."""

    name = "popquorn"
    default_namespace = "popquorn"

    def __init__(self, *, namespace: str | None = None, rating_column: str = "offensiveness") -> None:
        super().__init__(namespace=namespace)
        self.rating_column = rating_column

    def _records(self, path: Path) -> Iterator[Record]:
        file = str(path)
        rc = self.rating_column
        names = {
            "user_id": "user_id",
            "item_id": "instance_id",
            "example_id": "instance_id",
            "text": "text",
            "input": "text",
            "value": rc,
            "target": rc,
            "age_band": "age",
            "gender": "gender",
            "occupation": "occupation",
        }
        users: dict[str, tuple[Any, ...]] = {}
        items: dict[str, int] = {}  # item id -> hash of its text
        with self._open(path, strict=False) as lines:
            rows = iter_csv(lines, on_error=self._reject)
            first = next(rows, None)
            if first is None:
                return
            n0, header = first
            header = [h.strip() for h in header]
            missing = [c for c in ("instance_id", "user_id", "text", rc) if c not in header]
            if missing:
                raise LoadError(
                    f"header has no {missing[0]!r} column (columns: {', '.join(header)})",
                    file=file,
                    line=n0,
                    field=missing[0],
                )
            idx = {c: header.index(c) for c in header}
            for n, row in rows:
                at = Where(file, n)
                try:
                    if len(row) < len(header):
                        raise at.error(f"expected {len(header)} fields, got {len(row)}", header[len(row)])
                    if len(row) > len(header):
                        raise at.error(f"expected {len(header)} fields, got {len(row)}")
                    recs = self._row(at, row, idx, names, users, items)
                except LoadError as exc:
                    self._reject(exc)
                    continue
                yield from recs

    def _row(
        self,
        at: Where,
        row: list[str],
        idx: dict[str, int],
        names: dict[str, str],
        users: dict[str, tuple[Any, ...]],
        items: dict[str, int],
    ) -> list[Record]:
        def col(c: str) -> str | None:
            v = row[idx[c]].strip() if c in idx else ""
            return v or None

        raw_user, raw_item, text = col("user_id"), col("instance_id"), row[idx["text"]]
        if raw_user is None:
            raise at.error("missing", "user_id")
        if raw_item is None:
            raise at.error("missing", "instance_id")
        if not text.strip():
            raise at.error("missing", "text")
        rating = as_float(col(self.rating_column), at, self.rating_column)
        assert rating is not None
        uid, iid = self.uid(raw_user), self.iid(raw_item)
        demo = tuple(col(c) for c in _DEMOGRAPHICS)
        recs: list[Record] = []
        new_user = users.get(uid) != demo
        if new_user:
            attrs = {k: v for k, v in (("race", col("race")), ("education", col("education"))) if v is not None}
            recs.append(
                build(
                    User,
                    at,
                    names,
                    user_id=uid,
                    gender=col("gender"),
                    age_band=col("age"),
                    occupation=col("occupation"),
                    attributes=attrs,
                )
            )
        text_hash = hash(text)
        new_item = items.get(iid) != text_hash
        if new_item:
            recs.append(build(Item, at, names, item_id=iid, text=text))
        recs.append(build(Interaction, at, names, user_id=uid, item_id=iid, interaction="rating", value=rating))
        recs.append(
            build(
                TaskExample,
                at,
                names,
                task=f"popquorn-{self.rating_column}",
                example_id=raw_item,
                user_id=uid,
                input=text,
                target=format_rating(rating),
                metadata={"item_id": iid},
            )
        )
        # Remember only once every record of the row has been built.
        if new_user:
            users[uid] = demo
        if new_item:
            items[iid] = text_hash
        return recs
