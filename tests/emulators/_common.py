"""What both emulator suites share: the request headers that script an emulator, the tool
they offer, and the emulators served the way `modelport emulate all` serves them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from emulators.serve import Served, start_in_thread
from emulators.server import ServedApp

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                  "required": ["city", "days"]}
# Plain JSON, as an application's own code holds it (typed Any: the SDKs want their TypedDicts).
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "description": "the weather in a city",
                                                 "parameters": WEATHER_SCHEMA}}
WEATHER_ARGUMENTS = {"city": "example", "days": 1}  # what the emulator makes of the schema


def fault(kind: str) -> dict[str, str]:
    return {"X-Emulator-Fault": kind}


def reply(text: str) -> dict[str, str]:
    return {"X-Emulator-Reply": text}


@contextlib.contextmanager
def serving(names: list[str]) -> Iterator[tuple[ServedApp, dict[str, Served]]]:
    """The named emulators under `/NAME` on one loopback port, stopped on exit."""
    served, emulators = start_in_thread(names=names)
    try:
        yield served, emulators
    finally:
        served.stop()
