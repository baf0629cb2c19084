"""Amazon product reviews (McAuley et al.), JSON lines, plain or gzip, 2014 and 2018 layouts.

2014: ``reviewerID, asin, reviewerName, helpful [up, total], reviewText, overall,
summary, unixReviewTime, reviewTime``. 2018 adds ``vote`` (a string such as
``"1,234"``), ``verified``, ``style`` and ``image``; ``reviewerName`` and
``reviewText`` may be absent there.

Per review line:

- ``User(user_id, name=reviewerName)``, once per reviewer and load (again only if a
  later line brings a name the first lacked);
- ``Document(doc_kind="review", doc_id=f"review:{asin}", text=reviewText,
  title=summary, rating=overall, item_id, timestamp=unixReviewTime, metadata)``;
- ``Interaction(interaction="rating", value=overall, timestamp)``;
- ``TaskExample`` ``amazon-rating`` (input: review text, target: the rating as
  ``"1"``..``"5"``) and ``amazon-title`` (input: review text, target: summary),
  ``example_id = doc_id``, ``doc_id`` = the review document.

Decisions:

- A review with no ``reviewText`` (absent, null or blank) is kept with ``text=""``
  when it has a ``summary`` (its rating and title are still data); with neither it
  is malformed. Such a review yields no task examples: there is no input text.
  Likewise no ``amazon-title`` example without a summary.
- Duplicates on (reviewerID, asin): the *first* occurrence in the file is kept,
  later ones are dropped and counted (``LoadReport.duplicates``). The doc id
  ``review:{asin}`` makes the row key (user, doc) the same pair, so even across
  files a re-load upserts rather than duplicates. Memory: the loader keeps a
  128-bit digest per review seen (~90 bytes each: ~900 MB for 10M reviews) and
  each reviewer's id; ``dedupe=False`` drops the hashes, and then the store's
  upsert keeps the *last* duplicate instead.
- Items are not written explicitly: the store creates a stub item for each asin
  referenced, and never overwrites a richer item (e.g. from Amazon's metadata
  files) with an empty one.
- ``unixReviewTime`` missing: ``reviewTime`` (``"MM DD, YYYY"``) is parsed instead
  (UTC midnight); neither: no timestamp.
- ``reviewText`` and ``summary`` are HTML-unescaped (``&#34;`` -> ``"``, ``&amp;`` ->
  ``&``) here, once, at load: the dumps carry HTML entities (over 1,000 ``&#34;`` in the
  Musical Instruments file) that would otherwise reach prompts, BM25 tokens and ROUGE
  targets verbatim. Doing it at load keeps every consumer (documents, task examples,
  retrieval) on the same text. ``reviewerName`` is left as is: it never reaches a prompt,
  and some names hold truncated entities (``&#3...``) that would decode to control
  characters.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_float, as_int, as_str, build, format_rating, parse_json_line
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Document, Interaction, Record, TaskExample, User

__all__ = ["AmazonReviewsLoader"]

_NAMES = {
    "user_id": "reviewerID",
    "item_id": "asin",
    "name": "reviewerName",
    "text": "reviewText",
    "title": "summary",
    "rating": "overall",
    "value": "overall",
    "timestamp": "unixReviewTime",
    "input": "reviewText",
    "target": "summary",
}


def _review_time(value: Any, at: Where) -> int | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise at.error(f"must be a date like '02 28, 2014', got {value!r}", "reviewTime")
    try:
        d = datetime.strptime(value.strip(), "%m %d, %Y")
    except ValueError:
        raise at.error(f"must be a date like '02 28, 2014', got {value!r}", "reviewTime") from None
    return int(d.replace(tzinfo=UTC).timestamp())


def _unescape(value: str | None) -> str | None:
    """HTML entities decoded; the dumps store ``"`` as ``&#34;`` and ``&`` as ``&amp;``."""
    return html.unescape(value) if value else value


def _vote(value: Any, at: Where) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = value.replace(",", "")
    return as_int(value, at, "vote")


