"""A method x task x dataset grid from a TOML file: resumable, with CIs, paired tests and system figures.

A suite names the datasets to load (from a data folder, or fetched), then rows: a
task, one or more method specs, a predictor and a number of evaluated users. Every
row of a task uses the same seeded user split (samples are nested, so rows with
different user counts share their common queries), and each task has one baseline
row the others are tested against, pairwise on those common queries.

Resuming works at two levels: a finished row in ``results.json`` is reused only when
its fingerprint matches (the row's settings, the data files' hashes, the model and the
package version; :mod:`tailorlm.eval.fingerprint`), so a rerun recomputes exactly what
changed and a committed ``results.json`` is never mistaken for a reproduction; inside
a row that runs, every model call is answered from the generation cache
(:mod:`tailorlm.eval.cache`). ``fresh=True`` ignores both.

Example (``suites/quick.toml`` ships with the package)::

    name = "quick"
    [[datasets]]
    format = "amazon"
    path = "amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz"
    [[rows]]
    task = "amazon-rating"
    methods = ["identity"]
    predictor = "majority"
    users = 100
    baseline = true
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tailorlm.data import Store
from tailorlm.eval.compare import paired, primary_metrics, with_uncertainty
from tailorlm.eval.fingerprint import PreviousRows, data_fingerprint, package_version, row_fingerprint
from tailorlm.eval.runner import LLM_PREDICTORS, PREDICTORS, is_personalized, run_method
from tailorlm.eval.splits import SPLIT_KINDS
from tailorlm.eval.training import TrainSpec
from tailorlm.personalize.registry import needs_of
from tailorlm.tasks import get_task

__all__ = ["DatasetSpec", "RowSpec", "SuiteConfig", "load_suite", "primary_metrics", "run_suite"]

SUITES_DIR = Path(__file__).parent / "suites"
NEEDS_MODEL = set(LLM_PREDICTORS)  # predictors whose answers come from the LLM


@dataclass(frozen=True)
class DatasetSpec:
    format: str
    path: str | None = None  # relative to the data folder, or absolute
    fetch: str | None = None  # a fetchable dataset ("movielens-100k") used when ``path`` is absent
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowSpec:
    task: str
    method: str
    predictor: str = "auto"
    users: int = 50
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    label: str | None = None
    baseline: bool = False
    k: int | None = None
    personalized: bool | None = None  # None: inferred (eval.runner.is_personalized)
    queries_per_user: int = 1  # each user's latest examples up to this many (eval.splits)

    def __post_init__(self) -> None:
        if self.queries_per_user < 1:
            raise ValueError(f"queries_per_user must be >= 1, got {self.queries_per_user}")

    @property
    def name(self) -> str:
        return self.label or f"{self.method} / {self.predictor}"

    def key(self, suite: SuiteConfig) -> str:
        """Every setting that determines this row's result (not its label): the row, the suite's
        seed, split, METEOR switch and budget, and the adapters trained for its task."""
        blob = {k: v for k, v in asdict(self).items() if k not in ("label", "baseline", "personalized")}
        if self.queries_per_user == 1:  # only otherwise, so rows with one query per user keep their keys
            del blob["queries_per_user"]
        blob |= {"seed": suite.seed, "split": suite.split, "meteor": suite.meteor, "budget": suite.budget_tokens}
        if suite.validation_users:  # only then, so suites without validation keep their keys
            blob["validation"] = {"users": suite.validation_size(self), "reserve": suite.reserve(self.task)}
        train = [asdict(t) for t in suite.train if t.task == self.task]
        if train:  # only then, so rows of tasks without training keep their keys
            blob["train"] = train
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    rows: tuple[RowSpec, ...]
    datasets: tuple[DatasetSpec, ...] = ()
    seed: int = 0
    split: str = "auto"  # auto | user | time | given (eval.splits); auto: the dataset's own split if any
    meteor: bool = True
    budget_tokens: int = 1024
    description: str = ""
    judge: dict[str, Any] = field(default_factory=dict)
    train: tuple[TrainSpec, ...] = ()  # adapters the parametric rows need, trained first
    # Each row is also evaluated on up to this many validation users (disjoint from every
    # test user of its task): the gain table picks its rows on them. 0: no validation runs.
    validation_users: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLIT_KINDS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_KINDS)}; got {self.split!r}")
        if self.validation_users < 0:
            raise ValueError(f"validation_users must be >= 0, got {self.validation_users}")

    def reserve(self, task: str) -> int:
        """The most users any row of ``task`` is tested on: validation users stay clear of them."""
        return max((r.users for r in self.rows if r.task == task), default=0)

    def validation_size(self, row: RowSpec) -> int:
        return min(row.users, self.validation_users)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> SuiteConfig:
        def fail(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg}")

        known = {
            "name",
            "rows",
            "datasets",
            "seed",
            "split",
            "meteor",
            "budget_tokens",
            "description",
            "judge",
            "train",
            "validation_users",
        }
        if unknown := sorted(set(data) - known):
            raise fail(f"unknown key(s) {unknown}; known: {sorted(known)}")
        if not data.get("rows"):
            raise fail("a suite needs at least one [[rows]] entry")
        rows: list[RowSpec] = []
        for i, r in enumerate(data["rows"]):
            where = f"rows[{i}]"
            r = dict(r)
            methods = r.pop("methods", None) or ([r.pop("method")] if "method" in r else None)
            if not methods:
                raise fail(f"{where}: give 'method' or 'methods'")
            predictors = r.pop("predictors", None) or [r.pop("predictor", "auto")]
            if len(methods) > 1 and len(predictors) > 1:
                raise fail(f"{where}: give several methods or several predictors, not both")
            if "task" not in r:
                raise fail(f"{where}: missing 'task'")
            try:
                get_task(r["task"])
            except (KeyError, ValueError) as e:
                raise fail(f"{where}.task: {e}") from None
            for pred in predictors:
                if pred not in PREDICTORS:
                    raise fail(f"{where}.predictor: {pred!r} is not one of {PREDICTORS}")
            allowed = {f.name for f in fields(RowSpec)} - {"method"}
            if unknown := sorted(set(r) - allowed):
                raise fail(f"{where}: unknown key(s) {unknown}")
            if len(methods) * len(predictors) > 1 and r.get("label"):
                raise fail(f"{where}: 'label' needs a single method and predictor")
            if r.get("baseline") and len(methods) * len(predictors) > 1:
                raise fail(f"{where}: a baseline row names one method and one predictor")
            try:
                rows += [RowSpec(method=m, predictor=pred, **r) for m in methods for pred in predictors]
            except (TypeError, ValueError) as e:
                raise fail(f"{where}: {e}") from None
        for task in {r.task for r in rows}:
            n = sum(r.baseline for r in rows if r.task == task)
            if n > 1:
                raise fail(f"task {task!r} has {n} baseline rows; mark one")
        datasets = tuple(DatasetSpec(**d) for d in data.get("datasets", []))
        train: list[TrainSpec] = []
        for i, t in enumerate(data.get("train", [])):
            allowed = {"method", "scope", "task", "users", "config"}
            if unknown := sorted(set(t) - allowed):
                raise fail(f"train[{i}]: unknown key(s) {unknown}; known: {sorted(allowed)}")
            if missing := sorted({"method", "scope", "task"} - set(t)):
                raise fail(f"train[{i}]: missing {missing}")
            try:
                get_task(t["task"])
                train.append(TrainSpec(**t))
            except (KeyError, ValueError, TypeError) as e:
                raise fail(f"train[{i}]: {e}") from None
        rest = {k: v for k, v in data.items() if k not in ("rows", "datasets", "train")}
        try:
            return cls(rows=tuple(rows), datasets=datasets, train=tuple(train), **rest)
        except ValueError as e:
            raise fail(str(e)) from None


def load_suite(name_or_path: str | Path) -> SuiteConfig:
    """A packaged suite by name (``quick``, ``full``) or a TOML file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
            raise ValueError(f"unknown suite {str(name_or_path)!r}; packaged suites: {known}, or give a .toml path")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML: {e}") from None
    return SuiteConfig.from_dict(data, source=str(path))


