"""No pydantic private attribute with a `default_factory` in request models: pydantic
inspects the factory's signature on every instantiation (inspect.signature parses a
builtin's text signature), which the bench's profile measured at about two thirds of a
Responses request's CPU. A plain default (None) costs nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FACTORY = re.compile(r"PrivateAttr\([^)]*default_factory")


def test_no_private_attr_has_a_default_factory() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}" for tree in ("proxy", "translators", "keystore")
             for path in sorted((ROOT / tree).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if _FACTORY.search(line)]
    assert found == [], f"use PrivateAttr(default=None) instead: {found}"
