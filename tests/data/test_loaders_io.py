"""The loaders' shared readers and error type: JSON arrays, text lines, line counts, LoadError."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from loader_samples import write

from tailorlm.data.loaders import LoadError, count_lines, iter_json_array, open_text
from tailorlm.errors import DataError, TailorlmError


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_iter_json_array_matches_json_load(tmp_path: Path, chunk: int) -> None:
    data = [{"a": [1, 2, {"b": "x\ny"}]}, 12345678901234, "ünï", None, True, 1.5e10, [], {}]
    text = "\ufeff [\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in data) + "\n]  \n"
    path = write(tmp_path / "a.json", text)
    got = list(iter_json_array(path, chunk_size=chunk))
    assert [v for _, v in got] == data
    assert [n for n, _ in got] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert list(iter_json_array(write(tmp_path / "e.json", "[]"))) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [('[{"a": 1},\n{"a": }]', 2), ('{"a": 1}', 1), ("[1, 2\n\n", 3), ("[1] x", 1)],
    ids=["bad-value", "not-an-array", "unterminated", "trailing-data"],
)
def test_iter_json_array_errors(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(LoadError) as info:
        list(iter_json_array(write(tmp_path / "a.json", text)))
    assert info.value.line == line and not info.value.recoverable


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_open_text_and_count_lines(tmp_path: Path, gz: bool) -> None:
    path = write(tmp_path / "t", b"\xef\xbb\xbffirst\nsecond\r\nbad \xff\nlast", gz=gz)
    assert count_lines(path) == 4
    with open_text(path) as lines:
        assert next(lines) == "first\n" and next(lines) == "second\r\n"
        with pytest.raises(LoadError) as info:
            next(lines)
        assert info.value.line == 3 and info.value.recoverable
        assert next(lines) == "last" and lines.lineno == 4  # iteration goes on after a bad line


def test_load_error_format_and_pickle() -> None:
    err = LoadError("must be a number, got 'five'", file="/data/reviews.json.gz", line=17, field="overall")
    assert str(err) == "reviews.json.gz:17: field 'overall': must be a number, got 'five'"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.file, back.line, back.field, back.message) == (
        err.file,
        17,
        "overall",
        err.message,
    )
    assert str(LoadError("empty", file="x.csv")) == "x.csv: empty"


def test_load_error_is_a_tailorlm_data_error() -> None:
    """LoadError sits in tailorlm.errors' hierarchy (DataError) and keeps every field through pickling."""
    err = LoadError("corrupt gzip data", file="r.json.gz", line=3, field=None, recoverable=False)
    assert isinstance(err, DataError) and isinstance(err, TailorlmError) and isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LoadError and (back.line, back.recoverable) == (3, False)


def test_base_still_exports_what_loaders_import() -> None:
    """The helpers moved out of loaders.base (to _errors, _coerce, _io) are still importable from it."""
    import tailorlm.data.loaders.base as base
    from tailorlm.data.loaders import _coerce, _errors, _io

    for module in (_errors, _coerce, _io):
        for name in module.__all__:
            assert getattr(base, name) is getattr(module, name), name
    assert {"Loader", "LoadReport", "LoadError", "ByteTracker", "as_str", "as_float", "as_int"} <= set(base.__all__)
