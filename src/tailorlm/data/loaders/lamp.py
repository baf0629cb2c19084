"""LaMP benchmark JSON (Salemi et al. 2023): a questions file plus an outputs file.

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
the question has one, else the question id), keyed by the item id; the LaMP-2
label goes to ``metadata["tag"]`` / ``metadata["category"]``, the LaMP-3 score to
``rating``, ``date`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, UTC) to ``timestamp``.
Each question becomes ``TaskExample(task="lamp-N", example_id=id, input,
target=gold output, metadata={"profile_ids": [...]})`` (the ids of that question's
own profile, for evaluations that must retrieve from exactly it).

The outputs file is found next to the questions file (``dev_questions.json`` ->
``dev_outputs.json``) unless ``outputs=`` names it; the task number comes from
``task=``, else the outputs file, else the first question's layout. Default
namespace: ``lamp<N>``.

Memory: the questions array is streamed one question at a time (see
:func:`~tailorlm.data.loaders.base.iter_json_array`), so only one question and its
profile are in memory; the outputs file (ids and short outputs) is read whole with
``json.load``. A question whose JSON is broken cannot be skipped (the array cannot
be resynchronised); a well-formed question with bad fields can (``skip_bad``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailorlm.data.loaders._coerce import as_float, as_str, build
from tailorlm.data.loaders._errors import LoadError, Where
from tailorlm.data.loaders._io import iter_json_array, open_binary
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

_TASK_NAME = re.compile(r"^\s*lamp[\s_-]*([1-7])\s*$", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")


def _task_number(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7:
        return str(value)
    if isinstance(value, str):
        if value.strip() in "1234567" and value.strip():
            return value.strip()
        if m := _TASK_NAME.match(value):
            return m.group(1)
    raise ValueError(f"LaMP task must be 1..7 or 'LaMP_N', got {value!r}")


def _date(value: Any, at: Where, name: str) -> int | None:
    """LaMP dates (``2016``, ``"2016-05"``, ``"2016-05-17"``, ISO 8601) -> Unix seconds (UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        return int(datetime(value, 1, 1, tzinfo=UTC).timestamp())
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
    raise at.error(f"must be a date like '2016-05-17' or a year, got {value!r}", name)


def _infer_task(q: dict[str, Any]) -> str | None:
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
    ) -> None:
        super().__init__(namespace=namespace)
        self._ns_given = namespace is not None
        self.task = _task_number(task) if task is not None else None
        self.outputs = Path(outputs) if outputs is not None else None

    def _paths(self, path: Path) -> tuple[Path, Path | None]:
        if path.is_dir():
            qs = sorted(path.glob("*questions*.json")) + sorted(path.glob("*questions*.json.gz"))
            if len(qs) != 1:
                raise LoadError(f"want exactly one *questions*.json in the folder, found {len(qs)}", file=path)
            path = qs[0]
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        if self.outputs is not None:
            if not self.outputs.is_file():
                raise FileNotFoundError(f"no such outputs file: {self.outputs}")
            return path, self.outputs
        if "questions" in path.name:
            cand = path.with_name(path.name.replace("questions", "outputs"))
            if cand.is_file():
                return path, cand
        return path, None

    def files(self, path: str | Path) -> list[Path]:
        q, o = self._paths(Path(path))
        return [q] if o is None else [q, o]

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

    def _records(self, path: Path) -> Iterator[Record]:
        qpath, opath = self._paths(path)
        task = self.task
        golds: dict[str, str] | None = None
        if opath is not None:
            otask, golds = self._golds(opath)
            if task is None and otask is not None:
                try:
                    task = _task_number(otask)
                except ValueError:
                    raise LoadError(f"unknown task {otask!r}", file=opath, field="task") from None
        questions = iter_json_array(qpath, tracker=self._tracker)
        first = next(questions, None)
        if first is None:
            return
        if task is None:
            task = _infer_task(first[1]) if isinstance(first[1], dict) else None
            if task is None:
                raise LoadError("cannot tell the LaMP task: pass task=N", file=qpath, line=first[0])
        if not self._ns_given:
            self.namespace = f"lamp{task[0]}"
        file = str(qpath)

        def all_questions() -> Iterator[tuple[int, Any]]:
            yield first
            yield from questions

        for n, q in all_questions():
            at = Where(file, n)
            try:
                recs = self._question(at, q, task, golds)
            except LoadError as exc:
                self._reject(exc)
                continue
            yield from recs

    def _question(self, at: Where, q: Any, task: str, golds: dict[str, str] | None) -> list[Record]:
        if not isinstance(q, dict):
            raise at.error(f"a question must be an object, got {type(q).__name__}")
        qid = as_str(q.get("id"), at, "id", empty_ok=False)
        inp = as_str(q.get("input"), at, "input", empty_ok=False)
        assert qid is not None and inp is not None
        raw_user = as_str(q.get("user_id"), at, "user_id", required=False, empty_ok=False) or qid
        profile = q.get("profile")
        if not isinstance(profile, list):
            raise at.error(
                "missing" if profile is None else f"must be a list, got {type(profile).__name__}",
                "profile",
            )
        target: str | None = None
        if golds is not None:
            if qid not in golds:
                raise at.error(f"no gold output for question {qid!r} in the outputs file", "id")
            target = golds[qid]
        uid = self.uid(raw_user)
        recs: list[Record] = []
        ids: list[str] = []
        for i, p in enumerate(profile):
            doc = self._profile_document(at, p, f"profile[{i}]", task, uid)
            recs.append(doc)
            ids.append(doc.doc_id)
        recs.append(
            build(
                TaskExample,
                at,
                {"example_id": "id"},
                task=f"lamp-{task[0]}",
                example_id=qid,
                user_id=uid,
                input=inp,
                target=target,
                metadata={"profile_ids": ids},
            )
        )
        return recs

    def _profile_document(self, at: Where, p: Any, pre: str, task: str, uid: str) -> Document:
        """One profile entry (``pre`` is its place, ``profile[i]``) -> the user's document."""
        if not isinstance(p, dict):
            raise at.error(f"must be an object, got {type(p).__name__}", pre)
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
            if rec_field == "rating":
                kw["rating"] = as_float(p.get(key), at, f"{pre}.{key}")
            else:
                kw[rec_field] = as_str(p.get(key), at, f"{pre}.{key}", required=rec_field == "text")
        meta: dict[str, Any] = {}
        for label in ("tag", "category"):
            if p.get(label) is not None:
                meta[label] = as_str(p[label], at, f"{pre}.{label}")
        if p.get("date") not in (None, ""):
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
            timestamp=_date(p.get("date"), at, f"{pre}.date"),
            metadata=meta,
            **kw,
        )
