"""Convert the shared Amazon Musical Instruments reviews into LaMP-3 and LaMP-4 folders.

The LaMP benchmark's own files are not on these machines, so the project's LaMP harness
(loader, retrieval-augmented prompts, metrics) is checked on real users by rewriting the
Amazon reviews (``../shared/data/amazon-musical-instruments``) into LaMP's public layouts:

- ``<out>/LaMP_3/`` product rating: input = LaMP-3's prompt around the review text,
  output = the star rating "1".."5", profile items ``{id, text, score, date}``;
- ``<out>/LaMP_4/`` headline generation: input = LaMP-4's prompt around the review text,
  output = the review's summary (its title), profile items ``{id, text, title, date}``.

Each folder holds ``{train,dev}_questions.json`` and ``{train,dev}_outputs.json`` exactly as
LaMP ships them. The split is LaMP's user-based one: every user with at least
``--min-profile`` earlier reviews is shuffled (``--seed``) into train or dev
(``--dev-fraction``), so no user is in both. A user gives one question, their latest review
(by ``unixReviewTime``, ties by ``asin``), and the profile is every review of theirs written
strictly before it in time. Amazon dates are whole days, so a same-day review cannot be told
apart from a later one: such reviews are in neither the question nor the profile, and a
harness that retrieves "strictly before the target" sees exactly the profile.

Review texts and summaries are HTML-unescaped (``&#34;`` -> ``"``, ``&amp;`` -> ``&``) as the
project's Amazon loader does, so the LaMP files hold the same text as the store. Reviews with
an empty text or summary are dropped first (for both tasks, so both have the same users and
question ids). Same arguments give byte-identical files.

The reviews may not be redistributed (see ``../shared/data/README.md``), and the output holds
their text: it is refused inside the repository unless git ignores that path.

    python benchmarks/make_lamp_from_amazon.py --data-dir ../shared/data --out /tmp/lamp-amazon
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("TAILORLM_SHARED_DATA", REPO.parent / "shared" / "data"))
SUBDIR = "amazon-musical-instruments"
FILENAME = "reviews_Musical_Instruments_5.json.gz"
FIELDS = ("reviewerID", "asin", "reviewText", "overall", "summary", "unixReviewTime")

# LaMP's published prompt wording (Salemi et al. 2023, Table 1 / the released questions files).
PROMPTS = {
    "3": (
        "What is the score of the following review on a scale of 1 to 5? just answer with "
        "1, 2, 3, 4, or 5 without further explanation. review: {text}"
    ),
    "4": "Generate a headline for the following article: {text}",
}
SPLITS = ("train", "dev")


@dataclass(frozen=True)
class Review:
    """One Amazon review, typed; ``profile_id`` is unique because (user, asin) pairs are deduplicated."""

    user: str
    asin: str
    text: str
    summary: str
    rating: int
    time: int  # unixReviewTime: seconds, always midnight UTC (day resolution)

    @property
    def profile_id(self) -> str:
        return f"{self.user}-{self.asin}"

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Question:
    """One user's question: their latest review as the target, their strictly earlier ones as profile."""

    qid: str
    user: str
    target: Review
    profile: tuple[Review, ...]


@dataclass
class Conversion:
    """Both splits plus the counts printed by the CLI (kept so tests and logs see what was dropped)."""

    train: list[Question] = field(default_factory=list)
    dev: list[Question] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _rating(value: Any, where: str) -> int:
    """``overall`` is a float like 5.0; anything but a whole 1..5 is a data error, not a label."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not 1 <= value <= 5:
        raise ValueError(f"{where}: 'overall' must be a whole star rating 1..5, got {value!r}")
    return int(value)


def _parse(line: str, where: str) -> dict[str, Any]:
    """One JSON line -> its object, with every field the conversion reads present and typed."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: bad JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in FIELDS if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    for k in ("reviewerID", "asin", "reviewText", "summary"):
        if not isinstance(obj[k], str):
            raise ValueError(f"{where}: {k!r} must be a string, got {obj[k]!r}")
    t = obj["unixReviewTime"]
    if isinstance(t, bool) or not isinstance(t, int):
        raise ValueError(f"{where}: 'unixReviewTime' must be an integer, got {t!r}")
    return obj


