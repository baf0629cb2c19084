"""The evaluation harness: hand-checked metrics, bootstrap CIs, the paired test, the generation
cache (a rerun generates nothing new), suite configs, resuming, and the written reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tailorlm.data import Store, User
from tailorlm.eval.cache import CachedGenerator
from tailorlm.eval.judge import JudgeVerdict, PairwiseJudge, rouge_agreement
from tailorlm.eval.metrics import WordNetMissing, meteor_per_example, ranking_per_example, ranking_scores
from tailorlm.eval.report import write_reports
from tailorlm.eval.stats import bootstrap_ci, paired_test, statistic_for
from tailorlm.eval.suite import SuiteConfig, SuiteEnv, load_suite, run_suite
from tailorlm.models.base import GenerationConfig
from tailorlm.testing import FakeGenerator

# -- metrics by hand ------------------------------------------------------------------------


def test_ranking_metrics_by_hand() -> None:
    """Relevant 'b' at rank 2: NDCG = (1/log2 3) / 1, Hit@10 = 1, MRR = 1/2.
    Relevant {b, z}, z never ranked: DCG = 1/log2 3, ideal DCG = 1 + 1/log2 3.
    Relevant 'c' at rank 3 with k=2: NDCG@2 = 0, Hit@2 = 0, MRR (uncut) = 1/3."""
    one = ranking_per_example([["a", "b", "c"]], ["b"], k=10)
    assert one["ndcg@10"] == [pytest.approx(1 / math.log2(3))]
    assert one["hit@10"] == [1.0] and one["mrr"] == [0.5]
    two = ranking_per_example([["a", "b", "c"]], [["b", "z"]], k=10)
    assert two["ndcg@10"] == [pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))]
    cut = ranking_per_example([["a", "b", "c"]], ["c"], k=2)
    assert cut == {"ndcg@2": [0.0], "hit@2": [0.0], "mrr": [pytest.approx(1 / 3)]}
    assert ranking_scores([["a"], ["b"]], ["a", "x"], k=10)["hit@10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no relevant item"):
        ranking_per_example([["a"]], [[]])


def test_meteor_by_hand() -> None:
    """METEOR = Fmean * (1 - 0.5 * (chunks / matches)^3), Fmean = 10PR / (R + 9P).
    'a hound' vs 'a dog': both words match ('hound' via WordNet synonyms), one chunk:
    P = R = 1, penalty 0.5 * (1/2)^3 = 0.0625 -> 0.9375. Nothing in common -> 0."""
    try:
        scores = meteor_per_example(["a hound", "blue sky"], ["a dog", "green grass"])
    except WordNetMissing as e:  # pragma: no cover - CI installs wordnet-base
        pytest.skip(str(e))
    assert scores == [pytest.approx(0.9375), 0.0]


# -- uncertainty ------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(1.0, 1.0, 30), seed=1)
    large = bootstrap_ci(rng.normal(1.0, 1.0, 3000), seed=1)
    for ci in (small, large):
        assert ci.low <= ci.estimate <= ci.high
    assert (large.high - large.low) < (small.high - small.low) / 5  # ~ 1/sqrt(100) narrower
    assert large.low < 1.0 < large.high


def test_rmse_interval_resamples_squared_errors() -> None:
    source, stat = statistic_for("rmse")
    assert source == "sq_error"
    sq = [1.0, 4.0, 9.0, 0.0]
    ci = bootstrap_ci(sq, statistic=stat)
    assert ci.estimate == pytest.approx(math.sqrt(14 / 4))
    assert 0.0 <= ci.low <= ci.estimate <= ci.high <= 3.0
    constant = bootstrap_ci([2.0] * 10)
    assert constant.low == constant.high == 2.0


def test_paired_test_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 200)
    better = base + 0.3 + rng.normal(0, 0.2, 200)
    t = paired_test(better, base)
    assert t.difference == pytest.approx(float(np.mean(better - base)))
    assert t.low > 0 and t.p_value < 0.01
    null = paired_test(base + rng.normal(0, 0.2, 200), base)
    assert null.low < 0 < null.high and null.p_value > 0.05
    with pytest.raises(ValueError, match="same examples"):
        paired_test([1.0, 2.0], [1.0])


# -- the generation cache -------------------------------------------------------------------


def test_cached_generator_answers_repeats_from_disk(tmp_path: Path) -> None:
    fake = FakeGenerator()
    cached = CachedGenerator(fake, tmp_path / "gen.sqlite")
    batch = [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "general kenobi"}]]
    cfg = GenerationConfig(max_new_tokens=8)
    first = cached.generate(batch, config=cfg)
    assert (cached.hits, cached.misses, len(fake.calls)) == (0, 2, 1)
    cached.close()
    again = CachedGenerator(fake, tmp_path / "gen.sqlite")  # a new process would see the same file
    assert again.generate(batch, config=cfg) == first
    assert (again.hits, again.misses, len(fake.calls)) == (2, 0, 1)  # nothing generated
    # A different setting or prompt is a different entry, never a stale answer.
    again.generate(batch[:1], config=GenerationConfig(max_new_tokens=2))
    again.generate([[{"role": "user", "content": "hello there!"}]], config=cfg)
    assert again.misses == 2 and len(fake.calls) == 3
    # Unseeded sampling is not reproducible: passed through, never cached.
    again.generate(batch[:1], config=GenerationConfig(temperature=0.7))
    again.generate(batch[:1], config=GenerationConfig(temperature=0.7))
    assert len(fake.calls) == 5


class ScoringFake(FakeGenerator):
    """Scores choices by their position in the prompt (deterministic), counting calls."""

    def score_choices(self, batch, choices, *, adapter=None):
        self.scored = getattr(self, "scored", 0) + len(batch)
        return np.asarray([[-abs(len(str(c)) - len(str(conv)) % 5) for c in choices] for conv in batch], dtype=float)


def test_cached_scores_round_trip(tmp_path: Path) -> None:
    fake = ScoringFake()
    cached = CachedGenerator(fake, tmp_path / "gen.sqlite")
    batch = [[{"role": "user", "content": f"review {i}"}] for i in range(3)]
    a = cached.score_choices(batch, ["1", "2", "3"])
    b = cached.score_choices(batch, ["1", "2", "3"])
    assert np.array_equal(a, b) and fake.scored == 3
    cached.score_choices(batch, ["1", "2"])  # other choices: other entries
    assert fake.scored == 6


# -- suites -----------------------------------------------------------------------------------


def test_packaged_suites_parse() -> None:
    for name in ("quick", "full", "lamp", "gains"):
        suite = load_suite(name)
        assert suite.rows and all(r.task for r in suite.rows)
        for task in {r.task for r in suite.rows}:
            assert sum(r.baseline for r in suite.rows if r.task == task) <= 1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "x"}, "at least one"),
        ({"name": "x", "rows": [{"task": "amazon-rating"}]}, r"rows\[0\]: give 'method'"),
        ({"name": "x", "rows": [{"task": "nope", "method": "identity"}]}, r"rows\[0\]\.task"),
        ({"name": "x", "rows": [{"task": "amazon-rating", "method": "identity", "predictor": "psychic"}]}, "predictor"),
        ({"name": "x", "rows": [{"task": "amazon-rating", "method": "identity", "colour": 1}]}, "unknown key"),
        ({"name": "x", "rowz": []}, "unknown key"),
        (
            {
                "name": "x",
                "rows": [
                    {
                        "task": "amazon-rating",
                        "methods": ["identity", "rag-bm25"],
                        "predictors": ["majority", "user-offset"],
                    }
                ],
            },
            "several methods or several predictors",
        ),
        ({"name": "x", "rows": [{"task": "amazon-rating", "method": "identity", "predictors": ["x"]}]}, "predictor"),
        (
            {"name": "x", "validation_users": -1, "rows": [{"task": "amazon-rating", "method": "identity"}]},
            "validation",
        ),
    ],
)
def test_suite_config_errors_name_the_place(data: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SuiteConfig.from_dict(data, source="my.toml")


def test_suite_runs_resumes_from_cache_and_writes_every_report(title_store: Store, tmp_path: Path) -> None:
    suite = SuiteConfig.from_dict(
        {
            "name": "t",
            "meteor": False,
            "rows": [
                {"task": "amazon-title", "method": "identity", "predictor": "generate", "users": 6, "baseline": True},
                {"task": "amazon-title", "methods": ["rag-bm25", "recency"], "predictor": "generate", "users": 6},
            ],
        }
    )
    fake = FakeGenerator()
    cache = tmp_path / "gen.sqlite"

    def env() -> SuiteEnv:
        return SuiteEnv(title_store, generator_factory=lambda: CachedGenerator(fake, cache))

    out = tmp_path / "out"
    e1 = env()
    report = run_suite(suite, out_dir=out, env=e1, log=lambda _: None)
    done = [r for r in report["results"] if not r.get("skipped")]
    # 18 conversations; identical prompts built by two methods are generated once (content-addressed).
    assert len(done) == 3 and e1.generator.hits + e1.generator.misses == 18 and e1.generator.misses >= 6
    for r in done:
        ci = r["ci"]["rouge1"]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        assert len(r["rows"]) == 6 and r["system"]["personalize_ms_p99"] >= r["system"]["personalize_ms_p50"]
    rag = next(r for r in done if r["method"] == "rag-bm25")
    assert rag["paired"]["n"] == 6 and "rouge1" in rag["paired"]["tests"]
    calls = len(fake.calls)

    # Same results folder: finished rows are kept, nothing runs.
    e2 = env()
    again = run_suite(suite, out_dir=out, env=e2, log=lambda _: None)
    assert len(fake.calls) == calls and e2._generator is None
    assert [r["metrics"] for r in again["results"]] == [r["metrics"] for r in report["results"]]

    # A fresh results folder with the cache: every row recomputed, no model call made.
    e3 = env()
    fresh = run_suite(suite, out_dir=tmp_path / "out2", env=e3, log=lambda _: None)
    assert len(fake.calls) == calls and e3.generator.misses == 0 and e3.generator.hits == 18
    assert [r["metrics"] for r in fresh["results"]] == [r["metrics"] for r in report["results"]]

    files = write_reports(report, out)
    assert {"json", "markdown", "html", "scores_plot", "gains_plot"} <= set(files)
    md = files["markdown"].read_text()
    assert "rag-bm25 / generate" in md and "(baseline)" in md and "[" in md
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
    assert json.loads(files["json"].read_text())["suite"] == "t"


def test_rows_without_data_are_reported_as_skipped(title_store: Store, tmp_path: Path) -> None:
    suite = SuiteConfig.from_dict(
        {"name": "t", "rows": [{"task": "amazon-rating", "method": "identity", "predictor": "majority"}]}
    )
    report = run_suite(suite, out_dir=tmp_path / "o", env=SuiteEnv(title_store), log=lambda _: None)
    assert "no examples of task 'amazon-rating'" in report["results"][0]["skipped"]


# -- the judge --------------------------------------------------------------------------------


class PositionBiased(FakeGenerator):
    """Always prefers whatever is shown first: both orders disagree, so every verdict is a tie."""

    def score_choices(self, batch, choices, *, adapter=None):
        return np.asarray([[0.0, -1.0] for _ in batch])


class KnowsTheUser(FakeGenerator):
    """Prefers the output that shares a word with the user's samples, in whichever position."""

    def score_choices(self, batch, choices, *, adapter=None):
        out = []
        for conv in batch:
            text = conv[-1]["content"]
            a = text.split("Output A: ")[1].split("\n")[0]
            out.append([0.0, -1.0] if "guitar" in a else [-1.0, 0.0])
        return np.asarray(out)


