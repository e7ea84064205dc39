"""Test data the suite reads: our own vendor fixtures and OpenAI-shape schemas, kept in
`tests/fixtures/` (written by us from the wire facts the vendors document), so a clone
with nothing beside it runs every test.

The team's reference material (`../shared/`: real vendor recordings, OpenAI's published
schemas) is an extra conformance layer: tests that read it are marked `needs_shared` and
skip, saying why, where it is absent.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCHEMAS = FIXTURES / "openai-schemas"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_RECORDINGS = SHARED / "vendors" / "recordings"
SHARED_SCHEMAS = SHARED / "openai-schemas"
HAVE_SHARED = SHARED_RECORDINGS.is_dir() and SHARED_SCHEMAS.is_dir()

needs_shared = pytest.mark.skipif(
    not HAVE_SHARED,
    reason="../shared (the team's vendor recordings and OpenAI's published schemas) is not beside this "
           "repository; this conformance check runs only where it is")


def fixture(vendor: str, name: str) -> bytes:
    """The bytes of `tests/fixtures/<vendor>/<name>`."""
    return (FIXTURES / vendor / name).read_bytes()


def fixture_json(vendor: str, name: str) -> Any:
    return json.loads(fixture(vendor, name))


def shared_recording(vendor: str, name: str) -> bytes:
    """A real recording from ../shared (only in tests marked `needs_shared`)."""
    return (SHARED_RECORDINGS / vendor / name).read_bytes()


@cache
def _validator(path: Path) -> Draft202012Validator:
    return Draft202012Validator(json.loads(path.read_text()))


def _check(path: Path, body: Any) -> None:
    errors = sorted(_validator(path).iter_errors(body), key=str)
    assert not errors, f"{path.name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def check_schema(name: str, body: Any) -> None:
    """Assert `body` fits our schema `name` (tests/fixtures/openai-schemas/), and OpenAI's
    published one too where ../shared is present."""
    _check(SCHEMAS / name, body)
    if HAVE_SHARED and (SHARED_SCHEMAS / name).is_file():
        _check(SHARED_SCHEMAS / name, body)
