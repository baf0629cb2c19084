"""Extractors: the user's clauses in, :class:`~tailorlm.memory.schema.Candidate` facts out.

Three ways, chosen by :class:`~tailorlm.memory.config.MemoryConfig.extractor`:

The rules always read first (precise, free); with a model, only the durable first-person
clauses the rules cannot read go to it:

- ``constrained`` (a generator with ``score_choices``, i.e. the local model): the model
  can only *choose* a category from a closed list (one forward pass for the whole batch,
  contextually calibrated), and the value is a span copied from the clause by the
  category's slot pattern. Output is valid by construction: there is no free text to
  parse, and no value the user did not say.
- ``json`` (any generator, e.g. an HTTP server): the model writes JSON, which is validated
  against :class:`~tailorlm.memory.schema.Extraction` and checked to be grounded in the
  user's words; one retry with the error, then the rules' facts alone.
- ``rules``: no model.

Not here: comparing with stored facts (``update``) and forget requests (``rules``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from pydantic import ValidationError

from tailorlm.memory.config import MemoryConfig
from tailorlm.memory.rules import Clause, durable_first_person, parse_clause
from tailorlm.memory.schema import CATEGORIES, Candidate, Extraction, family_relation, make_candidate, norm_text
from tailorlm.models.base import BackendError, ChoiceScorer, GenerationConfig, Generator

__all__ = ["LABELS", "Extracted", "Extractor", "slot_fill"]

log = logging.getLogger("tailorlm.memory")

#: The closed set the constrained model chooses from. Each is one token for SmolLM2, so
#: scoring costs one forward pass per clause; "food" reads better to it than "diet".
LABELS = ("name", "age", "location", "job", "food", "family", "likes", "other", "none")

_LABEL_SYSTEM = "Classify what each sentence tells about the speaker. Answer with one word: " + ", ".join(LABELS) + "."
# Few-shot turns: the 135M model follows examples far better than instructions.
_SHOTS = (
    ("I live in Madrid", "location"),
    ("I am a teacher", "job"),
    ("I enjoy playing chess", "likes"),
    ("Can you help me?", "none"),
    ("I eat no meat, I'm vegan", "food"),
    ("My son is 12", "family"),
    ("I hate spiders", "likes"),
    ("I have a brother", "family"),
    ("My name is Tom", "name"),
    ("I drive a red car", "other"),
    ("I'm 40", "age"),
    ("Thanks, that's great", "none"),
)
_CONTENT_FREE = "N/A"

_JSON_SYSTEM = (
    "You extract lasting facts about the user from the user's own statements. Reply with JSON only, in the form "
    '{"facts": [{"category": "...", "value": "...", "negated": false}]}. '
    f"category is one of: {', '.join(CATEGORIES)}. value is copied word for word from the statements. "
    'negated is true when the user says something is not or no longer true ("I don\'t like jazz anymore"). '
    'Questions, requests and moods are not facts. No facts: {"facts": []}.'
)
_JSON_SHOT = (
    "- I moved to Lyon last year\n- I don't like jazz anymore\n- can you suggest a restaurant",
    '{"facts": [{"category": "location", "value": "Lyon", "negated": false}, '
    '{"category": "likes", "value": "jazz", "negated": true}]}',
)

Method = Literal["constrained", "json", "rules"]


@dataclass
class Extracted:
    """What one extraction produced; ``method`` says which path produced it (``rules`` after a fallback)."""

    candidates: list[Candidate]
    method: Method
    errors: list[str] = field(default_factory=list)


class Extractor:
    """Turns clauses into candidates with the path ``config.extractor`` names (see the module docstring).

    Raises:
        ValueError: ``constrained`` without a generator that has ``score_choices``, or
            ``json`` without a generator.
    """

    def __init__(self, generator: Generator | None, config: MemoryConfig) -> None:
        can_score = isinstance(generator, ChoiceScorer)
        mode = config.extractor
        if mode == "auto":
            mode = "constrained" if can_score else "json" if generator is not None else "rules"
        if mode == "constrained" and not can_score:
            raise ValueError("extractor 'constrained' needs a generator with score_choices (the local model)")
        if mode == "json" and generator is None:
            raise ValueError("extractor 'json' needs a generator")
        self.mode: Method = mode  # type: ignore[assignment]
        self.generator = generator
        self.config = config
        self._baseline: list[float] | None = None  # the model's label scores for a content-free clause

    def extract(self, clauses: Sequence[Clause]) -> Extracted:
        """Rules first; with a model, the durable first-person clauses the rules cannot read go to it."""
        found: list[Candidate] = []
        unread: list[Clause] = []
        for clause in clauses:
            parsed = parse_clause(clause)
            if parsed is not None:
                found += parsed
            elif durable_first_person(clause):
                unread.append(clause)
        if self.mode == "rules" or not unread:
            out = Extracted(found, self.mode)
        elif self.mode == "json":
            out = self._json(unread)
            out.candidates = found + out.candidates
        else:
            out = self._constrained(unread)
            out.candidates = found + out.candidates
        out.candidates = out.candidates[: self.config.max_facts_per_turn]
        return out

    # -- constrained: the model chooses, the user's words fill the slots --------------------

    def _constrained(self, clauses: list[Clause]) -> Extracted:
        try:
            labels = self.choose_labels([c.text for c in clauses])
        except (BackendError, ValueError, RuntimeError) as exc:  # the model failing must not lose the rules' facts
            log.warning("memory: constrained labelling failed (%s); keeping rule-based facts only", exc)
            return Extracted([], "constrained", [f"{type(exc).__name__}: {exc}"])
        found = [c for clause, label in zip(clauses, labels, strict=True) if (c := slot_fill(label, clause.text))]
        return Extracted(found, "constrained")

    def choose_labels(self, texts: Sequence[str]) -> list[str]:
        """One label from :data:`LABELS` per text, by the model's (calibrated) log-probabilities."""
        convs = [_label_prompt(t) for t in texts]
        calibrate = self.config.calibrate and self._baseline is None
        if calibrate:
            convs.append(_label_prompt(_CONTENT_FREE))
        scores = self.generator.score_choices(convs, list(LABELS))  # type: ignore[union-attr]
        rows = [[float(x) for x in row] for row in (scores.tolist() if hasattr(scores, "tolist") else scores)]
        if len(rows) != len(convs) or any(len(r) != len(LABELS) for r in rows):
            raise ValueError(f"score_choices returned shape {len(rows)}x? for {len(convs)}x{len(LABELS)}")
        if calibrate:
            self._baseline = rows.pop()
        base = self._baseline if self.config.calibrate and self._baseline else [0.0] * len(LABELS)
        return [LABELS[max(range(len(LABELS)), key=lambda j, r=r: r[j] - base[j])] for r in rows]

    # -- json: validate, retry once, then the rules -------------------------------------------

    def _json(self, clauses: list[Clause]) -> Extracted:
        statements = "\n".join(f"- {c.text}" for c in clauses)
        conv = [
            {"role": "system", "content": _JSON_SYSTEM},
            {"role": "user", "content": _JSON_SHOT[0]},
            {"role": "assistant", "content": _JSON_SHOT[1]},
            {"role": "user", "content": statements},
        ]
        gen = GenerationConfig(max_new_tokens=self.config.max_new_tokens, temperature=0.0)
        errors: list[str] = []
        attempts = 1 + self.config.max_retries
        for attempt in range(attempts):
            try:
                answer = self.generator.generate([conv], config=gen)[0]  # type: ignore[union-attr]
            except (BackendError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                break  # an unreachable server will not answer on a retry either
            try:
                candidates, ungrounded = parse_json_answer(answer, clauses)
            except ValueError as exc:
                problem = str(exc)
            else:
                if not ungrounded or attempt == attempts - 1:
                    errors += [f"value not in the user's words: {v!r}" for v in ungrounded]
                    return Extracted(candidates, "json", errors)
                problem = f"these values are not copied from the statements: {ungrounded}"
            errors.append(problem)
            conv = [
                *conv,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": f"That is not valid: {problem[:300]}. Reply with the JSON only."},
            ]
        log.info("memory: no valid JSON from %s after %d attempt(s); rules only", _name(self.generator), attempts)
        return Extracted([], "rules", errors)


def _name(generator: Any) -> str:
    return getattr(generator, "name", type(generator).__name__)


def parse_json_answer(answer: str, clauses: Sequence[Clause]) -> tuple[list[Candidate], list[str]]:
    """Candidates from a model's JSON answer, and the values that are not in the user's words.

    Raises:
        ValueError: no JSON object, or one that does not match :class:`Extraction`.
    """
    start = answer.find("{")
    if start == -1:
        raise ValueError("no JSON object in the answer")
    try:
        obj, _ = json.JSONDecoder().raw_decode(answer[start:])
        extraction = Extraction.model_validate(obj)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    except ValidationError as exc:
        raise ValueError(f"JSON does not match the schema: {exc.errors()[0]['msg']}") from None
    found: list[Candidate] = []
    ungrounded: list[str] = []
    for fact in extraction.facts:
        value = norm_text(fact.value)
        said = next((c.text for c in clauses if value and f" {value} " in f" {norm_text(c.text)} "), None)
        if said is None:
            ungrounded.append(fact.value)
            continue
        cand = make_candidate(fact.category, fact.value, said=said, extractor="model-json", negated=fact.negated)
        if cand is not None:
            found.append(cand)
    return found, ungrounded


def _label_prompt(text: str) -> list[dict[str, str]]:
    conv = [{"role": "system", "content": _LABEL_SYSTEM}]
    for said, label in _SHOTS:
        conv += [{"role": "user", "content": said}, {"role": "assistant", "content": label}]
    conv.append({"role": "user", "content": text})
    return conv


_DIET = re.compile(r"\b(vegetarian|vegan|pescatarian|pescetarian|flexitarian|keto|paleo)\b", re.I)
_NEG = re.compile(r"\b(?:don't|do\s+not|doesn't|no\s+longer|never|not|hate|dislike|detest|loathe|can't|cannot)\b", re.I)
_CAPS = r"[A-Z][\w'&-]*(?:\s+[A-Z][\w'&-]*)*"


def slot_fill(label: str, text: str) -> Candidate | None:
    """The candidate for ``text`` once the model chose ``label``: the value is a span of ``text``.

    A slot that finds no span of its shape (a "location" without a capitalized place after
    in/to/from) demotes the clause to ``other``: kept for retrieval, but with a key that
    can never contradict, so a wrong choice by the model cannot close a true fact.

    Example:
        >>> slot_fill("location", "I relocated to Berlin with my partner").value
        'Berlin'
        >>> slot_fill("job", "I play the guitar").key
        'other:i-play-guitar'
    """
    mk = partial(make_candidate, said=text, extractor="model-choice", label=label)
    cand: Candidate | None = None
    if label == "none":
        return None
    if label == "name" and (m := re.search(rf"\b(?:called|named|name\s+is|call\s+me)\s+({_CAPS})", text)):
        cand = mk("name", m.group(1))
    elif label == "age" and (m := re.search(r"\b(\d{1,3})\b", text)):
        rel = family_relation(text)
        cand = mk(f"family:{rel}:age" if rel else "age", m.group(1))
    elif label == "location" and (m := re.search(rf"\b(in|to|from|near)\s+({_CAPS})", text)):
        cand = mk("hometown" if m.group(1) == "from" else "location", m.group(2))
    elif label == "job" and (m := re.search(r"\b(?:as|i'm|i\s+am)\s+(an?\s+[a-z-]+(?:\s+[a-z-]+)?)", text, re.I)):
        cand = mk("job", m.group(1))
    elif label == "job" and (m := re.search(rf"\b(?:at|for)\s+({_CAPS})", text)):
        cand = mk("employer", m.group(1))
    elif label == "food" and (m := _DIET.search(text)):
        cand = mk("diet", m.group(1).lower(), negated=bool(_NEG.search(text)))
    elif label == "food" and (m := re.search(r"\ballergic\s+to\s+([\w\s-]+)", text, re.I)):
        cand = mk("allergy", m.group(1))
    elif label == "family" and family_relation(text):
        cand = mk("family", text)
    elif label == "likes" and (m := _likes_object(text)):
        cand = mk("likes", m, negated=bool(_NEG.search(text)))
    return cand if cand is not None else mk("other", text)


def _likes_object(text: str) -> str | None:
    """What follows the subject and its verb: "I really can't stand horror films" -> "horror films"."""
    m = re.match(
        r"(?:i|i'm|im|i\s+am)\s+(?:(?:really|totally|absolutely|also|still|just|do|don't|do\s+not|no\s+longer|never|not"
        r"|can't|cannot)\s+)*(?:\w+\s+){1,2}?(?P<v>(?:the\s+)?\w.*)",
        text,
        re.I,
    )
    if m is None:
        return None
    value = re.split(r"\s*(?:,|\bbut\b|\bbecause\b|\banymore\b|\bany\s+more\b|\btoo\b)", m.group("v"), maxsplit=1)[0]
    first = value.split()[0].lower() if value.split() else ""
    return value if first and first not in {"it", "that", "this", "you", "them", "so", "to"} else None
