"""What an extractor may return, and how it becomes one keyed, comparable fact.

Every extractor (the model choosing a category, a model writing JSON, the rules) ends in
:class:`Candidate`, so key normalization and the statement text are decided once, here.
The key (``location``, ``diet``, ``likes:jazz``, ``family:daughter:age``) is what makes
contradictions detectable: two facts with the same single-valued key and different
values cannot both hold.

Not here: finding statements in text (``rules``) and comparing against stored facts (``update``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CATEGORIES",
    "Candidate",
    "ExtractedFact",
    "Extraction",
    "ExtractorKind",
    "make_candidate",
    "norm_text",
    "slug",
]

#: What a model may call a fact (JSON path). The constrained path uses these same names.
CATEGORIES = ("name", "age", "location", "hometown", "job", "employer", "diet", "family", "likes", "other")
Category = Literal["name", "age", "location", "hometown", "job", "employer", "diet", "family", "likes", "other"]
ExtractorKind = Literal["rules", "model-choice", "model-json"]

_KEY = re.compile(r"^[a-z_]+(?::[a-z0-9_-]+)*$")
_FAMILY = frozenset(
    {"wife", "husband", "partner", "spouse", "boyfriend", "girlfriend", "fiance", "fiancee", "son", "daughter"}
    | {"kid", "child", "baby", "mom", "mother", "mum", "dad", "father", "brother", "sister", "grandmother"}
    | {"grandfather", "grandma", "grandpa", "aunt", "uncle", "cousin", "niece", "nephew", "twin"}
)


class ExtractedFact(BaseModel):
    """One fact as a model must write it: a category, the value copied from the user's words."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    value: str = Field(..., min_length=1, max_length=120, description="copied word for word from the user's text")
    negated: bool = Field(False, description="true for 'I don't like X (anymore)', 'I'm not vegan'")

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be non-empty")
        return v.strip()


class Extraction(BaseModel):
    """The whole JSON answer of the model: ``{"facts": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    facts: list[ExtractedFact] = Field(..., max_length=20)


@dataclass(frozen=True)
class Candidate:
    """A fact the user stated in this turn, before it is compared with what is known.

    ``value`` and ``said`` are the user's own words (never the assistant's); ``text`` is
    the statement stored and retrieved, in the first person ("I live in Paris"), so a
    query like "where do I live" finds it by words as well as by meaning.
    """

    key: str
    value: str
    text: str
    said: str
    extractor: ExtractorKind
    negated: bool = False
    label: str | None = None  # the model's choice, when a model chose

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"bad fact key {self.key!r}")
        if not self.value.strip() or not self.text.strip():
            raise ValueError("value and text must be non-empty")

    @property
    def norm_value(self) -> str:
        return norm_text(self.value)


_CONTRACTIONS = {
    "i'm": "i am",
    "im": "i am",
    "i've": "i have",
    "don't": "do not",
    "doesn't": "does not",
    "can't": "cannot",
    "isn't": "is not",
    "'s": " is",
}


def norm_text(text: str) -> str:
    """Lowercase, expand common contractions, drop punctuation and articles.

    Example:
        >>> norm_text("I'm a Vegetarian!")
        'i am vegetarian'
    """
    text = text.lower().replace("’", "'")
    words = []
    for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text):
        w = _CONTRACTIONS.get(w, w)
        if w not in ("a", "an", "the"):
            words.append(w)
    return " ".join(words).replace("'", "")


def slug(value: str) -> str:
    """A key-safe name for a value: normalized, a plural last word made singular.

    Example:
        >>> slug("Horror Movies"), slug("the Jazz")
        ('horror-movie', 'jazz')
    """
    words = norm_text(value).split()[:6]
    if words and len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith(("ss", "us", "is")):
        words[-1] = words[-1][:-1]
    return "-".join(re.sub(r"[^a-z0-9]", "", w) for w in words if w) or "x"


def family_relation(text: str) -> str | None:
    """The first family word in ``text`` ("my daughter is 5" -> "daughter")."""
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in _FAMILY:
            return w
        if w.endswith("s") and w[:-1] in _FAMILY:
            return w[:-1]
    return None


def _article(v: str) -> str:
    if re.match(r"(?i)(a|an|the|my)\s", v):
        return v
    return ("an " if v[:1].lower() in "aeiou" else "a ") + v


_TEMPLATES: dict[str, tuple[str, str | None]] = {  # base key -> (stated, negated); None: the user's words
    "name": ("My name is {v}", None),
    "age": ("I am {v} years old", None),
    "location": ("I live in {v}", "I don't live in {v}"),
    "hometown": ("I am from {v}", None),
    "birthplace": ("I was born in {v}", None),
    "birth_year": ("I was born in {v}", None),
    "job": ("I work as {a}", "I don't work as {a}"),
    "employer": ("I work at {v}", "I don't work at {v}"),
    "diet": ("I am {v}", "I am not {v}"),
    "studies": ("I study {v}", None),
    "relationship": ("I am {v}", None),
    "likes": ("I like {v}", "I don't like {v}"),
    "allergy": ("I am allergic to {v}", None),
    "speaks": ("I speak {v}", None),
    "plays": ("I play {v}", "I don't play {v}"),
    "pet": ("I have {v}", "I don't have {v}"),
}


def make_candidate(
    key: str, value: str, *, said: str, extractor: ExtractorKind, negated: bool = False, label: str | None = None
) -> Candidate | None:
    """Build the candidate for ``key`` (a full key or a bare category) and ``value``.

    A bare ``likes``/``plays``/``speaks``/``allergy``/``pet`` gets the value's slug appended,
    ``family`` the relation and ``other`` the statement's slug, so multi-valued facts stay
    apart. Returns None when the value does not fit the key (an age that is not a number).

    Example:
        >>> make_candidate("likes", "Jazz", said="I love jazz", extractor="rules").key
        'likes:jazz'
    """
    value = " ".join(value.split()).strip(" ,.;:!\"'")
    said = " ".join(said.split()).strip(" ,;:")
    if not value or not said:
        return None
    base = key.split(":", 1)[0]
    if key in ("likes", "plays", "speaks", "allergy", "pet"):
        key = f"{key}:{slug(value)}"
    elif key == "family":
        rel = family_relation(said) or family_relation(value) or "member"
        key = f"family:{rel}"
    elif key == "other":
        key = f"other:{slug(said)[:48].strip('-') or 'x'}"
    if base == "age" or key.endswith(":age"):
        m = re.search(r"\d{1,3}", value)
        if m is None or not 0 < int(m.group()) < 130:
            return None
        value = m.group()
    stated, denied = _TEMPLATES.get(base, ("", None))
    if key.startswith("family:") and key.endswith(":age"):
        text = f"My {key.split(':')[1]} is {value} years old"
    elif key.startswith("favorite:"):
        text = f"My favorite {key.split(':', 1)[1].replace('-', ' ')} is {value}"
    elif stated and (not negated or denied):
        text = (denied if negated else stated).format(v=value, a=_article(value))  # type: ignore[union-attr]
    else:
        text = said[:1].upper() + said[1:]
    try:
        return Candidate(key, value, text, said, extractor, negated, label)
    except ValueError:
        return None
