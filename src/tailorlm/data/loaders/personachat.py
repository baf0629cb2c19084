"""Persona-Chat / ConvAI2 in ParlAI's text format, plain or gzip.

Each line is ``N text`` where ``N`` counts up from 1 inside a dialogue; a line
numbered 1 starts the next dialogue. ``your persona: ...`` lines give the
speaker's persona facts (``partner's persona: ...`` lines, in the "both"
variants, the partner's); other lines are turns
``partner message<TAB>reply[<TAB><TAB>cand1|cand2|...]``.

Each dialogue is one user, ``f"{namespace}:{index}"`` (index from 0 in file order):

- ``User(attributes={"dialogue": index[, "partner_persona": [...]]})``;
- persona facts: ``Document(doc_kind="persona_fact", doc_id=f"persona:{i}", timestamp=0)``;
- each reply: ``Document(doc_kind="message", doc_id=f"turn:{t}", timestamp=t,
  metadata={"partner": message})`` with turns numbered from 1;
- each turn: ``TaskExample(task="personachat-response", example_id=f"turn:{t}",
  input=partner message, target=reply, doc_id=f"turn:{t}", timestamp=t,
  metadata={"dialogue", "history": [{"partner", "reply"}, ...earlier turns],
  "candidates"?})``.

Timestamps are turn indices, so ``get_documents(user_id=u, before=t)`` is the persona
plus the replies before turn ``t``. A dialogue is buffered until the next one
starts (a few kB), then written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import build
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Document, Record, TaskExample, User

__all__ = ["PersonaChatLoader"]

_LINE = re.compile(r"^(\d+) (.*)$", re.DOTALL)
_SELF = "your persona:"
_PARTNER = "partner's persona:"


class _Dialogue:
    def __init__(self, index: int, start_line: int) -> None:
        self.index = index
        self.start_line = start_line
        self.last = 0  # the last line number N seen
        self.persona: list[str] = []
        self.partner_persona: list[str] = []
        self.turns: list[tuple[int, str, str, list[str]]] = []  # (file line, partner, reply, candidates)


class PersonaChatLoader(Loader):
    """ParlAI Persona-Chat -> a user per dialogue: persona facts, replies, response examples."""

    name = "personachat"
    default_namespace = "personachat"

    def _records(self, path: Path) -> Iterator[Record]:
        file = str(path)
        dia: _Dialogue | None = None
        count = 0
        with self._open(path) as lines:
            for n, line in self._lines(lines):
                at = Where(file, n)
                m = _LINE.match(line.rstrip("\r\n"))
                try:
                    if not m:
                        raise at.error("expected 'N text' (a line number, a space, the text)")
                    num, text = int(m.group(1)), m.group(2)
                    if num == 1 or dia is None:
                        if num != 1:
                            raise at.error(f"a dialogue must start at line number 1, got {num}")
                        if dia is not None:
                            yield from self._emit(file, dia)
                        dia = _Dialogue(count, n)
                        count += 1
                    elif num != dia.last + 1:
                        raise at.error(f"line number {num} does not follow {dia.last}")
                    self._line(at, dia, text)
                    dia.last = num
                except LoadError as exc:
                    self._reject(exc)
                    if dia is not None and m:
                        dia.last = int(m.group(1))  # resynchronise on the skipped line's number
                    continue
            if dia is not None:
                yield from self._emit(file, dia)

    def _line(self, at: Where, dia: _Dialogue, text: str) -> None:
        if text.startswith(_SELF):
            if dia.turns:
                raise at.error("persona line after the dialogue's turns began")
            fact = text[len(_SELF) :].strip()
            if not fact:
                raise at.error("empty persona fact")
            dia.persona.append(fact)
            return
        if text.startswith(_PARTNER):
            dia.partner_persona.append(text[len(_PARTNER) :].strip())
            return
        parts = text.split("\t")
        if len(parts) < 2:
            raise at.error("a turn needs 'partner message<TAB>reply'", "reply")
        partner, reply = parts[0].strip(), parts[1].strip()
        if not reply:
            raise at.error("must not be empty", "reply")
        cands = [c for c in parts[3].split("|") if c] if len(parts) > 3 else []
        dia.turns.append((at.line or 0, partner, reply, cands))

    def _emit(self, file: str, dia: _Dialogue) -> Iterator[Record]:
        """A whole dialogue's records; an error here skips that dialogue (or stops the load)."""
        uid = self.uid(str(dia.index))
        names = {"text": "reply", "input": "partner", "target": "reply"}
        try:
            attrs: dict[str, Any] = {"dialogue": dia.index}
            if dia.partner_persona:
                attrs["partner_persona"] = dia.partner_persona
            at = Where(file, dia.start_line)
            recs: list[Record] = [build(User, at, names, user_id=uid, attributes=attrs)]
            for i, fact in enumerate(dia.persona):
                recs.append(
                    build(
                        Document,
                        at,
                        {"text": "your persona"},
                        user_id=uid,
                        doc_id=f"persona:{i}",
                        doc_kind="persona_fact",
                        text=fact,
                        timestamp=0,
                    )
                )
            history: list[dict[str, str]] = []
            for t, (line, partner, reply, cands) in enumerate(dia.turns, start=1):
                at = Where(file, line)
                doc_id = f"turn:{t}"
                recs.append(
                    build(
                        Document,
                        at,
                        names,
                        user_id=uid,
                        doc_id=doc_id,
                        doc_kind="message",
                        text=reply,
                        timestamp=t,
                        metadata={"partner": partner},
                    )
                )
                meta: dict[str, Any] = {"dialogue": dia.index, "history": list(history)}
                if cands:
                    meta["candidates"] = cands
                recs.append(
                    build(
                        TaskExample,
                        at,
                        names,
                        task="personachat-response",
                        example_id=doc_id,
                        user_id=uid,
                        input=partner,
                        target=reply,
                        doc_id=doc_id,
                        timestamp=t,
                        metadata=meta,
                    )
                )
                history.append({"partner": partner, "reply": reply})
        except LoadError as exc:
            self._reject(exc)
            return
        yield from recs
