"""``tailorlm bench``: load a suite's data, run its grid with cached model calls, judge, and write reports.

The working store and the generation cache live in the cache folder
(``<cache>/bench/<suite>/``), not beside the results, so results folders stay small
enough to commit and a rerun finds both again. A committed ``results.json`` is not
trusted blindly: a row is reused only when its fingerprint (settings, data hashes,
model, package version) matches, and ``fresh`` recomputes every row without answering
model calls from the generation cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailorlm.data import Store
from tailorlm.eval.cache import CachedEmbedder, CachedGenerator
from tailorlm.eval.fingerprint import embedder_fingerprint as settings_embedder_fingerprint
from tailorlm.eval.fingerprint import generator_fingerprint
from tailorlm.eval.judge import PairwiseJudge, judge_report
from tailorlm.eval.report import write_reports
from tailorlm.eval.suite import SuiteConfig, SuiteEnv, load_datasets, run_suite

__all__ = ["run_bench"]


def _judge_generator(cfg: dict[str, Any], default: Any, cache: Path, *, refresh: bool = False) -> Any:
    """The suite's judge: the local generator by default, or any OpenAI-compatible server."""
    if cfg.get("backend", "local") == "local":
        return default
    if cfg["backend"] != "openai":
        raise ValueError(f"judge.backend must be 'local' or 'openai', got {cfg['backend']!r}")
    from tailorlm.models.openai_http import OpenAICompatibleGenerator

    if not cfg.get("base_url") or not cfg.get("model"):
        raise ValueError("an 'openai' judge needs judge.base_url and judge.model")
    gen = OpenAICompatibleGenerator(cfg["base_url"], model=cfg["model"], api_key=cfg.get("api_key"))
    return CachedGenerator(gen, cache, refresh=refresh)


# long: one linear pipeline (datasets, training, rows, judge, report) with its documented options
def run_bench(
    suite: SuiteConfig,
    *,
    settings: Any,
    out_dir: Path,
    data_dir: Path | None,
    fresh: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
    generator_factory: Callable[[], Any] | None = None,
    embedder_factory: Callable[[], Any] | None = None,
    model_fingerprint: str | None = None,
    embedder_fingerprint: str | None = None,
    train_executor: Callable[[Store], Any] | None = None,
    row_executor: Any = None,
) -> dict[str, Path]:
    """Run ``suite`` into ``out_dir``; returns the written files (json, markdown, plots, html).

    The models are fingerprinted from ``settings`` without loading them; a test that
    injects ``generator_factory`` / ``embedder_factory`` names what they build with
    ``model_fingerprint`` / ``embedder_fingerprint``. ``fresh`` (``force`` is its
    deprecated name) recomputes every row and bypasses the generation cache's old entries.
    ``train_executor(store)`` builds the executor of the suite's ``[[train]]`` queue (e.g. Ray
    actors opening the bench store); None trains in this process. ``row_executor`` (a
    :class:`~tailorlm.eval.ray_rows.RayRowExecutor`) evaluates the rows on Ray actors that open
    the bench's store and caches; None evaluates them here.
    """
    from tailorlm.models import build_embedder, build_generator

    fresh = fresh or force
    if model_fingerprint is None and generator_factory is None:
        model_fingerprint = generator_fingerprint(settings)
    if embedder_fingerprint is None and embedder_factory is None:
        embedder_fingerprint = settings_embedder_fingerprint(settings)

    work = Path(settings.cache_dir) / "bench" / suite.name
    work.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{work / 'store.db'}")
    try:
        datasets = load_datasets(store, suite, data_dir, Path(settings.cache_dir), log)
        gen_cache = work / "generations.sqlite"
        make_generator = generator_factory or (lambda: build_generator(settings))
        env = SuiteEnv(
            store,
            generator_factory=lambda: CachedGenerator(make_generator(), gen_cache, refresh=fresh),
            # Vectors persist in the work folder: planning persona adapters and fitting
            # clustered personas re-embed the population's history in every run otherwise.
            embedder_factory=embedder_factory
            or (lambda: CachedEmbedder(build_embedder(settings), work / "embeddings.sqlite")),
        )
        training: list[dict[str, Any]] = []
        if suite.train:
            from tailorlm.eval.training import run_training

            executor = train_executor(store) if train_executor is not None else None
            training = run_training(
                suite, store, generator=env.generator, embedder=env.embedder, work=work, log=log, progress=progress,
                executor=executor,
            )  # fmt: skip
        report = run_suite(
            suite,
            out_dir=out_dir,
            env=env,
            fresh=fresh,
            log=log,
            progress=progress,
            datasets=datasets,
            model_fingerprint=model_fingerprint,
            embedder_fingerprint=embedder_fingerprint,
            row_executor=None
            if row_executor is None
            else row_executor.for_bench(store=store, work=work, refresh=fresh),
        )
        if training:
            report["training"] = training
        if suite.judge.get("pairs", 0) > 0 and env.generator is not None:
            log("judging generation rows against their baselines (both orders)")
            judge_gen = _judge_generator(suite.judge, env.generator, work / "judge.sqlite", refresh=fresh)
            judge = PairwiseJudge(judge_gen, samples=int(suite.judge.get("samples", 3)))
            report["judge"] = judge_report(
                report, store, judge, tasks=suite.judge.get("tasks"), pairs=int(suite.judge["pairs"])
            )
        gen = env._generator
        if isinstance(gen, CachedGenerator):
            report["generation_cache"] = {"path": str(gen.path), "hits": gen.hits, "misses": gen.misses}
        (out_dir / "results.json").write_text(json.dumps(report))
        return write_reports(report, out_dir)
    finally:
        store.close()