def test_judge_asks_both_orders_and_cancels_position_bias() -> None:
    items = [(["my guitar is great"], "write a title", "guitar joy", "a thing")] * 3
    assert [v.winner for v in PairwiseJudge(PositionBiased()).compare(items)] == ["tie"] * 3
    assert [v.winner for v in PairwiseJudge(KnowsTheUser()).compare(items)] == ["first"] * 3


def test_rouge_agreement_counts_only_decisive_comparable_pairs() -> None:
    v = [JudgeVerdict("first", "A", "B"), JudgeVerdict("second", "B", "A"), JudgeVerdict("tie", "A", "A")]
    s = rouge_agreement(v, [0.5, 0.5, 0.9], [0.1, 0.2, 0.1])
    assert s["rouge_comparable_pairs"] == 2 and s["agreement_with_rouge"] == pytest.approx(0.5)
    assert s["ties"] == 1 and s["position_consistent"] == pytest.approx(2 / 3)


class _SoftPromptEcho(FakeGenerator):
    """Answers with the sum of the row's soft prompt, so a stale cache entry would show."""

    def generate(self, batch, *, config=None, adapter=None, soft_prompt=None):
        self.calls += 1
        softs = soft_prompt or [None] * len(batch)
        return ["none" if s is None else f"{float(np.asarray(s).sum()):.1f}" for s in softs]


