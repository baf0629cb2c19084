"""A suite's rows on Ray actors (local Ray, num_cpus=2) give exactly the rows computed in
process, in suite order, and a rerun reuses them without starting a worker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tailorlm.eval.bench import run_bench
from tailorlm.eval.suite import SuiteConfig
from tailorlm.settings import load_settings

ray = pytest.importorskip("ray")

from tailorlm.eval.ray_rows import RayRowExecutor, RowEnvRecipe  # noqa: E402

HERE = Path(__file__).resolve().parent
SUITE: dict[str, Any] = {
    "name": "rows-on-ray",
    "meteor": False,
    "validation_users": 3,
    "datasets": [{"format": "amazon", "path": "reviews.json"}],
    "rows": [
        {"task": "amazon-rating", "method": "identity", "predictor": "majority", "users": 5, "baseline": True},
        {"task": "amazon-rating", "method": "identity", "predictors": ["user-mean", "global-text"], "users": 5},
        {"task": "amazon-rating", "method": "identity", "predictor": "user-offset", "users": 5, "queries_per_user": 2},
    ],
}


@dataclass(frozen=True)
class LoggedRecipe(RowEnvRecipe):
    """The bench's recipe, noting which process built each worker's environment."""

    log: str = ""

    def __call__(self) -> Any:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().__call__()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}}
    )
    yield
    ray.shutdown()


def _reviews(path: Path) -> None:
    words = ["warm tone", "bright strings", "sturdy stand", "quiet pedal", "loud amp", "soft pick"]
    lines = []
    for u in range(14):
        for i in range(5):
            w = words[(u * 2 + i) % len(words)]
            r = {"reviewerID": f"U{u}", "asin": f"B{(u + i) % 9}", "reviewerName": f"U{u}", "helpful": [0, 0],
                 "reviewText": f"I like the {w} a lot", "overall": float(1 + (u + 2 * i) % 5), "summary": w,
                 "unixReviewTime": 1_300_000_000 + i, "reviewTime": "01 1, 2011"}  # fmt: skip
            lines.append(json.dumps(r))
    path.write_text("\n".join(lines) + "\n")


def test_rows_on_ray_equal_rows_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_cluster: None) -> None:
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    data = tmp_path / "data"
    data.mkdir()
    _reviews(data / "reviews.json")
    settings = load_settings(cache_dir=tmp_path / "cache")
    suite = SuiteConfig.from_dict(SUITE)
    log = tmp_path / "workers.log"
    executor = RayRowExecutor(LoggedRecipe(settings, store_url="", log=str(log)), workers=2, threads_per_worker=1)

    def run(out: str, **kw: Any) -> dict[str, Any]:
        files = run_bench(suite, settings=settings, out_dir=tmp_path / out, data_dir=data, log=lambda _: None, **kw)
        return json.loads(files["json"].read_text())

    here = run("local")
    there = run("ray", row_executor=executor)
    pids = set(log.read_text().split())
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two actors, each built its environment once
    assert [r["name"] for r in there["results"]] == [r["name"] for r in here["results"]]  # suite order
    for a, b in zip(here["results"], there["results"], strict=True):
        assert not b["reused"] and b["metrics"] == a["metrics"] and b["per_example"] == a["per_example"]
        assert b["rows"] == a["rows"] and b["ci"] == a["ci"] and b.get("paired") == a.get("paired")
        assert {**b["validation"], "seconds": 0} == {**a["validation"], "seconds": 0}
    assert (
        len(there["results"][3]["rows"]) == 10 and there["results"][3]["paired"]["n"] == 5
    )  # the baseline asks one each

    again = run("ray", row_executor=executor)
    assert [r["reused"] for r in again["results"]] == [True] * 4
    assert set(log.read_text().split()) == pids  # nothing to compute: no worker was started


def test_tailorlm_bench_executor_ray_runs_the_rows_on_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_cluster: None
) -> None:
    from typer.testing import CliRunner

    from tailorlm.cli import app

    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    _reviews(tmp_path / "data" / "reviews.json")
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "cli-ray"\nmeteor = false\n[[datasets]]\nformat = "amazon"\npath = "reviews.json"\n'
        '[[rows]]\ntask = "amazon-rating"\nmethod = "identity"\npredictors = ["majority", "user-mean"]\nusers = 5\n'
    )
    args = ["bench", "--suite", str(suite), "--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local")], catch_exceptions=False)

    def not_here(*_: Any) -> None:
        raise AssertionError("a row ran in the driver")

    monkeypatch.setattr("tailorlm.eval.suite._run_row", not_here)  # the actors import their own
    on_ray = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--executor", "ray"], catch_exceptions=False)
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["results"] for d in ("local", "ray"))
    assert [r["metrics"] for r in b] == [r["metrics"] for r in a] and not any(r["reused"] for r in b)
