"""LaMP benchmark JSON (Salemi et al. 2023): questions files, each with its outputs file.

Questions: a JSON array of ``{"id", "input", "profile": [...], "user_id"?}``.
Outputs: ``{"task": "LaMP_N", "golds": [{"id", "output"}, ...]}`` (absent for test sets).

Profile item layouts (every item has ``id``; any may carry ``date``):

====== ================================ ====================================== ===========
task   what                             profile item                           doc_kind
====== ================================ ====================================== ===========
LaMP-1 citation identification          title, abstract                        paper
LaMP-2 movie tagging / news categories  description, tag | text, title, category  movie | article
LaMP-3 product rating                   text, score                            review
LaMP-4 news headline generation         text, title                            article
LaMP-5 scholarly title generation       title, abstract                        abstract
LaMP-6 email subject generation         text, title                            email
LaMP-7 tweet paraphrasing               text                                   tweet
====== ================================ ====================================== ===========

Profile items become ``Document`` rows of the question's user (``user_id`` when
the question has one, else the question id), keyed by the item id (a repeated item
id within one question keeps the first, counted in ``duplicates``). The LaMP-2
label goes to ``metadata["tag"]`` / ``metadata["category"]`` and to
``metadata["label"]`` (one key for both layouts, so the label reaches a user's
history whatever the layout); the LaMP-3 score to ``rating``; ``date`` (a string:
``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or ISO 8601, UTC) to ``timestamp``.
Each question becomes ``TaskExample(task="lamp-N", example_id=id, input,
target=gold output, metadata={"profile_ids": [...], "split": ...})``: the ids of
that question's own profile (for evaluations that must retrieve from exactly it;
``[]`` for an empty profile) and the published split it comes from.

The split (``train`` / ``dev`` / ``test``) is the ``split=`` option, else the file
name's prefix (``train_``, ``dev_`` / ``val_`` / ``validation_``, ``test_``), else
absent. A folder loads every ``*questions*.json(.gz)`` in it, train first, each with
the outputs file next to it (``dev_questions.json`` -> ``dev_outputs.json``; test
files have none); ``outputs=`` names the outputs of a single questions file. The
task number comes from ``task=``, else the outputs files, else each file's first
question's layout; all must agree. A question id seen twice (in one file or across
files) is an error. Default namespace: ``lamp<N>``.

Errors about a question name its place in the array and its id as well as the
line (``...; in question[12] (id '3100')``): LaMP files are one line long.
``drop_bad_optional=True`` leaves an optional field that does not parse (``date``,
an optional ``title``, ``tag`` or ``category``) out of its document, counted in
``dropped_fields``, instead of rejecting the whole question.

Memory: each questions array is streamed one question at a time (see
:func:`~tailorlm.data.loaders.base.iter_json_array`), so only one question and its
profile are in memory, plus the ids of the questions loaded so far; the outputs
files (ids and short outputs) are read whole with ``json.load``. A question whose
JSON is broken cannot be skipped (the array cannot be resynchronised); a
well-formed question with bad fields can (``skip_bad``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_float, as_str, build
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import iter_json_array, open_binary
from tailorlm.data.loaders._lamp_fields import (
    SPLITS,
    infer_task,
    parse_date,
    split_from_name,
    split_option,
    task_number,
)
from tailorlm.data.loaders.base import Loader
from tailorlm.data.records import Document, Record, TaskExample

__all__ = ["LAMP_TASKS", "LaMPLoader"]

# task -> (doc_kind, {record field: profile key}, required profile keys)
LAMP_TASKS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "1": ("paper", {"text": "abstract", "title": "title"}, ("title", "abstract")),
    "2": ("movie", {"text": "description"}, ("description", "tag")),
    "2-news": ("article", {"text": "text", "title": "title"}, ("text", "category")),
    "3": ("review", {"text": "text", "rating": "score"}, ("text", "score")),
    "4": ("article", {"text": "text", "title": "title"}, ("text", "title")),
    "5": ("abstract", {"text": "abstract", "title": "title"}, ("title", "abstract")),
    "6": ("email", {"text": "text", "title": "title"}, ("text", "title")),
    "7": ("tweet", {"text": "text"}, ("text",)),
}


@dataclass(frozen=True)
class _Part:
    """One questions file of a load, the outputs file holding its golds, and its split."""

    questions: Path
    outputs: Path | None
    split: str | None


@dataclass(frozen=True)
class _Context:
    """What every question of one file shares: its file, the task and the file's golds."""

    part: _Part
    task: str
    golds: dict[str, str] | None


