"""LaMP value parsing the loader needs but that is not about streaming: tasks, dates, splits.

Kept apart from ``lamp`` so the loader module stays about files and questions:
these are pure functions of one value (a task name, a profile date, a file name),
each with the error message a user of the public LaMP files needs to see.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._errors import Where

__all__ = ["SPLITS", "infer_task", "parse_date", "split_from_name", "split_option", "task_number"]

# The published LaMP splits, in the order a folder is loaded (train users first: they are
# the population the evaluation fits on; dev / test hold the queries).
SPLITS = ("train", "dev", "test")

_TASK_NAME = re.compile(r"^\s*lamp[\s_-]*([1-7])\s*$", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")
# File-name prefixes of the LaMP files (``train_questions.json``, ``dev_outputs.json``);
# ``val`` / ``validation`` are what other releases call the dev split.
_SPLIT_PREFIX = re.compile(r"^(train|dev|validation|val|test)(?=[_.\-])", re.IGNORECASE)
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "val": "dev", "validation": "dev", "test": "test"}


def task_number(value: Any) -> str:
    """``3``, ``"3"``, ``"LaMP_3"``, ``"lamp-3"`` -> ``"3"``; anything else is a ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7:
        return str(value)
    if isinstance(value, str):
        if value.strip() in "1234567" and value.strip():
            return value.strip()
        if m := _TASK_NAME.match(value):
            return m.group(1)
    raise ValueError(f"LaMP task must be 1..7 or 'LaMP_N', got {value!r}")


def split_option(value: Any) -> str | None:
    """The loader's ``split=`` option, checked now so a typo fails before anything is read."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in SPLITS:
        return value.strip().lower()
    raise ValueError(f"LaMP split must be one of {', '.join(SPLITS)}, got {value!r}")


def split_from_name(path: Path) -> str | None:
    """``train_questions.json`` -> ``"train"``; ``dev_``/``val_``/``validation_`` -> ``"dev"``;
    ``test_`` -> ``"test"`` (any case, plain or ``.gz``); no such prefix -> None."""
    m = _SPLIT_PREFIX.match(path.name)
    return _SPLIT_ALIASES[m.group(1).lower()] if m else None


def parse_date(value: Any, at: Where, name: str) -> int | None:
    """A LaMP ``date`` string (``"2016"``, ``"2016-05"``, ``"2016-05-17"``, ISO 8601) -> Unix
    seconds (UTC); absent or ``""`` -> None.

    The field is documented as a string. A JSON number is refused rather than read as
    a year: ``20160517`` or a Unix time would otherwise become a wrong date silently.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        s = value.strip()
        try:
            if m := _DATE.match(s):
                y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
                return int(datetime(y, mo, d, tzinfo=UTC).timestamp())
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())
        raise at.error(f"must be a date like '2016', '2016-05' or '2016-05-17', got {value!r}", name)
    kind = "a number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    raise at.error(
        f'must be a date string, got {value!r} ({kind}); write it as a string like "2016" or "2016-05-17"',
        name,
    )


def infer_task(q: dict[str, Any]) -> str | None:
    """The LaMP task of a question from its profile layout (and input wording for 1 vs 5)."""
    profile = q.get("profile")
    keys = set(profile[0]) if isinstance(profile, list) and profile and isinstance(profile[0], dict) else set()
    inp = str(q.get("input", "")).lower()
    if {"description", "tag"} <= keys:
        return "2"
    if "category" in keys or "tag" in keys:
        return "2-news"
    if "score" in keys:
        return "3"
    if {"title", "abstract"} <= keys:
        return "5" if "title for the following abstract" in inp or "abstract of a paper" in inp else "1"
    if "title" in keys and "text" in keys:
        return "6" if "email" in inp or "subject" in inp else "4"
    if "text" in keys:
        return "7"
    for needle, task in (
        ("reference", "1"),
        ("tag", "2"),
        ("category", "2-news"),
        ("score", "3"),
        ("headline", "4"),
        ("title for the following abstract", "5"),
        ("subject", "6"),
        ("paraphrase", "7"),
    ):
        if needle in inp:
            return task
    return None
