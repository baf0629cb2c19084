"""LoCoMo (Maharana et al., ACL 2024): very long two-person conversations with memory questions.

The public file (``locomo10.json``) is a JSON array of samples::

    {"sample_id": "conv-26",
     "conversation": {"speaker_a": "Caroline", "speaker_b": "Melanie",
                      "session_1_date_time": "1:56 pm on 8 May, 2023",
                      "session_1": [{"speaker": "Caroline", "dia_id": "D1:1", "text": "Hey Mel! ..."}, ...],
                      "session_2_date_time": ..., "session_2": [...], ...},
     "qa": [{"question": "When did Caroline go to the LGBTQ support group?", "answer": "7 May 2023",
             "evidence": ["D1:3"], "category": 2}, ...],
     "event_summary": ..., "observation": ..., "session_summary": ...}   # not loaded

Who the users are. A sample is one conversation between two people, and each of them is a
user, ``f"{namespace}:{sample_id}:{speaker}"`` (``User(name=speaker, attributes={"sample_id",
"partner"})``). A conversation belongs to both people in it, the way a chat log does, so
*each* speaker's user holds every turn of it: their own turns as ``doc_kind="message"``
(the speaker's documents) and the other's as ``doc_kind="partner_message"``. The
questions are about the conversation ("When did Caroline go to ...?"), and only a user
whose documents hold the whole conversation can have them answered from memory; storing a
turn only under the person who said it would make every question that needs the other
side unanswerable by construction. A task that wants a user's own words only (style) reads
``message`` documents.

Each turn -> ``Document(doc_id=dia_id, doc_kind, text=f"{speaker}: {text}", timestamp,
metadata={"sample_id", "session", "speaker", "dia_id", "date_time"[, "img_url",
"blip_caption"]})``. The speaker is part of the text because the questions name people:
retrieval matches "Caroline" and the context line reads "[2023-05-08] Caroline: ...". A
shared image's caption is appended (``[shares a photo of ...]``), as LoCoMo's own
baselines do. The timestamp is the session's ``session_N_date_time`` (UTC) plus the turn's
position in seconds, so turns keep their order within a session (recency, history order)
while every turn still shows its session's date (the offset never crosses into the next
day). ``doc_id`` is the dia_id (``"D1:3"``, leading zeros dropped), so the ids a method
retrieves map straight onto a question's evidence.

Each question -> ``TaskExample(task="locomo-qa", example_id=f"{sample_id}:q{i}",
input=question, target=answer, timestamp=None, metadata={"sample_id", "category",
"category_name", "evidence": [dia_ids], "split": "test"[, "adversarial_answer"]})``, asked
for the speaker the question names (the first named when it names both, ``speaker_a`` when
it names neither): the user whose memory is being asked about. ``timestamp=None``: the
question comes after the whole conversation, so every turn is eligible. LoCoMo publishes
test questions only, hence ``split="test"`` (the harness then asks every question, each
its own query, with no population to fit on).

Category 5 (adversarial) questions ask about something the conversation does not say
(often what one speaker did, attributed to the other); the public file gives them an
``adversarial_answer`` (the trap) and no ``answer``. Their target is LoCoMo's expected
reply, ``"Not mentioned in the conversation"``, and the trap is kept in metadata.

Errors name the sample (``...; in sample[3] (sample_id 'conv-30')``) and the field
(``conversation.session_4_date_time``); a bad sample is rejected whole (``skip_bad`` skips
it). Samples are streamed one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_int, as_str, build
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import iter_json_array
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Document, Record, TaskExample, User

__all__ = ["ABSTAIN_ANSWER", "LOCOMO_CATEGORIES", "LoCoMoLoader", "parse_session_time"]

#: LoCoMo's question types by the number the public file uses (as LoCoMo's follow-up work
#: reads them; counts in locomo10.json: 282, 321, 96, 841, 446).
LOCOMO_CATEGORIES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
#: The expected answer to an adversarial (category 5) question: LoCoMo's own wording.
ABSTAIN_ANSWER = "Not mentioned in the conversation"

_SESSION = re.compile(r"^session_(\d+)$")
_DIA = re.compile(r"D\s*(\d+)\s*:\s*(\d+)")
# "1:56 pm on 8 May, 2023" and its near variants (no comma, abbreviated month, no time).
_TIME_FORMATS = (
    "%I:%M %p on %d %B, %Y",
    "%I:%M %p on %d %b, %Y",
    "%I:%M %p on %d %B %Y",
    "%I:%M %p on %d %b %Y",
    "%I:%M %p on %B %d, %Y",
    "%H:%M on %d %B, %Y",
    "%d %B, %Y",
    "%d %B %Y",
    "%B %d, %Y",
)
_DAY = 86400


def parse_session_time(value: Any, at: Where, name: str) -> int:
    """A session's date-time -> Unix seconds (UTC).

    Accepts LoCoMo's ``"1:56 pm on 8 May, 2023"`` (and the same without the comma, with an
    abbreviated month or without the time) and ISO 8601; a time without a zone is UTC.

    Example:
        >>> parse_session_time("1:56 pm on 8 May, 2023", Where("f"), "d")
        1683554160

    Raises:
        LoadError: naming ``name``, for anything else (a missing or empty value included).
    """
    if not isinstance(value, str) or not value.strip():
        raise at.error("missing" if value in (None, "") else f"must be a date-time string, got {value!r}", name)
    s = " ".join(value.split())
    for fmt in _TIME_FORMATS:
        try:
            return int(datetime.strptime(s, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise at.error(
            f"cannot read the date-time {value!r}: want e.g. '1:56 pm on 8 May, 2023' or ISO 8601 '2023-05-08T13:56'",
            name,
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def dia_id(raw: str) -> str:
    """A dia_id in one spelling, ``"D1:3"`` (``"D01:03"``, ``"D1: 3"`` too); other text as it is."""
    m = _DIA.fullmatch(raw.strip())
    return f"D{int(m.group(1))}:{int(m.group(2))}" if m else raw.strip()


def evidence_ids(value: Any, at: Where, name: str) -> list[str]:
    """A question's evidence as dia_ids, in order, without repeats.

    The public file has a few entries holding two ids in one string (``"D8:6; D9:17"``);
    every id in each string counts.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise at.error(f"must be a list of dia_ids, got {type(value).__name__}", name)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise at.error(f"must be a dia_id string such as 'D1:3', got {item!r}", f"{name}[{i}]")
        found = [f"D{int(s)}:{int(t)}" for s, t in _DIA.findall(item)] or ([item.strip()] if item.strip() else [])
        out += [d for d in found if d not in out]
    return out