def _order(part: _Part) -> tuple[int, str]:
    """Train before dev before test before unlabelled: the population is known first."""
    return (SPLITS.index(part.split) if part.split else len(SPLITS), part.questions.name)


def _in_question(exc: LoadError, index: int, q: Any) -> LoadError:
    """``exc`` with the question's place in the array and its id: the line alone says
    nothing in the one-line LaMP files. File, line and field stay as they were."""
    raw = q.get("id") if isinstance(q, dict) else None
    known = isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw).strip()
    tag = f"question[{index}]" + (f" (id {str(raw)!r})" if known else "")
    return LoadError(
        f"{exc.message}; in {tag}", file=exc.file, line=exc.line, field=exc.field, recoverable=exc.recoverable
    )


class LaMPLoader(Loader):
    """LaMP questions (+ outputs) JSON -> per-user profile documents and ``lamp-N`` examples."""

    name = "lamp"
    default_namespace = ""  # resolved to f"lamp{N}" once the task is known

    def __init__(
        self,
        *,
        namespace: str | None = None,
        task: int | str | None = None,
        outputs: str | Path | None = None,
        split: str | None = None,
        drop_bad_optional: bool = False,
    ) -> None:
        super().__init__(namespace=namespace)
        self._ns_given = namespace is not None
        self.task = task_number(task) if task is not None else None
        self.outputs = Path(outputs) if outputs is not None else None
        self.split = split_option(split)
        self.drop_bad_optional = bool(drop_bad_optional)
        self._seen: dict[str, str] = {}  # question id -> where it was loaded from

    # -- which files ---------------------------------------------------------------

    def _plan(self, path: Path) -> list[_Part]:
        """The questions files of ``path`` (a file, or every one in a folder), in load order."""
        if path.is_dir():
            qs = sorted([*path.glob("*questions*.json"), *path.glob("*questions*.json.gz")])
            if not qs:
                raise LoadError("no *questions*.json(.gz) in the folder", file=path)
            names = ", ".join(q.name for q in qs)
            for option, value in (("outputs", self.outputs), ("split", self.split)):
                if value is not None and len(qs) > 1:
                    raise LoadError(
                        f"{option}= applies to one questions file, but the folder has {len(qs)} ({names}); "
                        f"load one file with {option}=, or the folder without it",
                        file=path,
                    )
        elif path.is_file():
            qs = [path]
        else:
            raise FileNotFoundError(f"no such file: {path}")
        parts = [_Part(q, self._outputs_for(q), self.split or split_from_name(q)) for q in qs]
        return sorted(parts, key=_order)

    def _outputs_for(self, questions: Path) -> Path | None:
        """``outputs=``, else ``X_outputs.json(.gz)`` next to ``X_questions.json(.gz)``, else None."""
        if self.outputs is not None:
            if not self.outputs.is_file():
                raise FileNotFoundError(f"no such outputs file: {self.outputs}")
            return self.outputs
        if "questions" not in questions.name:
            return None
        name = questions.name.replace("questions", "outputs")
        other = name[:-3] if name.endswith(".gz") else name + ".gz"
        return next((c for c in (questions.with_name(name), questions.with_name(other)) if c.is_file()), None)

    def files(self, path: str | Path) -> list[Path]:
        return [f for part in self._plan(Path(path)) for f in (part.questions, part.outputs) if f is not None]

    # -- outputs and the task number ----------------------------------------------------

    def _golds(self, path: Path) -> tuple[str | None, dict[str, str]]:
        file = str(path)
        with open_binary(path, tracker=self._tracker) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise LoadError(f"bad JSON: {exc.msg}", file=file, line=exc.lineno) from None
            except UnicodeDecodeError as exc:
                raise LoadError(f"invalid UTF-8: {exc.reason}", file=file) from None
        if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
            raise LoadError(
                "expected an object {'task': 'LaMP_N', 'golds': [{'id', 'output'}]}",
                file=file,
                field="golds",
            )
        task = data.get("task")
        golds: dict[str, str] = {}
        for i, g in enumerate(data["golds"]):
            at = Where(file)
            if not isinstance(g, dict):
                raise at.error(f"must be an object {{'id', 'output'}}, got {type(g).__name__}", f"golds[{i}]")
            gid = as_str(g.get("id"), at, f"golds[{i}].id", empty_ok=False)
            out = g.get("output")
            if not isinstance(out, str | int | float) or isinstance(out, bool):
                raise at.error(f"must be a string, got {out!r}", f"golds[{i}].output")
            golds[gid] = str(out)  # type: ignore[index]
        return (str(task) if task is not None else None), golds

    def _all_golds(self, parts: list[_Part]) -> tuple[str | None, dict[Path, dict[str, str]]]:
        """Every outputs file's golds (by questions file), and the task number that ``task=``
        and the outputs files give (None when none does).

        Read before any question, so files that disagree on the task fail before a
        single record is stored.
        """
        task, said_by = self.task, "task="
        golds: dict[Path, dict[str, str]] = {}
        read: dict[Path, tuple[str | None, dict[str, str]]] = {}
        for part in parts:
            if part.outputs is None:
                continue
            if part.outputs not in read:
                read[part.outputs] = self._golds(part.outputs)
            otask, golds[part.questions] = read[part.outputs]
            if otask is None:
                continue
            try:
                n = task_number(otask)
            except ValueError:
                raise LoadError(f"unknown task {otask!r}", file=part.outputs, field="task") from None
            if task is not None and n != task:
                raise LoadError(
                    f"says LaMP_{n} but {said_by} says LaMP_{task}: all files of a load must be one task",
                    file=part.outputs,
                    field="task",
                )
            if task is None:
                task, said_by = n, part.outputs.name
        return task, golds

    # -- records --------------------------------------------------------------------------

    def _records(self, path: Path) -> Iterator[Record]:
        parts = self._plan(path)
        task, golds = self._all_golds(parts)
        self._seen = {}
        inferred: tuple[str, str] | None = None  # (task, the file it was inferred from)
        for part in parts:
            questions = iter_json_array(part.questions, tracker=self._tracker)
            first = next(questions, None)
            if first is None:
                continue
            file_task = task
            if file_task is None:
                file_task = infer_task(first[1]) if isinstance(first[1], dict) else None
                if file_task is None:
                    raise LoadError("cannot tell the LaMP task: pass task=N", file=part.questions, line=first[0])
                if inferred is not None and inferred[0][0] != file_task[0]:
                    raise LoadError(
                        f"looks like LaMP_{file_task[0]} but {inferred[1]} looked like LaMP_{inferred[0][0]}: "
                        "all files of a load must be one task (pass task=N)",
                        file=part.questions,
                    )
                inferred = inferred or (file_task, part.questions.name)
            if not self._ns_given:
                self.namespace = f"lamp{file_task[0]}"
            yield from self._file_records(part, first, questions, file_task, golds.get(part.questions))

    def _file_records(
        self,
        part: _Part,
        first: tuple[int, Any],
        rest: Iterator[tuple[int, Any]],
        task: str,
        golds: dict[str, str] | None,
    ) -> Iterator[Record]:
        """The records of one questions file; a bad question is rejected whole (``_reject``)."""
        file, ctx = str(part.questions), _Context(part, task, golds)
        for index, (line, q) in enumerate(chain([first], rest)):
            try:
                recs = self._question(Where(file, line), index, q, ctx)
            except LoadError as exc:
                self._reject(_in_question(exc, index, q))
                continue
            yield from recs

    def _question(self, at: Where, index: int, q: Any, ctx: _Context) -> list[Record]:
        """One question -> its profile documents and its example, or a LoadError (nothing kept).

        Counters (duplicate items, dropped fields, seen ids) change only once the whole
        question is good, so a question rejected under ``skip_bad`` leaves no trace.
        """
        if not isinstance(q, dict):
            raise at.error(f"a question must be an object, got {type(q).__name__}")
        qid = as_str(q.get("id"), at, "id", empty_ok=False)
        inp = as_str(q.get("input"), at, "input", empty_ok=False)
        assert qid is not None and inp is not None
        if qid in self._seen:
            raise at.error(f"question id {qid!r} appears twice: it was already loaded from {self._seen[qid]}", "id")
        raw_user = as_str(q.get("user_id"), at, "user_id", required=False, empty_ok=False) or qid
        profile = q.get("profile")
        if not isinstance(profile, list):
            raise at.error(
                "missing" if profile is None else f"must be a list, got {type(profile).__name__}",
                "profile",
            )
        target: str | None = None
        if ctx.golds is not None:
            if qid not in ctx.golds:
                raise at.error(f"no gold output for question {qid!r} in the outputs file", "id")
            target = ctx.golds[qid]
        uid = self.uid(raw_user)
        recs: list[Record] = []
        ids: list[str] = []
        seen_items: set[str] = set()
        drops: list[str] = []
        duplicates = 0
        for i, p in enumerate(profile):
            pre = f"profile[{i}]"
            if not isinstance(p, dict):
                raise at.error(f"must be an object, got {type(p).__name__}", pre)
            raw_id = as_str(p.get("id"), at, f"{pre}.id", required=False, empty_ok=False)
            if raw_id is not None and raw_id in seen_items:
                duplicates += 1  # the same item listed twice: keep the first
                continue
            doc = self._profile_document(at, p, pre, ctx.task, uid, drops)
            recs.append(doc)
            ids.append(doc.doc_id)  # type: ignore[arg-type]  # set by Document's validator
            seen_items.add(doc.doc_id)  # type: ignore[arg-type]
        meta: dict[str, Any] = {"profile_ids": ids}
        if ctx.part.split is not None:
            meta["split"] = ctx.part.split
        recs.append(
            build(
                TaskExample,
                at,
                {"example_id": "id"},
                task=f"lamp-{ctx.task[0]}",
                example_id=qid,
                user_id=uid,
                input=inp,
                target=target,
                metadata=meta,
            )
        )
        self._seen[qid] = f"{ctx.part.questions.name} question[{index}]"
        self.duplicates += duplicates
        self.dropped_fields += len(drops)
        return recs

    def _optional(self, parse: Callable[[], Any], name: str, drops: list[str]) -> Any:
        """``parse()``, or None (``name`` noted in ``drops``) when it fails and
        ``drop_bad_optional`` is on: a bad optional field then costs the field, not the question."""
        try:
            return parse()
        except LoadError:
            if not self.drop_bad_optional:
                raise
            drops.append(name)
            return None

    def _profile_document(
        self, at: Where, p: dict[str, Any], pre: str, task: str, uid: str, drops: list[str]
    ) -> Document:
        """One profile entry (``pre`` is its place, ``profile[i]``) -> the user's document."""
        layout = task
        if task.startswith("2"):  # movies (description, tag) or the older news layout
            layout = "2" if "description" in p else "2-news"
        doc_kind, fields, req = LAMP_TASKS[layout]
        if layout == "2-news" and "category" not in p and "tag" in p:
            req = ("text", "tag")
        for k in req:
            if p.get(k) is None:
                raise at.error("missing", f"{pre}.{k}")
        kw: dict[str, Any] = {}
        for rec_field, key in fields.items():
            name = f"{pre}.{key}"
            if rec_field == "rating":
                kw["rating"] = as_float(p.get(key), at, name)
            elif key in req:
                kw[rec_field] = as_str(p.get(key), at, name, required=rec_field == "text")
            else:
                kw[rec_field] = self._optional(
                    lambda k=key, n=name: as_str(p.get(k), at, n, required=False), name, drops
                )
        meta: dict[str, Any] = {}
        for label in ("tag", "category"):
            if p.get(label) is not None:
                name = f"{pre}.{label}"
                value = (
                    as_str(p[label], at, name)
                    if label in req
                    else self._optional(lambda k=label, n=name: as_str(p[k], at, n), name, drops)
                )
                if value is not None:
                    meta[label] = value
        if layout.startswith("2"):  # the class label, under one key whatever the layout
            meta["label"] = meta[req[1]]
        timestamp = self._optional(lambda: parse_date(p.get("date"), at, f"{pre}.date"), f"{pre}.date", drops)
        if timestamp is not None:
            meta["date"] = p["date"]
        doc_id = as_str(p.get("id"), at, f"{pre}.id", required=False, empty_ok=False)
        names = {
            "doc_id": f"{pre}.id",
            "timestamp": f"{pre}.date",
            **{f: f"{pre}.{k}" for f, k in fields.items()},
        }
        return build(
            Document,
            at,
            names,
            user_id=uid,
            doc_id=doc_id,
            doc_kind=doc_kind,
            timestamp=timestamp,
            metadata=meta,
            **kw,
        )
