"""benchmarks/compare_dtypes.py on two tiny synthetic bench reports (never the real results).

Run B lists its rows and, within a row, its examples in another order than run A, so a
comparison that paired by position instead of by (user_id, example_id) would find
differences where there are none and miss the one there is.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_dtypes.py"


def _load_script() -> ModuleType:
    """The script is not a package module: load it by path (as tests/test_make_lamp_from_amazon.py does)."""
    spec = importlib.util.spec_from_file_location("compare_dtypes", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


cd = _load_script()


def _row(task: str, name: str, examples: list[tuple[str, str, str, float]], tps: float) -> dict[str, Any]:
    """A bench result row: ``examples`` are (user_id, example_id, answer, rouge1) in row order."""
    return {
        "task": task,
        "name": name,
        "method": name.split(" / ")[0],
        "metrics": {"rouge1": sum(e[3] for e in examples) / len(examples), "bleu": 1.0, "n": len(examples)},
        "ci": {"rouge1": {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95}},
        "rows": [{"user_id": u, "example_id": x, "gold": f"gold {u} {x}", "answer": a} for u, x, a, _ in examples],
        "per_example": {"rouge1": [e[3] for e in examples]},
        "system": {"predict_seconds": 10.0, "generated_tokens": int(tps * 10), "generated_tokens_per_s": tps},
        "fingerprint": {"model": {"generator": "local|fake|dtype=?"}},
    }


def _write(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"suite": "dtype", "when": "now", "results": rows}))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = _write(
        tmp_path / "float32",
        [
            _row("title", "identity / generate", [("u1", "e1", "same", 0.5), ("u2", "e2", "fp32 text", 0.2)], 8.0),
            _row("chat", "rag / generate", [("u1", "t1", "hi", 0.3), ("u2", "t2", "yo", 0.1)], 20.0),
        ],
    )
    b = _write(
        tmp_path / "bfloat16",
        [  # rows and examples in the other order
            _row("chat", "rag / generate", [("u2", "t2", "yo", 0.1), ("u1", "t1", "hi", 0.3)], 5.0),
            _row("title", "identity / generate", [("u2", "e2", "bf16 text", 0.6), ("u1", "e1", "same", 0.5)], 2.0),
        ],
    )
    return a, b


def test_pairs_rows_and_examples_by_id(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = runs
    out = tmp_path / "out"
    result = cd.main(["--a", str(a), "--b", str(b), "--out", str(out)])

    rows = {(r["task"], r["name"]): r for r in result["rows"]}
    assert list(rows) == [("title", "identity / generate"), ("chat", "rag / generate")]  # A's order

    title = rows[("title", "identity / generate")]
    assert title["n"] == 2
    assert title["identical_answers"] == 1 and title["identical_share"] == pytest.approx(0.5)  # by position: 0
    m = title["metrics"]["rouge1"]
    assert m["a"] == pytest.approx(0.35) and m["b"] == pytest.approx(0.55)
    assert m["difference"] == pytest.approx(0.2)  # B - A
    assert title["tokens_per_s"] == {"a": 8.0, "b": 2.0}

    chat = rows[("chat", "rag / generate")]
    assert chat["identical_share"] == 1.0  # by position the answers would all differ
    c = chat["metrics"]["rouge1"]
    assert c["difference"] == 0.0 and c["low"] == 0.0 and c["high"] == 0.0 and c["p_value"] == 1.0
    assert list(title["metrics"]) == ["rouge1"]  # bleu has no per-example values: no paired test

    saved = json.loads((out / "compare.json").read_text())
    assert saved["rows"][0]["identical_answers"] == 1 and saved["labels"] == {"a": "float32", "b": "bfloat16"}
    table = (out / "compare.md").read_text()
    assert "| title | identity / generate | 2 | 1/2 | rouge1 | 0.3500 | 0.5500 |" in table
    assert "bfloat16 - float32" in table


def test_refuses_runs_on_different_examples(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = runs
    report = json.loads((b / "results.json").read_text())
    report["results"][1]["rows"][0]["example_id"] = "e9"  # u2/e2 became u2/e9 in B
    (b / "results.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"different examples \(1 only in A: u2/e2; 1 only in B: u2/e9\)"):
        cd.main(["--a", str(a), "--b", str(b), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "compare.json").exists()


def test_refuses_per_example_values_not_aligned_with_rows(runs: tuple[Path, Path]) -> None:
    a, _ = runs
    row = cd.load_run(a)["results"][0]
    row["per_example"]["rouge1"].pop()
    with pytest.raises(ValueError, match=r"per_example\['rouge1'\] has 1 values for 2 examples"):
        cd.compare_rows(row, row)