def read_reviews(path: Path) -> tuple[list[Review], dict[str, int]]:
    """All usable reviews of the gzip JSON-lines file, and counts of what was left out.

    Broken lines stop the conversion (a silently shorter dataset would skew every result);
    empty texts or summaries and repeated (user, asin) pairs are dropped and counted. Text and
    summary are HTML-unescaped like ``tailorlm.data.loaders.amazon`` does: the dumps hold
    ``&#34;`` for quotes, which would otherwise sit in LaMP inputs and ROUGE golds.
    """
    reviews: list[Review] = []
    seen: set[tuple[str, str]] = set()
    counts = {"lines": 0, "dropped_empty": 0, "dropped_duplicate": 0}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            counts["lines"] += 1
            where = f"{path}:{n}"
            obj = _parse(line, where)
            rating = _rating(obj["overall"], where)
            text, summary = html.unescape(obj["reviewText"]), html.unescape(obj["summary"])
            if not text.strip() or not summary.strip():
                counts["dropped_empty"] += 1
                continue
            key = (obj["reviewerID"], obj["asin"])
            if key in seen:
                counts["dropped_duplicate"] += 1
                continue
            seen.add(key)
            reviews.append(Review(obj["reviewerID"], obj["asin"], text, summary, rating, obj["unixReviewTime"]))
    return reviews, counts


def user_questions(reviews: Iterable[Review], *, min_profile: int) -> dict[str, tuple[Review, tuple[Review, ...]]]:
    """reviewerID -> (target, profile) for every user with at least ``min_profile`` earlier reviews.

    The target is the last review in (time, asin) order; the profile keeps only reviews with a
    smaller time, oldest first, so it can never hold the target or a same-day sibling of it.
    """
    by_user: dict[str, list[Review]] = defaultdict(list)
    for r in reviews:
        by_user[r.user].append(r)
    out: dict[str, tuple[Review, tuple[Review, ...]]] = {}
    for user in sorted(by_user):
        history = sorted(by_user[user], key=lambda r: (r.time, r.asin))
        target = history[-1]
        profile = tuple(r for r in history if r.time < target.time)
        if len(profile) >= min_profile:
            out[user] = (target, profile)
    return out