def test_generation_cache_keys_rows_on_their_soft_prompt_values(tmp_path: Path) -> None:
    gen = _SoftPromptEcho()
    gen.calls = 0
    cached = CachedGenerator(gen, tmp_path / "gen.sqlite")
    conv = [{"role": "user", "content": "same text"}]
    a, b = np.ones((2, 4), dtype=np.float32), np.full((2, 4), 2.0, dtype=np.float32)
    assert cached.generate([conv, conv, conv], soft_prompt=[a, b, None]) == ["8.0", "16.0", "none"]
    assert cached.misses == 3
    assert cached.generate([conv, conv], soft_prompt=[b.copy(), a.copy()]) == ["16.0", "8.0"]
    assert cached.generate([conv]) == ["none"]  # no soft prompt: the plain row's entry
    assert (cached.hits, cached.misses, gen.calls) == (3, 3, 1)


def test_suite_training_plan_follows_the_split(title_store: Store) -> None:
    """Global/persona adapters learn from the population only; user adapters stop before the query."""
    from tailorlm.eval.splits import make_split
    from tailorlm.eval.training import plan_jobs

    for u in range(12):
        title_store.add([User(user_id=f"u{u}", gender="woman" if u % 2 else "man")])
    suite = SuiteConfig.from_dict(
        {
            "name": "t",
            "rows": [{"task": "amazon-title", "method": "lora-user", "predictor": "generate", "users": 5}],
            "train": [
                {"method": "lora", "scope": "global", "task": "amazon-title", "config": {"steps": 2}},
                {"method": "lora", "scope": "user", "task": "amazon-title", "users": 3},
                {"method": "lora", "scope": "persona", "task": "amazon-title", "users": 3,
                 "config": {"persona_by": "gender"}},
            ],
        }
    )  # fmt: skip
    jobs, populations = plan_jobs(suite, title_store)
    widest, _ = make_split(title_store, "amazon-title", n_users=5, seed=0)
    held_out = {u for u, _ in widest.queries}
    assert populations["amazon-title"] == widest.population and not held_out & set(widest.population)

    by_scope: dict[str, list] = {}
    for job in jobs:
        by_scope.setdefault(job.scope, []).append(job)
    assert [(j.owner, dict(j.config)) for j in by_scope["global"]] == [("", {"steps": 2})]
    _, queries = make_split(title_store, "amazon-title", n_users=3, seed=0)
    assert {j.owner for j in by_scope["user"]} == {u for u, _ in queries} <= held_out  # the rows' nested sample
    for job in by_scope["user"]:
        (query,) = [ex for (u, _), ex in queries.items() if u == job.owner]
        assert job.config["before"] == query.timestamp  # strictly before the query: never it, never its future
    assert {j.owner for j in by_scope["persona"]} <= {"gender=man", "gender=woman"}
    assert all(j.config["persona_by"] == "gender" for j in by_scope["persona"])


