"""`mypy --strict` on proxy/, translators/ and keystore/ (configured in pyproject.toml), as a
test: README's one test command, and so `.ci/run`, type-check the code they test."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # `files` in the config name the packages from the repository's root
    api = pytest.importorskip("mypy.api", reason="mypy is a test extra: pip install -e '.[test]'")
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary"])
    assert status == 0, f"mypy --strict found errors:\n{stdout}{stderr}"
