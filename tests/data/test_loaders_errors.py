"""Malformed input, every format, plain and gzip: the error names file, line and field;
without skip_bad nothing is committed (even after a flush inside the transaction); with
skip_bad the good records are stored and the bad unit is counted."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tailorlm.data import Document, Store
from tailorlm.data.loaders import LoadError, load_dataset, make_loader

BATCH = 2000  # load_dataset's default batch_size: every case has more good records than this


@dataclass
class Case:
    fmt: str
    # write(folder, bad_unit_or_None) -> path to load; the bad unit sits after > BATCH records
    write: Callable[[Path, bytes | None], Path]
    bad: bytes
    file: str  # the file name the error must name
    line: int
    field: str | None
    message: str
    options: dict = field(default_factory=dict)


def _put(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- Amazon ------------------------------------------------------------------------------

AMAZON_GOOD = 500  # x (document, interaction, 2 examples, some users) > BATCH records


def _amazon_line(i: int) -> bytes:
    r = {
        "reviewerID": f"U{i % 40}",
        "asin": f"B{i:05d}",
        "reviewerName": f"name {i % 40}",
        "helpful": [0, i % 3],
        "reviewText": f"review number {i}",
        "overall": float(1 + i % 5),
        "summary": f"summary {i}",
        "unixReviewTime": 1_300_000_000 + i,
        "reviewTime": "01 01, 2011",
    }
    return json.dumps(r).encode() + b"\n"


def _amazon(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        lines = [_amazon_line(i) for i in range(AMAZON_GOOD)]
        lines += [bad] if bad is not None else []
        lines += [_amazon_line(i) for i in range(AMAZON_GOOD, AMAZON_GOOD + 5)]
        return _put(folder / "reviews.json.gz", b"".join(lines), gz)

    return write


# -- MovieLens (RecBole and GroupLens layouts) -------------------------------------------

ML_GOOD = 1100  # x (interaction, example) > BATCH


def _recbole(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        rows = [b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"]
        rows += [f"{i % 30}\t{i}\t{1 + i % 5}\t{880000000 + i}\n".encode() for i in range(ML_GOOD)]
        rows += [bad] if bad is not None else []
        rows += [f"7\t{i}\t4\t{880000000 + i}\n".encode() for i in range(ML_GOOD, ML_GOOD + 3)]
        _put(folder / "tiny.user", b"user_id:token\tage:token\tgender:token\n1\t30\tF\n", gz)
        _put(folder / "tiny.item", b"item_id:token\tmovie_title:token_seq\n1\tHeat\n", gz)
        return _put(folder / "tiny.inter", b"".join(rows), gz)

    return write


def _grouplens(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        rows = [f"{i % 30}\t{i}\t{1 + i % 5}\t{880000000 + i}\n".encode() for i in range(ML_GOOD)]
        rows += [bad] if bad is not None else []
        rows += [f"7\t{i}\t4\t{880000000 + i}\n".encode() for i in range(ML_GOOD, ML_GOOD + 3)]
        return _put(folder / "u.data", b"".join(rows), gz).parent

    return write


# -- POPQUORN ----------------------------------------------------------------------------

PQ_GOOD = 1000
PQ_HEADER = b"instance_id,user_id,text,offensiveness,gender,race,age,occupation,education\n"


def _pq_row(i: int) -> bytes:
    text = f'"comment {i}, with a comma"' if i % 7 else f'"comment {i}\nover two lines"'
    return f"{i % 90},{i % 25},{text},{1 + i % 5}.0,Woman,White,18-24,Student,College\n".encode()


def _popquorn(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        rows = [PQ_HEADER] + [_pq_row(i) for i in range(PQ_GOOD)]
        rows += [bad] if bad is not None else []
        rows += [_pq_row(i) for i in range(PQ_GOOD, PQ_GOOD + 3)]
        return _put(folder / "offensiveness.csv", b"".join(rows), gz)

    return write


# physical line of the row after PQ_GOOD good rows: the header, plus one extra line per 2-line text
PQ_BAD_LINE = 1 + PQ_GOOD + sum(1 for i in range(PQ_GOOD) if i % 7 == 0) + 1

# -- Persona-Chat ------------------------------------------------------------------------

PC_DIALOGUES = 150  # x (user, 4 facts, 5 replies, 5 examples) = 2250 > BATCH


def _dialogue(d: int) -> list[bytes]:
    out = [f"{k + 1} your persona: fact {k} of {d}.\n".encode() for k in range(4)]
    out += [f"{k + 5} hello {d} {k}\treply {d} {k}\n".encode() for k in range(5)]
    return out


def _personachat(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        lines = [x for d in range(PC_DIALOGUES) for x in _dialogue(d)]
        last = _dialogue(PC_DIALOGUES)
        lines += last + ([bad] if bad is not None else [])  # bad = the dialogue's 10th line
        lines += [x for d in range(PC_DIALOGUES + 1, PC_DIALOGUES + 3) for x in _dialogue(d)]
        return _put(folder / "valid.txt", b"".join(lines), gz)

    return write


PC_BAD_LINE = 9 * (PC_DIALOGUES + 1) + 1

# -- LaMP --------------------------------------------------------------------------------

LAMP_GOOD = 700  # x (2 profile docs + 1 example) > BATCH


def _lamp_q(i: int) -> dict:
    return {
        "id": f"q{i}",
        "input": f"What is the score of the following review? review: r{i}",
        "profile": [{"text": f"old {i} {k}", "score": str(1 + (i + k) % 5), "id": f"p{i}-{k}"} for k in range(2)],
    }


def _lamp(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        qs = [json.dumps(_lamp_q(i)).encode() for i in range(LAMP_GOOD)]
        qs += [bad] if bad is not None else []
        qs += [json.dumps(_lamp_q(i)).encode() for i in range(LAMP_GOOD, LAMP_GOOD + 3)]
        ids = [f"q{i}" for i in range(LAMP_GOOD + 3)] + (["bad"] if bad is not None else [])
        golds = {"task": "LaMP_3", "golds": [{"id": q, "output": "3"} for q in ids]}
        _put(folder / "dev_outputs.json", json.dumps(golds).encode(), gz)
        return _put(folder / "dev_questions.json", b"[\n" + b",\n".join(qs) + b"\n]\n", gz)

    return write


# -- generic JSONL / CSV -----------------------------------------------------------------

GEN_GOOD = 2100


def _jsonl(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        lines = [
            json.dumps({"author": f"u{i % 10}", "body": f"post {i}", "rating": i % 5}).encode() + b"\n"
            for i in range(GEN_GOOD)
        ]
        lines += [bad] if bad is not None else []
        lines += [b'{"author": "u1", "body": "last", "rating": 2}\n']
        return _put(folder / "posts.jsonl", b"".join(lines), gz)

    return write


def _csv(gz: bool) -> Callable[[Path, bytes | None], Path]:
    def write(folder: Path, bad: bytes | None) -> Path:
        rows = [b"user_id,item_id,value,timestamp\n"]
        rows += [f"u{i % 10},i{i},{i % 5},{1000 + i}\n".encode() for i in range(GEN_GOOD)]
        rows += [bad] if bad is not None else []
        rows += [b"u1,i-last,3,5\n"]
        return _put(folder / "clicks.csv", b"".join(rows), gz)

    return write


JSONL_OPTS = {"record": "document", "mapping": {"user_id": "author", "text": "body"}}
CSV_OPTS = {"record": "interaction"}

BAD_UTF8 = "caf\u00e9".encode("latin-1")  # b"caf\xe9": not UTF-8


def _amazon_cases(gz: bool) -> list[tuple[str, Case]]:
    def case(bad: bytes, field: str | None, message: str) -> Case:
        return Case("amazon", _amazon(gz), bad, "reviews.json.gz", AMAZON_GOOD + 1, field, message)

    bad_utf8 = b'{"reviewerID": "U1", "asin": "B1", "overall": 5, "reviewText": "' + BAD_UTF8 + b'"}\n'
    return [
        ("amazon-bad-json", case(b'{"reviewerID": "U1", "asin": \n', None, "bad JSON")),
        ("amazon-missing-field", case(b'{"reviewerID": "U1", "overall": 5.0, "reviewText": "x"}\n', "asin", "missing")),
        (
            "amazon-wrong-type",
            case(
                b'{"reviewerID": "U1", "asin": "B1", "overall": "five", "reviewText": "x"}\n',
                "overall",
                "must be a number, got 'five'",
            ),
        ),
        ("amazon-invalid-utf8", case(bad_utf8, None, "invalid UTF-8")),
    ]


def _movielens_cases(gz: bool) -> list[tuple[str, Case]]:
    def recbole(bad: bytes, field: str | None, message: str) -> Case:
        return Case("movielens", _recbole(gz), bad, "tiny.inter", ML_GOOD + 2, field, message)

    def grouplens(bad: bytes, field: str | None, message: str) -> Case:
        return Case("movielens", _grouplens(gz), bad, "u.data", ML_GOOD + 1, field, message)

    return [
        ("recbole-short-row", recbole(b"3\t77\t4\n", "timestamp", "expected 4 fields, got 3")),
        ("recbole-wrong-type", recbole(b"3\t77\tfour\t880000000\n", "rating", "must be a number, got 'four'")),
        ("recbole-invalid-utf8", recbole(b"3\t" + BAD_UTF8 + b"\t4\t880000000\n", None, "invalid UTF-8")),
        ("grouplens-short-row", grouplens(b"3\t77\n", "rating", "expected 4 fields, got 2")),
    ]


def _popquorn_cases(gz: bool) -> list[tuple[str, Case]]:
    def case(bad: bytes, field: str | None, message: str) -> Case:
        return Case("popquorn", _popquorn(gz), bad, "offensiveness.csv", PQ_BAD_LINE, field, message)

    return [
        ("popquorn-short-row", case(b"5,3,short row,2.0,Man\n", "race", "expected 9 fields, got 5")),
        (
            "popquorn-wrong-type",
            case(
                b'5,3,"multi\nline",five,Man,White,18-24,Student,College\n',
                "offensiveness",
                "must be a number, got 'five'",
            ),
        ),
        (
            "popquorn-invalid-utf8",
            case(b"5,3," + BAD_UTF8 + b",2.0,Man,White,18-24,Student,College\n", None, "invalid UTF-8"),
        ),
    ]


def _personachat_cases(gz: bool) -> list[tuple[str, Case]]:
    def case(bad: bytes, field: str | None, message: str) -> Case:
        return Case("personachat", _personachat(gz), bad, "valid.txt", PC_BAD_LINE, field, message)

    return [
        ("personachat-no-tab", case(b"10 a message without a reply\n", "reply", "needs 'partner message<TAB>reply'")),
        ("personachat-no-number", case(b"hello\tthere\n", None, "expected 'N text'")),
        ("personachat-invalid-utf8", case(b"10 hi\t" + BAD_UTF8 + b"\n", None, "invalid UTF-8")),
    ]


def _lamp_cases(gz: bool) -> list[tuple[str, Case]]:
    def case(bad: bytes, field: str | None, message: str) -> Case:
        return Case("lamp", _lamp(gz), bad, "dev_questions.json", LAMP_GOOD + 2, field, message)

    wrong_type = (
        b'{"id": "bad", "input": "x", "profile": [{"text": "a", '
        b'"score": "4", "id": "b1"}, {"text": "b", "score": "five", "id": "b2"}]}'
    )
    return [
        ("lamp-missing-field", case(b'{"id": "bad", "profile": []}', "input", "missing")),
        ("lamp-wrong-type", case(wrong_type, "profile[1].score", "must be a number, got 'five'")),
    ]


def _generic_cases(gz: bool) -> list[tuple[str, Case]]:
    def jsonl(bad: bytes, field: str | None, message: str) -> Case:
        return Case("jsonl", _jsonl(gz), bad, "posts.jsonl", GEN_GOOD + 1, field, message, JSONL_OPTS)

    def csv(bad: bytes, field: str | None, message: str) -> Case:
        return Case("csv", _csv(gz), bad, "clicks.csv", GEN_GOOD + 2, field, message, CSV_OPTS)

    return [
        ("jsonl-bad-json", jsonl(b'{"author": "u1", "body": "x"\n', None, "bad JSON")),
        ("jsonl-missing-field", jsonl(b'{"author": "u1", "text": "x"}\n', "body", "Field required")),
        ("jsonl-wrong-type", jsonl(b'{"author": "u1", "body": "x", "rating": "five"}\n', "rating", "valid number")),
        ("csv-short-row", csv(b"u1,i9\n", "value", "expected 4 fields, got 2")),
        ("csv-wrong-type", csv(b"u1,i9,five,7\n", "value", "valid number")),
        ("csv-invalid-utf8", csv(b"u1," + BAD_UTF8 + b",1,7\n", None, "invalid UTF-8")),
    ]


def _cases(gz: bool) -> list[tuple[str, Case]]:
    """Every malformed-input case, in one order for plain and gzip files."""
    return [
        *_amazon_cases(gz),
        *_movielens_cases(gz),
        *_popquorn_cases(gz),
        *_personachat_cases(gz),
        *_lamp_cases(gz),
        *_generic_cases(gz),
    ]


PARAMS = [pytest.param(case, id=f"{cid}-{'gz' if gz else 'plain'}") for gz in (False, True) for cid, case in _cases(gz)]


@pytest.mark.parametrize("case", PARAMS)
def test_malformed_input(case: Case, tmp_path: Path) -> None:
    path = case.write(tmp_path / "bad", case.bad)

    # The bad unit comes after more than a batch of good records: a flush happened inside
    # the transaction before the error.
    n_before = 0
    with pytest.raises(LoadError):
        for _ in make_loader(case.fmt, **case.options).iter_records(path):
            n_before += 1
    assert n_before > BATCH

    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.add([Document(user_id="already-there", text="a row from before")])
    before = store.counts()
    with pytest.raises(LoadError) as info:
        load_dataset(store, case.fmt, path, **case.options)
    err = info.value
    assert Path(err.file).name == case.file
    assert (err.line, err.field) == (case.line, case.field)
    assert case.message in err.message
    where = f"{case.file}:{case.line}: " + (f"field {case.field!r}: " if case.field else "")
    assert str(err) == where + err.message
    assert store.counts() == before  # rolled back, flushed batches included
    assert store.list_loads() == []

    report = load_dataset(store, case.fmt, path, skip_bad=True, **case.options)
    assert report.skipped == 1 and report.errors == [str(err)]

    # Same data without the bad unit, in a fresh store: the same rows must have been kept.
    ref = Store(f"sqlite:///{tmp_path}/ref.db")
    ref_report = load_dataset(ref, case.fmt, case.write(tmp_path / "good", None), **case.options)
    assert ref_report.skipped == 0
    got = {k: v - before[k] for k, v in store.counts().items()}
    assert got == ref.counts()
    assert report.added == ref_report.added
    store.close()
    ref.close()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_lamp_broken_json_cannot_be_skipped(gz: bool, tmp_path: Path) -> None:
    path = _lamp(gz)(tmp_path, b'{"id": "bad", "input": "x", "profile": [}')
    store = Store(f"sqlite:///{tmp_path}/s.db")
    before = store.counts()
    with pytest.raises(LoadError) as info:
        load_dataset(store, "lamp", path, skip_bad=True)
    assert (Path(info.value.file).name, info.value.line) == ("dev_questions.json", LAMP_GOOD + 2)
    assert not info.value.recoverable and "bad JSON" in info.value.message
    assert store.counts() == before


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_lamp_invalid_utf8_is_located(gz: bool, tmp_path: Path) -> None:
    bad = b'{"id": "bad", "input": "' + BAD_UTF8 + b'", "profile": []}'
    path = _lamp(gz)(tmp_path, bad)
    with pytest.raises(LoadError) as info:
        load_dataset(Store(f"sqlite:///{tmp_path}/s.db"), "lamp", path)
    assert info.value.line == LAMP_GOOD + 2 and "invalid UTF-8" in info.value.message


def test_corrupt_gzip_is_not_skippable(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(_amazon_line(i) for i in range(2000)))
    path = tmp_path / "reviews.json.gz"
    path.write_bytes(data[: len(data) // 2])  # truncated stream
    store = Store(f"sqlite:///{tmp_path}/s.db")
    before = store.counts()
    with pytest.raises(LoadError) as info:
        load_dataset(store, "amazon", path, skip_bad=True)
    assert "gzip" in info.value.message and not info.value.recoverable
    assert store.counts() == before


def test_skip_bad_keeps_only_twenty_messages(tmp_path: Path) -> None:
    lines = [_amazon_line(i) if i % 2 else b'{"broken\n' for i in range(60)]
    path = _put(tmp_path / "r.json", b"".join(lines), gz=False)
    store = Store(f"sqlite:///{tmp_path}/s.db")
    report = load_dataset(store, "amazon", path, skip_bad=True)
    assert report.skipped == 30 and len(report.errors) == 20
    assert report.errors[0].startswith("r.json:1: bad JSON")
    assert report.added["documents"] == 30


def test_unexpected_exception_rolls_back(tmp_path: Path) -> None:
    """Not only LoadError: any exception during the load leaves the store as it was."""
    path = _amazon(False)(tmp_path, None)
    store = Store(f"sqlite:///{tmp_path}/s.db")
    before = store.counts()
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. the user pressing Ctrl-C mid-load

    big = tmp_path / "big.json"
    big.write_bytes(b"".join(_amazon_line(i) for i in range(6000)))
    with pytest.raises(KeyboardInterrupt):
        load_dataset(store, "amazon", big, progress=progress)
    assert store.counts() == before
    assert load_dataset(store, "amazon", path).added["documents"] == AMAZON_GOOD + 5
