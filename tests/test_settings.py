"""Settings precedence: CLI overrides > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.settings import load_settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TAILORLM_STORE_URL", "TAILORLM_GENERATOR__BACKEND", "TAILORLM_GENERATOR__MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TAILORLM_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("TAILORLM_CACHE_DIR", str(tmp_path / "cache"))


def test_defaults_point_into_the_cache(tmp_path: Path) -> None:
    s = load_settings()
    assert s.cache_dir == tmp_path / "cache"
    assert s.resolved_store_url == f"sqlite:///{tmp_path / 'cache' / 'tailorlm.db'}"
    assert s.generator.backend == "local" and s.generator.model == "smollm2"


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'store_url = "sqlite:///from-file.db"\n[generator]\nbackend = "openai"\nmodel = "file-model"\n'
    )
    s = load_settings()
    assert s.store_url == "sqlite:///from-file.db" and s.generator.model == "file-model"
    monkeypatch.setenv("TAILORLM_GENERATOR__MODEL", "env-model")
    s = load_settings()
    assert s.generator.model == "env-model" and s.generator.backend == "openai"  # nested fields merge
    s = load_settings(generator={"model": "cli-model", "backend": None}, store_url=None)
    assert s.generator.model == "cli-model" and s.store_url == "sqlite:///from-file.db"


def test_malformed_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("store_url = \n")
    with pytest.raises(ValueError, match=r"config\.toml"):
        load_settings()


def test_invalid_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_GENERATOR__BACKEND", "carrier-pigeon")
    with pytest.raises(ValueError, match="backend"):
        load_settings()
