from pathlib import Path

import pytest

from proxy.settings import SettingsError, load_settings, substitute_env


def test_env_substitution_with_default_and_comments() -> None:
    text = "a: ${X}\nb: ${MISSING:-fallback}\n# c: ${ALSO_MISSING}\n"
    assert substitute_env(text, {"X": "1"}) == "a: 1\nb: fallback\n# c: ${ALSO_MISSING}"
    with pytest.raises(SettingsError, match="MISSING"):
        substitute_env("a: ${MISSING}", {})


def test_example_config_loads_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    settings = load_settings(example)
    assert settings.port == 8080 and settings.upstream.read_timeout == 120
    assert load_settings(None).database_path == Path("modelport-data/modelport.db")
    cfg = tmp_path / "c.yaml"
    monkeypatch.setenv("MP_PORT", "9123")
    cfg.write_text("port: ${MP_PORT}\nupstream: {read_timeout: 3}\n")
    loaded = load_settings(cfg, workers=3)
    assert (loaded.port, loaded.workers, loaded.upstream.read_timeout) == (9123, 3, 3)


def test_unknown_or_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(cfg)
    cfg.write_text("port: [1\n")
    with pytest.raises(SettingsError, match="YAML"):
        load_settings(cfg)