def _metadata(d: dict[str, Any], at: Where) -> dict[str, Any]:
    """The review's extras kept as document metadata: helpful, vote, verified, style, image."""
    meta: dict[str, Any] = {}
    helpful = d.get("helpful")
    if helpful is not None:
        if not (
            isinstance(helpful, list)
            and len(helpful) == 2
            and all(isinstance(h, int) and not isinstance(h, bool) for h in helpful)
        ):
            raise at.error(f"must be [helpful votes, total votes], got {helpful!r}", "helpful")
        meta["helpful"] = helpful
    if (vote := _vote(d.get("vote"), at)) is not None:
        meta["vote"] = vote
    if "verified" in d:
        if not isinstance(d["verified"], bool):
            raise at.error(f"must be true or false, got {d['verified']!r}", "verified")
        meta["verified"] = d["verified"]
    for k in ("style", "image"):
        if d.get(k) is not None:
            meta[k] = d[k]
    return meta


class AmazonReviewsLoader(Loader):
    """Amazon reviews JSON lines (2014 or 2018 layout) -> users, reviews, ratings, examples."""

    name = "amazon"
    default_namespace = "amazon"

    def __init__(self, *, namespace: str | None = None, dedupe: bool = True) -> None:
        super().__init__(namespace=namespace)
        self.dedupe = dedupe

    def _records(self, path: Path) -> Iterator[Record]:
        file = str(path)
        seen: set[bytes] = set()
        users: dict[str, bool] = {}  # user id -> written with a name
        with self._open(path) as lines:
            for n, line in self._lines(lines):
                at = Where(file, n)
                try:
                    key, recs = self._review(parse_json_line(line, at), at)
                except LoadError as exc:
                    self._reject(exc)
                    continue
                if self.dedupe:
                    h = blake2b("\x1f".join(key).encode(), digest_size=16).digest()
                    if h in seen:
                        self.duplicates += 1
                        continue
                    seen.add(h)
                user = recs[0]
                assert isinstance(user, User)
                named = users.get(user.user_id)  # None: not written yet; else: written with a name?
                if named is None or (not named and user.name is not None):
                    users[user.user_id] = user.name is not None
                else:
                    recs = recs[1:]
                yield from recs

    def _review(self, d: dict[str, Any], at: Where) -> tuple[tuple[str, str], list[Record]]:
        reviewer = as_str(d.get("reviewerID"), at, "reviewerID", empty_ok=False)
        asin = as_str(d.get("asin"), at, "asin", empty_ok=False)
        assert reviewer is not None and asin is not None
        rating = as_float(d.get("overall"), at, "overall")
        assert rating is not None
        text = _unescape(as_str(d.get("reviewText"), at, "reviewText", required=False)) or ""
        summary = _unescape(as_str(d.get("summary"), at, "summary", required=False))
        summary = summary if summary and summary.strip() else None
        if not text.strip() and summary is None:
            raise at.error("missing: a review needs reviewText or a summary", "reviewText")
        name = as_str(d.get("reviewerName"), at, "reviewerName", required=False)
        ts = as_int(d.get("unixReviewTime"), at, "unixReviewTime", required=False)
        if ts is None:
            ts = _review_time(d.get("reviewTime"), at)

        meta = _metadata(d, at)

        uid, iid = self.uid(reviewer), self.iid(asin)
        doc_id = f"review:{asin}"
        recs: list[Record] = [
            build(User, at, _NAMES, user_id=uid, name=name),
            build(
                Document,
                at,
                _NAMES,
                user_id=uid,
                doc_id=doc_id,
                doc_kind="review",
                text=text,
                title=summary,
                rating=rating,
                item_id=iid,
                timestamp=ts,
                metadata=meta,
            ),
            build(
                Interaction,
                at,
                _NAMES,
                user_id=uid,
                item_id=iid,
                interaction="rating",
                value=rating,
                timestamp=ts,
            ),
        ]
        if text.strip():
            common = {
                "example_id": doc_id,
                "user_id": uid,
                "input": text,
                "doc_id": doc_id,
                "timestamp": ts,
                "metadata": {"item_id": iid},
            }
            recs.append(
                build(
                    TaskExample,
                    at,
                    _NAMES,
                    task="amazon-rating",
                    target=format_rating(rating),
                    **common,
                )
            )
            if summary is not None:
                recs.append(build(TaskExample, at, _NAMES, task="amazon-title", target=summary, **common))
        return (reviewer, asin), recs