def split_users(
    users: Sequence[str], *, seed: int, dev_fraction: float, max_users: int | None = None
) -> tuple[list[str], list[str]]:
    """LaMP's user-based split: a seeded shuffle of the sorted users, the first share to dev.

    Sorting first makes the result independent of file order; ``max_users`` keeps a prefix of
    the shuffle, i.e. a random sample. With 0 < fraction < 1 and two or more users, both
    splits get at least one user so neither file is empty.
    """
    if not 0.0 <= dev_fraction <= 1.0:
        raise ValueError(f"dev fraction must be in [0, 1], got {dev_fraction}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"max users must be at least 1, got {max_users}")
    pool = sorted(users)
    random.Random(seed).shuffle(pool)
    if max_users is not None:
        pool = pool[:max_users]
    n_dev = round(len(pool) * dev_fraction)
    if 0.0 < dev_fraction < 1.0 and len(pool) >= 2:
        n_dev = min(max(n_dev, 1), len(pool) - 1)
    return pool[n_dev:], pool[:n_dev]


def build(
    reviews: Sequence[Review],
    *,
    seed: int = 0,
    dev_fraction: float = 0.3,
    min_profile: int = 3,
    max_users: int | None = None,
) -> Conversion:
    """Reviews -> train and dev questions; question ids run 0, 1, ... over train then dev (unique, like LaMP)."""
    if min_profile < 1:
        raise ValueError(f"min profile must be at least 1, got {min_profile}")
    eligible = user_questions(reviews, min_profile=min_profile)
    train_users, dev_users = split_users(list(eligible), seed=seed, dev_fraction=dev_fraction, max_users=max_users)
    conv = Conversion()
    n = 0
    for users, questions in ((train_users, conv.train), (dev_users, conv.dev)):
        for user in users:
            target, profile = eligible[user]
            questions.append(Question(str(n), user, target, profile))
            n += 1
    conv.counts = {
        "reviews": len(reviews),
        "users": len({r.user for r in reviews}),
        "eligible_users": len(eligible),
        "train_questions": len(conv.train),
        "dev_questions": len(conv.dev),
        "profile_items": sum(len(q.profile) for q in conv.train + conv.dev),
    }
    return conv


def lamp_json(questions: Sequence[Question], task: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One split in LaMP's layout for ``task`` ("3" or "4"): (questions array, outputs object)."""
    if task not in PROMPTS:
        raise ValueError(f"task must be one of {sorted(PROMPTS)}, got {task!r}")
    label = "score" if task == "3" else "title"
    qs: list[dict[str, Any]] = []
    golds: list[dict[str, str]] = []
    for q in questions:
        profile = [
            {"id": r.profile_id, "text": r.text, label: str(r.rating) if task == "3" else r.summary, "date": r.date}
            for r in q.profile
        ]
        qs.append({"id": q.qid, "input": PROMPTS[task].format(text=q.target.text), "profile": profile})
        golds.append({"id": q.qid, "output": str(q.target.rating) if task == "3" else q.target.summary})
    return qs, {"task": f"LaMP_{task}", "golds": golds}


def _dump(path: Path, obj: Any) -> None:
    """Fixed separators, key order and a trailing newline: same input, same bytes."""
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n")


def write_lamp(out: Path, conv: Conversion) -> list[Path]:
    """Write ``out/LaMP_3`` and ``out/LaMP_4`` (four files each); returns the paths written."""
    written: list[Path] = []
    for task in ("3", "4"):
        folder = out / f"LaMP_{task}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, questions in zip(SPLITS, (conv.train, conv.dev), strict=True):
            qs, outputs = lamp_json(questions, task)
            for name, obj in ((f"{split}_questions.json", qs), (f"{split}_outputs.json", outputs)):
                _dump(folder / name, obj)
                written.append(folder / name)
    return written


def convert(
    src: Path,
    out: Path,
    *,
    seed: int = 0,
    dev_fraction: float = 0.3,
    min_profile: int = 3,
    max_users: int | None = None,
) -> Conversion:
    """Read ``src``, split, and write both LaMP folders under ``out``; the counts say what happened."""
    reviews, read_counts = read_reviews(src)
    conv = build(reviews, seed=seed, dev_fraction=dev_fraction, min_profile=min_profile, max_users=max_users)
    write_lamp(out, conv)
    conv.counts = {**read_counts, **conv.counts}
    return conv


def find_data(data_dir: Path) -> Path:
    """The reviews file under ``data_dir`` (the shared data root or the Amazon folder itself)."""
    for cand in (data_dir / SUBDIR / FILENAME, data_dir / FILENAME):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"Amazon reviews not found: expected {data_dir / SUBDIR / FILENAME} "
        f"(pass --data-dir pointing at the shared data folder, see ../shared/data/README.md)"
    )


def _inside_repo_and_tracked(out: Path) -> bool:
    """True when ``out`` lies in this repository at a path git would not ignore.

    The output holds the reviews' text, which may not be redistributed; a git-ignored folder
    (e.g. ``runs/``) is fine. When git cannot answer, inside the repository counts as unsafe.
    """
    out = out.resolve()
    if not out.is_relative_to(REPO):
        return False
    probe = out / "LaMP_3" / "train_questions.json"
    try:
        res = subprocess.run(
            ["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", str(probe)],
            capture_output=True,
            check=False,
        )
    except OSError:
        return True
    return res.returncode != 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: convert, print counts; exit 2 with a message when the data is missing or unusable."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the shared data folder (../shared/data)")
    ap.add_argument("--out", type=Path, required=True, help="folder to write LaMP_3/ and LaMP_4/ into")
    ap.add_argument("--seed", type=int, default=0, help="seed of the user shuffle")
    ap.add_argument("--dev-fraction", type=float, default=0.3, help="share of users in dev")
    ap.add_argument("--min-profile", type=int, default=3, help="fewest earlier reviews a user needs")
    ap.add_argument("--max-users", type=int, default=None, help="keep a random sample of this many users")
    args = ap.parse_args(argv)
    try:
        src = find_data(args.data_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if _inside_repo_and_tracked(args.out):
        print(
            f"error: {args.out} is inside the repository and not git-ignored; the reviews may not be "
            "redistributed, write them elsewhere (e.g. /tmp/lamp-amazon or runs/)",
            file=sys.stderr,
        )
        return 2
    try:
        conv = convert(
            src,
            args.out,
            seed=args.seed,
            dev_fraction=args.dev_fraction,
            min_profile=args.min_profile,
            max_users=args.max_users,
        )
    except (ValueError, OSError, EOFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, value in conv.counts.items():
        print(f"{key}: {value}")
    print(f"wrote {args.out / 'LaMP_3'} and {args.out / 'LaMP_4'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
