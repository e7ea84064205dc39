"""Issue 14 as tests: every vendor is a codec (pure functions, one signature for all) on
the one stream driver, split by one rule, with the vendor list taken from the registry."""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from translators import REGISTRY
from translators._compatible import CompatibleTranslator
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState
from translators.base import Translator
from translators.errors import ApiError
from translators.types import ChatRequest, JSONObject

ROOT = Path(__file__).resolve().parents[1]
TRANSLATORS = ROOT / "translators"
# Modules of translators/ that are not a vendor: the shared machinery (private ones start with `_`),
# and OpenAI's APIs besides chat served over the chat path on every provider (legacy completions,
# the Responses API): OpenAI's shapes are the gateway's own language, not one vendor's.
CORE = {"base", "errors", "types", "completions", "responses"}
# The one home of each piece of stream and transport glue.
DRIVER = {TRANSLATORS / "_stream.py", TRANSLATORS / "_sse.py", TRANSLATORS / "_http.py"}

OWN_CODECS = sorted(name for name, t in REGISTRY.items() if not isinstance(t, CompatibleTranslator))


def vendor_paths(name: str) -> list[Path]:
    package = TRANSLATORS / name
    return sorted(package.rglob("*.py")) if package.is_dir() else [TRANSLATORS / f"{name}.py"]


def codec_module(name: str) -> ModuleType:
    """A vendor's pure half: `translators/<vendor>/codec.py` in a package, else the module itself."""
    package = TRANSLATORS / name
    return importlib.import_module(f"translators.{name}.codec" if package.is_dir() else f"translators.{name}")


def test_every_vendor_module_is_registered_and_every_provider_has_one() -> None:
    """One rule for where a vendor lives: `translators/<vendor>.py`, or a package of that name;
    no companion files named four ways (`_response`, `_convert`, `_wire`, `_tasks`)."""
    modules = {p.stem for p in TRANSLATORS.glob("*.py") if not p.stem.startswith("_")} | {
        p.name for p in TRANSLATORS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert modules - CORE == set(REGISTRY) - {n for n in REGISTRY if n in CORE}
    for name in REGISTRY:
        assert all(p.exists() for p in vendor_paths(name)), f"{name}: no translators/{name}.py nor package"
    companions = [p.name for p in TRANSLATORS.glob("*_*.py")
                  if not p.stem.startswith("_") and p.stem not in CORE and p.stem not in REGISTRY]
    assert not companions, f"companion files outside a vendor package: {companions}"


def _hints(fn: Any) -> dict[str, Any]:
    module = inspect.getmodule(fn)
    return typing.get_type_hints(fn, vars(module) if module else None)


@pytest.mark.parametrize("name", OWN_CODECS)
def test_each_codec_has_the_one_signature(name: str) -> None:
    module = codec_module(name)
    expected = {
        "to_vendor_request": (["req", "model"], [ChatRequest, str], JSONObject),
        "from_vendor_response": (["body", "model"], [Any, str], JSONObject),
        "from_vendor_event": (["event", "state"], [SSEEvent, None], None),
        "error_from_response": (["status", "body", "headers"], [int, Any, None], ApiError),
    }
    for fn_name, (params, types, returns) in expected.items():
        fn = getattr(module, fn_name, None)
        assert callable(fn), f"{module.__name__} has no {fn_name}"
        assert list(inspect.signature(fn).parameters) == params, f"{module.__name__}.{fn_name}"
        hints = _hints(fn)
        for param, kind in zip(params, types, strict=True):
            if kind is not None:
                assert hints[param] == kind, f"{module.__name__}.{fn_name}({param}: {hints[param]})"
        if returns is not None:
            assert hints["return"] == returns, f"{module.__name__}.{fn_name} -> {hints['return']}"
    state = _hints(module.from_vendor_event)["state"]
    assert inspect.isclass(state) and issubclass(state, StreamState), f"{name}: the stream state is a StreamState"
    codec = module.CODEC
    assert isinstance(codec, Codec) and codec.provider == name
    assert codec.from_vendor_event is module.from_vendor_event
    assert codec.error_from_response is module.error_from_response


def test_compatible_vendors_are_rows_not_subclasses() -> None:
    for name, translator in REGISTRY.items():
        assert type(translator) is CompatibleTranslator or type(translator).__bases__ == (Translator,), (
            f"{name}: a vendor translator derives from Translator only (compatible vendors are spec rows)")
        if isinstance(translator, CompatibleTranslator):
            assert translator.spec.name == name and isinstance(translator.codec, Codec)


def _calls(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_no_vendor_reads_a_stream_itself() -> None:
    """The stream loop (decode, early end, flush, incomplete stream) has one home."""
    loops = {"SSEDecoder", "aiter_sse", "chunks", "texts"}
    offenders = [f"{p.relative_to(ROOT)}: {sorted(_calls(p) & loops)}" for p in sorted(TRANSLATORS.rglob("*.py"))
                 if p not in DRIVER and _calls(p) & loops]
    assert not offenders, "stream loops outside translators/_stream.py:\n" + "\n".join(offenders)


def test_codecs_are_pure() -> None:
    """A codec does no I/O: never the upstream client nor the driver's recipes. In a package
    every module but the wiring (`__init__.py`, `transport.py`) is pure as a whole (`codec.py`
    and what it outgrew: request builders, tasks); in a one-file vendor, its four codec functions."""
    banned = ("ctx.http", "UpstreamClient", "stream_sse(", "stream_frames(", "exchange(", "await ")
    for name in OWN_CODECS:
        module = codec_module(name)
        if (TRANSLATORS / name).is_dir():
            sources = {str(p.relative_to(ROOT)): p.read_text() for p in vendor_paths(name)
                       if p.name not in ("__init__.py", "transport.py")}
        else:
            sources = {f"{module.__name__}.{fn}": inspect.getsource(getattr(module, fn)) for fn in
                       ("to_vendor_request", "from_vendor_response", "from_vendor_event", "error_from_response")}
        for where, source in sources.items():
            used = [b for b in banned if b in source]
            assert not used, f"{where} uses {used}: codecs are pure"


def test_one_home_for_the_shared_glue() -> None:
    """The tolerant error-body parse, the standard 502s, the token cache and the estimator."""
    offenders: list[str] = []
    for path in sorted(TRANSLATORS.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if path.name not in ("_auth.py",) and "class TokenCache" in text:
            offenders.append(f"{rel}: a TokenCache of its own")
        if path.name != "_estimate.py" and ("def estimate_tokens" in text or "+ 3) // 4" in text):
            offenders.append(f"{rel}: a token estimator of its own")
        if path.name != "errors.py" and ("def _error_body" in text or '"upstream_incomplete_stream"' in text
                                         or '"upstream_bad_response"' in text):
            offenders.append(f"{rel}: a hand-built error-body parse or standard 502")
    assert not offenders, "\n".join(offenders)