@dataclass
class SuiteEnv:
    """What rows run against: the store and, lazily, the models (only rows that need them load them)."""

    store: Store
    generator_factory: Callable[[], Any] | None = None
    embedder_factory: Callable[[], Any] | None = None
    _generator: Any = None
    _embedder: Any = None

    @property
    def generator(self) -> Any:
        if self._generator is None and self.generator_factory is not None:
            self._generator = self.generator_factory()
        return self._generator

    @property
    def embedder(self) -> Any:
        if self._embedder is None and self.embedder_factory is not None:
            self._embedder = self.embedder_factory()
        return self._embedder


def _needs_embedder(row: RowSpec) -> bool:
    """Whether the row's methods embed (dense retrieval, clustered personas, user vectors),
    as their configs declare it with the row's overrides applied."""
    return "embedder" in needs_of(row.method, row.overrides)


def load_datasets(
    store: Store, suite: SuiteConfig, data_dir: Path | None, cache_dir: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Load the suite's datasets that can be found; report what was loaded or why not."""
    from tailorlm.data.loaders import load_dataset

    out = []
    for ds in suite.datasets:
        path = Path(ds.path) if ds.path else None
        if path is not None and not path.is_absolute() and data_dir is not None:
            path = data_dir / path
        if (path is None or not path.exists()) and ds.fetch:
            from tailorlm.data.fetch import fetch_movielens_100k

            if ds.fetch != "movielens-100k":
                raise ValueError(f"unknown fetchable dataset {ds.fetch!r}")
            log(f"{ds.format}: {path} not found; fetching {ds.fetch}")
            path = fetch_movielens_100k(cache_dir)
        if path is None or not path.exists():
            out.append({"format": ds.format, "path": str(path), "loaded": False, "reason": "not found"})
            log(f"{ds.format}: {path} not found; rows of its tasks are skipped")
            continue
        t0 = time.perf_counter()
        report = load_dataset(store, ds.format, path, **ds.options)
        seconds = time.perf_counter() - t0
        out.append(
            {
                "format": ds.format,
                "path": str(path),
                "loaded": True,
                "records": report.records,
                "seconds": seconds,
                "records_per_s": report.records / seconds if seconds > 0 else None,
                "sha256": report.sha256,
            }
        )
    return out


def run_suite(
    suite: SuiteConfig,
    *,
    out_dir: Path,
    env: SuiteEnv,
    fresh: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
    datasets: Sequence[dict[str, Any]] = (),
    model_fingerprint: str | None = None,
    embedder_fingerprint: str | None = None,
    row_executor: Any = None,
) -> dict[str, Any]:
    """Run every row that no row of ``out_dir/results.json`` matches by fingerprint; write
    results after each row, so an interrupted run keeps what it finished.

    ``row_executor``: where the rows to compute run (None: here, one after another; a
    :class:`~tailorlm.eval.ray_rows.RayRowExecutor`: on Ray actors, several at once).

    ``datasets`` is :func:`load_datasets`' report (its hashes are the rows' data part).
    ``model_fingerprint`` / ``embedder_fingerprint`` name the models ``env`` would build,
    without building them (a rerun that reuses everything loads no model); when not given
    they are recorded as ``"unspecified"``. ``fresh`` (``force`` is its old name)
    recomputes every row.
    """
    fresh = fresh or force
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    previous = PreviousRows() if fresh else PreviousRows.read(results_path)
    report: dict[str, Any] = {
        "suite": suite.name,
        "description": suite.description,
        "config": asdict(suite),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "datasets": list(datasets),
        "reuse": {"fresh": fresh, "reused": 0, "computed": 0},
        "results": [],
    }
    fingerprint = _fingerprinter(suite, datasets, model_fingerprint, embedder_fingerprint)
    tasks_in_store = env.store.list_tasks()
    slots: list[dict[str, Any] | None] = [None] * len(suite.rows)  # results in suite order
    todo: list[tuple[int, dict[str, Any]]] = []
    where = [f"[{i + 1}/{len(suite.rows)}] {row.task} {row.name}" for i, row in enumerate(suite.rows)]
    for i, row in enumerate(suite.rows):
        fp = fingerprint(row)
        if (old := previous.match(fp)) is not None:
            slots[i] = _reused(old, row)
            report["reuse"]["reused"] += 1
            log(f"{where[i]}: reused (fingerprint matches)")
            continue
        head = {"key": row.key(suite), "name": row.name, "task": row.task, "method": row.method}
        head |= {"baseline": row.baseline, "reused": False, "fingerprint": fp} | _kind_of(row)
        if not tasks_in_store.get(row.task):
            slots[i] = head | {"skipped": f"no examples of task {row.task!r} (dataset not loaded)"}
            log(f"{where[i]}: skipped, no data")
            continue
        if row.predictor in NEEDS_MODEL and env.generator_factory is None and env._generator is None:
            slots[i] = head | {"skipped": "needs a generator"}
            continue
        if why := "fresh run" if fresh else previous.why_not(fp, task=row.task, name=row.name):
            head["recomputed_because"] = why
            log(f"{where[i]}: recomputing ({why})")
        todo.append((i, head))
    report["results"] = [r for r in slots if r is not None]
    if row_executor is None:
        done = ((i, _run_row(suite, suite.rows[i], env, head, progress)) for i, head in todo)
    else:
        done = row_executor.run(suite, todo)
    for i, res in done:
        slots[i] = res
        report["reuse"]["computed"] += 1
        log(f"{where[i]}: {_short(res)} ({res['wall_s']:.0f}s)")
        report["results"] = [r for r in slots if r is not None]
        _finish(report, suite)
        results_path.write_text(json.dumps(report))  # after every row: an interrupted run keeps its rows
    _finish(report, suite)
    results_path.write_text(json.dumps(report))
    return report


def _fingerprinter(
    suite: SuiteConfig, datasets: Sequence[dict[str, Any]], generator: str | None, embedder: str | None
) -> Callable[[RowSpec], dict[str, Any]]:
    """A row's fingerprint. Its model part names only the models the row uses: a model-free
    row (majority, BM25 ranking) stays reusable when the generator changes."""
    data = data_fingerprint(suite.datasets, datasets)
    version = package_version()

    def of(row: RowSpec) -> dict[str, Any]:
        model: dict[str, str] = {}
        if row.predictor in NEEDS_MODEL or _uses_generator(row):
            model["generator"] = generator or "unspecified"
        if _needs_embedder(row):
            model["embedder"] = embedder or "unspecified"
        return row_fingerprint(settings=row.key(suite), data=data, model=model, version=version)

    return of


def _reused(old: dict[str, Any], row: RowSpec) -> dict[str, Any]:
    """An earlier row as this run's: its label, baseline and personalized marks may have been
    edited (they are not in the fingerprint), and its paired tests are redone against this
    run's baseline."""
    kept = {k: v for k, v in old.items() if k not in ("paired", "recomputed_because")}
    return kept | {"name": row.name, "baseline": row.baseline, "reused": True} | _kind_of(row)


def _kind_of(row: RowSpec) -> dict[str, bool]:
    """What the gain table needs to tell rows apart: does the row use the user's own data,
    and do its predictions come from the LLM."""
    free_text = get_task(row.task).kind in ("generation", "qa")
    predictor = "generate" if row.predictor == "auto" and free_text else row.predictor
    personalized = is_personalized(row.method, predictor) if row.personalized is None else row.personalized
    return {"personalized": personalized, "uses_llm": predictor in NEEDS_MODEL or row.predictor == "auto"}


def _run_row(
    suite: SuiteConfig,
    row: RowSpec,
    env: SuiteEnv,
    head: dict[str, Any],
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    """Evaluate one row (and, when the suite asks, the same row on its validation users); the
    models are handed only to rows that use them (so others never load them)."""
    t0 = time.perf_counter()

    def run(role: str, users: int, name: str) -> dict[str, Any]:
        return run_method(
            env.store,
            method=row.method,
            task=row.task,
            n_users=users,
            split=suite.split,
            seed=suite.seed,
            predictor=row.predictor,
            generator=env.generator if row.predictor in NEEDS_MODEL or _uses_generator(row) else None,
            embedder=env.embedder if _needs_embedder(row) else None,
            budget_tokens=suite.budget_tokens,
            k=row.k,
            overrides=row.overrides,
            meteor=suite.meteor,
            progress=(lambda d, t: progress(name, d, t)) if progress else None,
            role=role,  # type: ignore[arg-type]
            reserve=suite.reserve(row.task),
            queries_per_user=row.queries_per_user,
        ).to_dict()

    res = run("test", row.users, f"{row.task} {row.name}")
    if suite.validation_users:
        val = run("validation", suite.validation_size(row), f"{row.task} {row.name} [validation]")
        n = len(val["rows"])
        res["validation"] = {"n": n, "metrics": val["metrics"], "chosen": val["chosen"], "seconds": val["seconds"]}
    return with_uncertainty(head | res | {"wall_s": time.perf_counter() - t0}, suite.seed)


def _uses_generator(row: RowSpec) -> bool:
    """Profile summaries and persona descriptions are written by the model even for model-free predictors."""
    return "generator" in needs_of(row.method, row.overrides)


def _finish(report: dict[str, Any], suite: SuiteConfig) -> None:
    """Attach paired tests against each task's baseline row."""
    done = [r for r in report["results"] if not r.get("skipped")]
    for task in {r["task"] for r in done}:
        base = next((r for r in done if r["task"] == task and r.get("baseline")), None)
        for r in done:
            if r["task"] == task and base is not None and r is not base:
                r["paired"] = paired(r, base, suite.seed, base["name"])


def _short(res: dict[str, Any]) -> str:
    parts = []
    for metric in primary_metrics(get_task(res["task"]).kind):
        if metric in res["ci"]:
            c = res["ci"][metric]
            parts.append(f"{metric} {c['estimate']:.3f} [{c['low']:.3f}, {c['high']:.3f}]")
    return ", ".join(parts)
