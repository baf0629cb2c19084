"""The registry: format detection, ``load_dataset``'s report and load history, streaming loads."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from loader_samples import AMAZON_ROWS, PERSONACHAT, POPQUORN, RB_INTER, grouplens, jsonl, recbole, write

from tailorlm.data import Store
from tailorlm.data.loaders import LOADERS, LoadError, detect_format, load_dataset, make_loader


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.close()


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a.bin", jsonl(AMAZON_ROWS), gz=True)) == "amazon"
    assert detect_format(write(tmp_path / "c.txt", PERSONACHAT)) == "personachat"
    assert detect_format(write(tmp_path / "p.csv", POPQUORN)) == "popquorn"
    assert detect_format(write(tmp_path / "x.csv", "a,b\n1,2\n")) == "csv"
    assert detect_format(grouplens(tmp_path / "gl")) == "movielens"
    assert detect_format(recbole(tmp_path / "rb") / "ml-tiny.inter") == "movielens"
    assert detect_format(write(tmp_path / "n.txt", "just some prose")) is None
    assert detect_format(tmp_path / "missing") is None
    assert set(LOADERS) == {
        "amazon",
        "movielens",
        "lamp",
        "locomo",
        "personachat",
        "popquorn",
        "jsonl",
        "csv",
    }


def test_auto_format(store: Store, tmp_path: Path) -> None:
    report = load_dataset(store, "auto", write(tmp_path / "c.txt", PERSONACHAT))
    assert report.source == "personachat"


def test_load_report_and_history(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", PERSONACHAT)
    calls: list[tuple[int, int]] = []
    report = load_dataset(store, "personachat", path, progress=lambda d, t: calls.append((d, t)))
    size = path.stat().st_size
    assert calls[-1] == (size, size)
    assert report.records_per_second == pytest.approx(report.records / report.seconds)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    (load,) = store.list_loads()
    assert load["sha256"] == report.sha256 and load["skipped"] == 0
    assert load["counts"] == report.added and load["path"] == str(path.resolve())


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(store, "amazon", tmp_path / "nope.json")
    with pytest.raises(LoadError, match="no MovieLens data"):
        load_dataset(store, "movielens", tmp_path)


def _big(tmp_path: Path, fmt: str, gz: bool) -> Path:
    """About 2 MB (random words, so gzip cannot shrink it much) in the format of ``fmt``."""
    rng = random.Random(0)
    words = [" ".join(f"{rng.getrandbits(40):x}" for _ in range(6)) for _ in range(20_000)]
    if fmt == "amazon":
        rows = [{**AMAZON_ROWS[0], "asin": f"A{i}", "reviewText": w} for i, w in enumerate(words)]
        return write(tmp_path / "big.json", jsonl(rows), gz=gz)
    if fmt == "popquorn":
        head = POPQUORN.split("\n", 1)[0] + "\n"
        body = "".join(f"{i},{i % 50},{w},2.0,Man,White,18-24,Student,College\n" for i, w in enumerate(words))
        return write(tmp_path / "big.csv", head + body, gz=gz)
    if fmt == "personachat":  # many short dialogues: a dialogue is buffered until it ends
        text = "".join(f"1 your persona: i like {w}.\n2 hi {w}\treply {w}\n" for w in words)
        return write(tmp_path / "big.txt", text, gz=gz)
    if fmt == "lamp":
        qs = [
            json.dumps(
                {
                    "id": f"q{i}",
                    "input": f"Paraphrase the following tweet: {w}",
                    "profile": [{"text": w, "id": "1"}],
                }
            )
            for i, w in enumerate(words)
        ]
        return write(tmp_path / "big_questions.json", "[" + ",\n".join(qs) + "]", gz=gz)
    folder = tmp_path / "ml"
    inter = "".join(f"{i % 900}\t{rng.getrandbits(40)}\t{i % 5 + 1}\t{rng.getrandbits(30)}\n" for i in range(100_000))
    write(folder / "ml-big.inter", RB_INTER + inter, gz=gz)
    return folder


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("fmt", ["amazon", "popquorn", "personachat", "lamp", "movielens"])
def test_loaders_stream(tmp_path: Path, fmt: str, gz: bool) -> None:
    """The first records come out after reading a small part of the file, not all of it."""
    from tailorlm.data.loaders import ByteTracker

    path = _big(tmp_path, fmt, gz)
    loader = make_loader(fmt)
    size = sum(p.stat().st_size for p in loader.files(path))
    tracker = ByteTracker(size)
    records = loader.iter_records(path, tracker=tracker)
    for _ in range(5):
        next(records)
    assert size > 200_000 and tracker.read <= 200_000 < size, (tracker.read, size)
    records.close()
