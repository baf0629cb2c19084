"""Robust parsing of free-form model output into task answers.

Small models wrap answers in prose ("I'd give it 4/5 stars."). Parsers accept
digits, number words, "N/M", "N out of M" and star glyphs, and return ``None``
when nothing usable is found, so the caller can count unparsable answers and
apply the LaMP convention (score them as the farthest label from gold).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["farthest_rating", "parse_label", "parse_ranking", "parse_rating"]

_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+)")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)")


def parse_rating(text: str, *, low: int = 1, high: int = 5) -> int | None:
    """First rating in ``[low, high]`` found in ``text``, else None.

    Examples:
        >>> [parse_rating(s) for s in ["4", "Rating: 4/5", "four stars", "★★★", "I'd say 3 out of 5", "great"]]
        [4, 4, 4, 3, 3, None]
        >>> parse_rating("10/10")  # rescaled onto 1-5
        5
    """
    t = text.strip().lower()
    if m := _FRACTION.search(t):
        value, scale = float(m.group(1)), float(m.group(2))
        if scale > 0 and 0 <= value <= scale:
            return _clip(
                round(low + (value / scale) * (high - low)) if scale != high else round(value),
                low,
                high,
            )
    stars = t.count("★")
    if stars:
        return _clip(stars, low, high)
    for m in _NUMBER.finditer(t):
        v = float(m.group(1))
        if low <= v <= high:
            return round(v)
    for word, v in _WORDS.items():
        if re.search(rf"\b{word}\b", t) and low <= v <= high:
            return v
    return None


def _clip(v: int, low: int, high: int) -> int:
    return max(low, min(high, v))


def farthest_rating(gold: float, *, low: int = 1, high: int = 5) -> int:
    """The LaMP convention for an unparsable rating: the label farthest from gold."""
    return low if abs(gold - low) >= abs(gold - high) else high


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The allowed label the output names (exact, then word-boundary, earliest mention wins)."""
    t = text.strip().lower()
    for label in labels:
        if t == label.lower():
            return label
    best: tuple[int, int, str] | None = None
    for label in labels:
        m = re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", t)
        if m and (best is None or (m.start(), -len(label)) < best[:2]):
            best = (m.start(), -len(label), label)
    return best[2] if best else None


def parse_ranking(text: str, candidates: Sequence[str]) -> list[str]:
    """Order candidates by where the output first mentions them (by index "[3]" or by name).

    Candidates never mentioned keep their original order after the mentioned ones,
    so the result is always a full permutation.
    """
    t = text.lower()
    pos: dict[str, int] = {}
    for i, cand in enumerate(candidates):
        hits = [m.start() for m in re.finditer(rf"\[{i + 1}\]|(?<!\d){i + 1}[.)]", t)]
        if (j := t.find(cand.lower())) >= 0:
            hits.append(j)
        if hits:
            pos[cand] = min(hits)
    mentioned = sorted(pos, key=lambda c: pos[c])
    return mentioned + [c for c in candidates if c not in pos]