def test_suite_train_entries_are_validated() -> None:
    bad = {"name": "x", "rows": [{"task": "amazon-title", "method": "identity"}]}
    with pytest.raises(ValueError, match=r"train\[0\]: 'users' must be >= 1"):
        SuiteConfig.from_dict(bad | {"train": [{"method": "lora", "scope": "user", "task": "amazon-title"}]})
    with pytest.raises(ValueError, match=r"train\[0\]: unknown key"):
        SuiteConfig.from_dict(bad | {"train": [{"method": "lora", "scope": "global", "task": "amazon-title", "x": 1}]})


def test_model_fingerprint_sees_through_the_generation_cache(tmp_path: Path) -> None:
    """Adapters are registered under the base model's fingerprint; a cached evaluation must find them."""
    from tailorlm.models.base import model_fingerprint

    fake = FakeGenerator()
    fake.path = "/models/smollm2"  # what tells two builds of a model apart
    cached = CachedGenerator(fake, tmp_path / "gen.sqlite")
    assert model_fingerprint(cached) == model_fingerprint(fake)
    assert "gen.sqlite" not in model_fingerprint(cached)


def test_several_queries_per_user_are_resampled_by_user() -> None:
    """Perfectly correlated queries of a user carry one user's worth of evidence: the cluster
    bootstrap's interval is as wide as with one query per user, the query bootstrap's is not."""
    rng = np.random.default_rng(0)
    per_user = rng.normal(0.0, 1.0, 60)
    repeated = np.repeat(per_user, 5)
    users = np.repeat([f"u{i}" for i in range(60)], 5).tolist()
    once = bootstrap_ci(per_user, seed=2)
    naive = bootstrap_ci(repeated, seed=2)
    clustered = bootstrap_ci(repeated, seed=2, groups=users)
    width = lambda c: c.high - c.low  # noqa: E731
    assert clustered.estimate == pytest.approx(once.estimate)
    assert width(clustered) == pytest.approx(width(once), rel=0.25)
    assert width(clustered) > 1.8 * width(naive)
    base = repeated + rng.normal(0.0, 0.05, repeated.size)
    t_naive, t_users = paired_test(repeated + 0.1, base), paired_test(repeated + 0.1, base, groups=users)
    assert t_users.difference == pytest.approx(t_naive.difference)
    # One query per user: grouping changes nothing, bit for bit.
    distinct = [f"u{i}" for i in range(60)]
    assert bootstrap_ci(per_user, seed=2, groups=distinct) == once
    assert paired_test(per_user, per_user * 0.5, groups=distinct) == paired_test(per_user, per_user * 0.5)
    rmse = bootstrap_ci(repeated**2, statistic=statistic_for("rmse")[1], groups=users)
    assert rmse.low <= rmse.estimate <= rmse.high and rmse.estimate == pytest.approx(np.sqrt(np.mean(repeated**2)))
    with pytest.raises(ValueError, match="one group per value"):
        bootstrap_ci(per_user, groups=users)
    with pytest.raises(ValueError, match="mean and root-mean"):
        bootstrap_ci(repeated, statistic=lambda v: float(np.median(v)), groups=users)
