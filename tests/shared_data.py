"""The team's shared material, read by many tests: the vendor recordings and OpenAI's
JSON schemas. `shared/` is the repository's sibling (CI clones the repo elsewhere with
a copy of shared/ beside it), so it is always found from here."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RECORDINGS = SHARED / "vendors" / "recordings"
SCHEMAS = SHARED / "openai-schemas"


def recording(vendor: str, name: str) -> bytes:
    return (RECORDINGS / vendor / name).read_bytes()


def recorded_json(vendor: str, name: str) -> Any:
    return json.loads(recording(vendor, name))


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


def check_schema(name: str, body: Any) -> None:
    """Assert `body` fits OpenAI's schema `name` (a file in shared/openai-schemas)."""
    errors = sorted(_validator(name).iter_errors(body), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
