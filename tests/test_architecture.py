"""DESIGN §2 and §5 as tests: the three directions of the architecture, one registry,
SSE framing in exactly two files, upstream HTTP in exactly one."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import translators
from translators import REGISTRY
from translators.base import Translator

ROOT = Path(__file__).resolve().parents[1]
# OpenAI's format is the gateway's own language, so "OpenAI" may appear; the provider
# key "openai" may not.
VENDORS = ("azure", "anthropic", "claude", "huggingface", "hugging face", "replicate", "spark",
           "iflytek", "ernie", "baidu", "qwen", "dashscope", "alibaba", "minimax", "chatglm", "zhipu", "bigmodel")


def _py(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_translator_class_is_registered_once() -> None:
    found: dict[str, type[Translator]] = {}
    for info in pkgutil.iter_modules(translators.__path__):
        module = importlib.import_module(f"translators.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Translator) and "name" in cls.__dict__ and cls.__module__ == module.__name__:
                found[cls.__dict__["name"]] = cls
    assert found, "no translator found"
    assert set(found) == set(REGISTRY), "a translator module is not in the registry (or the reverse)"
    for name, translator in REGISTRY.items():
        assert type(translator) is found[name]
        assert translator.credential_fields and translator.model_types and translator.default_base_url


def test_proxy_never_names_a_vendor() -> None:
    pattern = re.compile("|".join(re.escape(v) for v in VENDORS) + r"""|["'/]openai\b""", re.IGNORECASE)
    offenders = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in _py("proxy")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, "vendor names in proxy/:\n" + "\n".join(offenders)


def test_no_provider_switch_outside_the_registry() -> None:
    pattern = re.compile(r"provider\s*(==|!=|in)\s*[\"'(\[]")
    offenders = [str(p.relative_to(ROOT)) for pkg in ("proxy", "translators", "keystore") for p in _py(pkg)
                 if pattern.search(p.read_text())]
    assert not offenders


def test_sse_framing_lives_in_two_files() -> None:
    allowed = {ROOT / "proxy" / "sse.py", ROOT / "translators" / "_sse.py"}
    framing = re.compile(r"""b?["']data: ?|b?["']event: ?|\[DONE\]""")
    offenders = [str(p.relative_to(ROOT)) for pkg in ("proxy", "translators") for p in _py(pkg)
                 if p not in allowed and framing.search(p.read_text())]
    assert not offenders, f"SSE framing outside proxy/sse.py and translators/_sse.py: {offenders}"


def test_upstream_http_client_only_in_http_module() -> None:
    offenders = [str(p.relative_to(ROOT)) for pkg in ("proxy", "translators", "keystore") for p in _py(pkg)
                 if p != ROOT / "translators" / "_http.py" and _imports(p) & {"aiohttp", "httpx", "requests"}]
    assert not offenders


def test_layer_directions() -> None:
    for p in _py("translators"):
        bad = {m for m in _imports(p) if m.split(".")[0] == "proxy" or m in ("aiosqlite", "keystore.store")}
        assert not bad, f"{p.relative_to(ROOT)} reaches into {bad}: translators never touch the database or tenants"
    for p in _py("keystore"):
        bad = {m for m in _imports(p) if m.split(".")[0] in ("proxy", "translators", "starlette", "aiosqlite")}
        assert not bad, f"{p.relative_to(ROOT)} imports {bad}: the keystore knows nothing of HTTP or storage"


def test_source_files_stay_small() -> None:
    big = [f"{p.relative_to(ROOT)} ({n})" for pkg in ("proxy", "translators", "keystore") for p in _py(pkg)
           if (n := len(p.read_text().splitlines())) > 400]
    assert not big
