"""DESIGN §2 and §5 as tests: the three directions of the architecture, one registry,
SSE framing in exactly two files, upstream HTTP in exactly one."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from urllib.parse import urlsplit

import translators
from keystore.models import BASE_URL_FIELD, label_for
from translators import REGISTRY
from translators.base import Translator

ROOT = Path(__file__).resolve().parents[1]
# Words that name a vendor, derived from the registry: each provider's key, the words of its
# display name, and the labels of its default host (api.anthropic.com -> anthropic). OpenAI's
# format is the gateway's own language, so "OpenAI" may appear; the provider key "openai" may not.
_GENERIC = {"openai", "open", "compatible", "openai-compatible", "server", "azure_openai", "api", "com", "cn",
            "www", "v1", "v2", "example", "invalid", "localhost", "aip", "ai", "inference", "chat", "router", "hugging",
            "face"}
_ALIASES = ("claude", "hugging face", "iflytek", "kimi")  # names a vendor goes by that its row does not spell


def _vendor_words() -> tuple[str, ...]:
    words: set[str] = set(_ALIASES)
    for name, translator in REGISTRY.items():
        words.add(name)
        words.update(w.strip("()").lower() for w in translator.display_name.split())
        words.update((urlsplit(translator.default_base_url).hostname or "").split("."))
    return tuple(sorted(w for w in words - _GENERIC if len(w) > 2 and not w.isdigit() and w.replace("-", "").replace(" ", "").isalnum()))


VENDORS = _vendor_words()


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


def test_vendor_words_come_from_the_registry() -> None:
    assert {"anthropic", "qwen", "dashscope", "ernie", "baidu", "zhipu", "bigmodel", "spark", "azure"} <= set(VENDORS)


def test_every_provider_describes_itself_for_people() -> None:
    """The settings console renders providers from the registry alone: a name to show, the
    vendor page where a key is made, and a label for every credential field."""
    names = [t.display_name for t in REGISTRY.values()]
    assert all(n.strip() == n and n for n in names) and len(set(names)) == len(names)
    for name, translator in REGISTRY.items():
        url = urlsplit(translator.key_url)
        assert url.scheme == "https" and url.hostname and "." in url.hostname, f"{name}: key_url {translator.key_url!r}"
        for field in (*translator.credential_fields, BASE_URL_FIELD):
            assert field.display_label.strip(), f"{name}: credential field {field.name!r} has no label"


def test_credential_labels_are_derived_readably() -> None:
    assert [label_for(n) for n in ("api_key", "base_url", "secret_key", "app_id", "group_id", "api_version",
                                   "endpoint_url", "organization")] == [
        "API key", "API base URL", "Secret key", "App ID", "Group ID", "API version", "Endpoint URL", "Organization"]
    assert REGISTRY["spark"].credential_fields[0].display_label == "APPID"  # an explicit label wins


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


# -- the repository stands alone (DESIGN §10) ----------------------------------------------------------

STANDALONE = ("tests", "bench", "proxy", "translators", "keystore")
# The one module allowed to look beside the repository, for the optional ../shared conformance layer.
SHARED_LAYER = ROOT / "tests" / "fixture_data.py"
# In code, a string literal without whitespace (a path, not a sentence such as an error message) that is
# an absolute path into a machine's working or home directories, or names the team's shared/ directory.
_OUTSIDE_LITERAL = re.compile(r"^/(work|home|root|mnt|srv|Users)(/|$)"
                              r"|\.\./+shared\b|/shared/(vendors|openai-schemas)\b")
# In data and config files (anywhere on a line); Markdown is prose and may cite ../shared/vendors/*.md.
_OUTSIDE_TEXT = re.compile(r"(?<![\w.:/])/(work|home|root|mnt|srv|Users)/|\.\./+shared\b")
_TEXT_SUFFIXES = {".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".conf", ".json", ".sse", ".txt"}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _levels_up(node: ast.AST) -> int | None:
    """How far `Path(__file__)[.resolve()].parent.parents[k]...` climbs (1 = the file's own directory);
    None when `node` is not such a chain."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args \
            and isinstance(node.args[0], ast.Name) and node.args[0].id == "__file__":
        return 0
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("resolve", "absolute"):
        return _levels_up(node.func.value)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        below = _levels_up(node.value)
        return None if below is None else below + 1
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents" \
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
        below = _levels_up(node.value.value)
        return None if below is None else below + node.slice.value + 1
    return None


def _outside_refs(source: str, rel: Path) -> list[str]:
    """Code in `source` (the file at `rel` in the repository) that reaches outside the repository:
    path literals naming outside paths (docstrings and messages are prose and may cite ../shared/vendors/*.md),
    `Path(__file__)` climbing above the repository root, and `... / "shared"`."""
    tree = ast.parse(source)
    prose = _docstring_nodes(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose \
                and not any(c.isspace() for c in node.value) and _OUTSIDE_LITERAL.search(node.value):
            found.append(f"{rel}:{line}: path outside the repository {node.value!r}")
        elif (levels := _levels_up(node)) is not None and levels > len(rel.parts):
            found.append(f"{rel}:{line}: Path(__file__) climbs {levels - len(rel.parts)} level(s) above the repository")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value == "shared":
            found.append(f"{rel}:{line}: joins 'shared' onto a path")
    return found


def test_outside_path_check_catches_what_it_should() -> None:
    bench_fake, decoder_test = Path("bench/fake.py"), Path("tests/unit/test_sse_decoder.py")
    assert _outside_refs('SHARED = Path(__file__).resolve().parents[1].parent / "shared"\n', bench_fake)
    assert _outside_refs('R = Path(__file__).resolve().parents[2]\n', bench_fake)
    assert _outside_refs('RECORDINGS = Path("/work/shared/vendors/recordings")\n', decoder_test)
    assert _outside_refs('p = base / f"../shared/{name}"\n', decoder_test)
    assert _outside_refs('p = Path(f"/home/{user}/modelport-data")\n', decoder_test)
    assert _outside_refs('p = os.path.join(ROOT, "..", "x") / "shared"\n', decoder_test)
    assert not _outside_refs('"""Shapes: ../shared/vendors/openai.md."""\nREPO = Path(__file__).resolve().parents[1]\n'
                             '# see ../shared/vendors/anthropic.md\nURL = "/v1/chat/completions"\n'
                             'sys.exit("the fixtures are in the repository, not in ../shared")\n', bench_fake)
    assert not _outside_refs('DATA = Path(__file__).resolve().parents[2] / "fixtures"\n', decoder_test)


def test_nothing_reaches_outside_the_repository() -> None:
    offenders: list[str] = []
    for top in STANDALONE:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if path == SHARED_LAYER or not path.is_file() or rel.parts[:2] == ("bench", "results"):
                continue  # bench/results: measurement records, not code
            if path.suffix == ".py":
                offenders += _outside_refs(path.read_text(), rel)
            elif path.suffix in _TEXT_SUFFIXES:
                offenders += [f"{rel}:{n}: {line.strip()[:120]}"
                              for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                              if _OUTSIDE_TEXT.search(line)]
    assert not offenders, ("a clone with nothing beside it must run (tests/fixture_data.py is the one home of the "
                           "optional ../shared layer):\n" + "\n".join(offenders))


def test_emulators_stand_apart_from_the_gateway() -> None:
    """An emulator plays the vendor: were it to reuse the gateway's codecs, a misreading of
    the vendor's format would sit on both sides and every test would still pass."""
    pattern = re.compile(r"^\s*(from|import)\s+(proxy|translators|keystore)\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in _py("emulators") if pattern.search(p.read_text())]
    assert not offenders, f"emulators/ importing the gateway: {offenders}"