def asker(question: str, speakers: tuple[str, str]) -> str:
    """The speaker a question is about: the first one it names, else the first speaker."""
    hits = [(m.start(), s) for s in speakers if (m := re.search(rf"\b{re.escape(s)}\b", question, re.IGNORECASE))]
    return min(hits)[1] if hits else speakers[0]


def _in_sample(exc: LoadError, index: int, sample: Any) -> LoadError:
    """``exc`` with the sample's place in the array and its id (file, line and field kept)."""
    raw = sample.get("sample_id") if isinstance(sample, dict) else None
    tag = f"sample[{index}]" + (f" (sample_id {str(raw)!r})" if isinstance(raw, str | int) else "")
    return LoadError(
        f"{exc.message}; in {tag}", file=exc.file, line=exc.line, field=exc.field, recoverable=exc.recoverable
    )


class LoCoMoLoader(Loader):
    """LoCoMo JSON -> two users per conversation, its dated turns, and ``locomo-qa`` examples."""

    name = "locomo"
    default_namespace = "locomo"

    def _records(self, path: Path) -> Iterator[Record]:
        seen: set[str] = set()
        for index, (line, sample) in enumerate(iter_json_array(path, tracker=self._tracker)):
            try:
                sid, recs = self._sample(Where(str(path), line), sample, seen)
            except LoadError as exc:
                self._reject(_in_sample(exc, index, sample))
                continue
            seen.add(sid)
            yield from recs

    def _sample(self, at: Where, sample: Any, seen: set[str]) -> tuple[str, list[Record]]:
        """One sample -> its records, or a LoadError (nothing of it kept)."""
        if not isinstance(sample, dict):
            raise at.error(f"a sample must be an object, got {type(sample).__name__}")
        sid = as_str(sample.get("sample_id"), at, "sample_id", empty_ok=False)
        assert sid is not None
        sid = sid.strip()
        if sid in seen:
            raise at.error(f"sample_id {sid!r} appears twice", "sample_id")
        conv = sample.get("conversation")
        if not isinstance(conv, dict):
            got = "missing" if conv is None else f"must be an object, got {type(conv).__name__}"
            raise at.error(got, "conversation")
        speakers = self._speakers(at, conv)
        users = {s: self.uid(f"{sid}:{s}") for s in speakers}
        recs: list[Record] = []
        for s, other in (speakers, speakers[::-1]):
            attrs = {"sample_id": sid, "partner": other}
            recs.append(build(User, at, None, user_id=users[s], name=s, attributes=attrs))
        recs += self._turns(at, sid, conv, speakers, users)
        recs += self._questions(at, sid, sample.get("qa"), speakers, users)
        return sid, recs

    def _speakers(self, at: Where, conv: dict[str, Any]) -> tuple[str, str]:
        names = []
        for key in ("speaker_a", "speaker_b"):
            name = as_str(conv.get(key), at, f"conversation.{key}", empty_ok=False)
            assert name is not None
            names.append(name.strip())
        if names[0] == names[1]:
            raise at.error(f"both speakers are {names[0]!r}; a conversation needs two people", "conversation.speaker_b")
        return names[0], names[1]

    def _sessions(self, at: Where, conv: dict[str, Any]) -> list[tuple[int, list[Any], int, str]]:
        """(number, turns, timestamp, date-time as written) of each session, in session order.

        A ``session_N_date_time`` without its ``session_N`` list is ignored (nothing was said).
        """
        out = []
        for key, turns in conv.items():
            m = _SESSION.match(key)
            if m is None:
                continue
            if not isinstance(turns, list):
                raise at.error(f"must be a list of turns, got {type(turns).__name__}", f"conversation.{key}")
            name = f"conversation.{key}_date_time"
            raw = conv.get(f"{key}_date_time")
            out.append((int(m.group(1)), turns, parse_session_time(raw, at, name), str(raw)))
        return sorted(out, key=lambda s: s[0])

    def _turns(
        self, at: Where, sid: str, conv: dict[str, Any], speakers: tuple[str, str], users: dict[str, str]
    ) -> list[Record]:
        """Every turn as a document of both speakers' users (see the module docstring)."""
        recs: list[Record] = []
        ids: set[str] = set()
        for n, turns, ts, raw_time in self._sessions(at, conv):
            day_end = ts - ts % _DAY + _DAY - 1
            for pos, turn in enumerate(turns):
                pre = f"conversation.session_{n}[{pos}]"
                if not isinstance(turn, dict):
                    raise at.error(f"a turn must be an object, got {type(turn).__name__}", pre)
                speaker = as_str(turn.get("speaker"), at, f"{pre}.speaker", empty_ok=False)
                if speaker is None or speaker.strip() not in speakers:
                    raise at.error(f"must be one of the speakers {list(speakers)}, got {speaker!r}", f"{pre}.speaker")
                speaker = speaker.strip()
                raw_id = as_str(turn.get("dia_id"), at, f"{pre}.dia_id", empty_ok=False)
                assert raw_id is not None
                did = dia_id(raw_id)
                if did in ids:
                    raise at.error(f"dia_id {did!r} appears twice in the conversation", f"{pre}.dia_id")
                ids.add(did)
                text = (as_str(turn.get("text"), at, f"{pre}.text", required=False) or "").strip()
                caption = as_str(turn.get("blip_caption"), at, f"{pre}.blip_caption", required=False)
                if caption and caption.strip():
                    text = f"{text} [shares {caption.strip()}]".strip()
                if not text:
                    raise at.error("must not be empty (and the turn shares no image)", f"{pre}.text")
                meta: dict[str, Any] = {"sample_id": sid, "session": n, "speaker": speaker, "dia_id": raw_id}
                meta["date_time"] = raw_time
                meta |= {k: turn[k] for k in ("img_url", "blip_caption") if turn.get(k) is not None}
                for owner in speakers:
                    recs.append(
                        build(
                            Document,
                            at,
                            {"text": f"{pre}.text", "doc_id": f"{pre}.dia_id"},
                            user_id=users[owner],
                            doc_id=did,
                            doc_kind="message" if owner == speaker else "partner_message",
                            text=f"{speaker}: {text}",
                            timestamp=min(ts + pos, day_end),
                            metadata=meta,
                        )
                    )
        return recs

    def _questions(
        self, at: Where, sid: str, qa: Any, speakers: tuple[str, str], users: dict[str, str]
    ) -> list[Record]:
        """Every question as a ``locomo-qa`` example of the speaker it is about."""
        if qa is None:
            return []
        if not isinstance(qa, list):
            raise at.error(f"must be a list of questions, got {type(qa).__name__}", "qa")
        recs: list[Record] = []
        for i, q in enumerate(qa):
            pre = f"qa[{i}]"
            if not isinstance(q, dict):
                raise at.error(f"a question must be an object, got {type(q).__name__}", pre)
            question = as_str(q.get("question"), at, f"{pre}.question", empty_ok=False)
            category = as_int(q.get("category"), at, f"{pre}.category")
            assert question is not None and category is not None
            meta: dict[str, Any] = {"sample_id": sid, "category": category, "split": "test"}
            meta["category_name"] = LOCOMO_CATEGORIES.get(category, str(category))
            meta["evidence"] = evidence_ids(q.get("evidence"), at, f"{pre}.evidence")
            if category == 5:
                target = ABSTAIN_ANSWER
                for key in ("adversarial_answer", "answer"):
                    if q.get(key) is not None:
                        meta[key] = _answer(q[key], at, f"{pre}.{key}")
            else:
                target = _answer(q.get("answer"), at, f"{pre}.answer")
            recs.append(
                build(
                    TaskExample,
                    at,
                    {"input": f"{pre}.question", "target": f"{pre}.answer"},
                    task="locomo-qa",
                    example_id=f"{sid}:q{i}",
                    user_id=users[asker(question, speakers)],
                    input=question.strip(),
                    target=target,
                    metadata=meta,
                )
            )
        return recs


def _answer(value: Any, at: Where, name: str) -> str:
    """An answer as text: the public file writes some as numbers (``"answer": 2022``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        return repr(value)
    out = as_str(value, at, name, empty_ok=False)
    assert out is not None
    return out.strip()
