"""`modelport serve --demo`: a real server started the way README tells a newcomer to,
with no vendor key and no configuration, answered for every provider through the
emulators it runs in-process, and kept apart from real databases."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from emulators.catalog import EMULATORS
from tests.demo_server import Demo, scrubbed_env, serve, served_demo
from tests.e2e.test_endpoints import wav_bytes
from tests.processes import stop_process


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    cwd = tmp_path_factory.mktemp("newcomer")
    with served_demo(cwd) as running:
        yield running
    assert (cwd / "modelport-demo" / ".modelport-demo").exists()


def _models(kind: str) -> list[str]:
    return [f"{e.provider}/{m.model}" for e in EMULATORS.values() for m in e.demo if m.type == kind]


def test_every_provider_of_the_registry_is_in_the_demo() -> None:
    from translators import REGISTRY

    assert {e.provider for e in EMULATORS.values()} == set(REGISTRY)
    for kind in ("llm", "text-embedding", "speech2text"):
        assert _models(kind), kind


@pytest.mark.parametrize("model", _models("llm"))
def test_chat_answers_for_every_provider(demo: Demo, model: str) -> None:
    with demo.client() as client:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop", model
        chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}],
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), model


@pytest.mark.parametrize("model", _models("text-embedding"))
def test_embeddings_answer_for_every_provider_that_has_them(demo: Demo, model: str) -> None:
    with demo.client() as client:
        vectors = client.embeddings.create(model=model, input=["one", "two"]).data
        assert len(vectors) == 2 and len(vectors[0].embedding) > 1


@pytest.mark.parametrize("model", _models("speech2text"))
def test_transcriptions_answer_for_every_provider_that_has_them(demo: Demo, model: str) -> None:
    with demo.client() as client:
        text = client.audio.transcriptions.create(model=model, file=("hello.wav", wav_bytes()))
        assert text.text, model


def test_defaults_are_set_for_the_three_types(demo: Demo) -> None:
    with demo.client() as client:
        assert client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi"}]).choices
        assert client.embeddings.create(model="default", input="Hi").data
        assert client.audio.transcriptions.create(model="default", file=("a.wav", wav_bytes())).text
        listed = {m.id for m in client.models.list()}
    # Bare ids, provider-qualified where two providers have the same model.
    assert all(m in listed or m.split("/", 1)[1] in listed for m in _models("llm")), listed


def test_the_console_token_shows_the_demo_tenant(demo: Demo) -> None:
    with httpx.Client(base_url=demo.base_url + "/admin/v1", timeout=10,
                      headers={"Authorization": f"Bearer {demo.console_token}"}) as admin:
        assert [t["name"] for t in admin.get("/tenants").json()["data"]] == ["demo"]
        providers = {p["provider"] for p in admin.get("/tenants/demo/providers").json()["data"]}
    assert {e.provider for e in EMULATORS.values() if not e.per_model} <= providers


def test_the_printed_curl_line_works(demo: Demo) -> None:
    line = next(ln for ln in demo.output.splitlines() if "curl" in ln)
    body = re.search(r"-d '(.*)'", line)
    assert body is not None and demo.token in line
    answer = httpx.post(demo.base_url + "/v1/chat/completions", content=body.group(1), timeout=10,
                        headers={"Authorization": f"Bearer {demo.token}", "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]


def test_fault_models_show_the_gateways_retries_and_fallbacks(demo: Demo) -> None:
    """README: a `fault-...` model reaches the emulator as the vendor's error, so the demo
    shows what the gateway does with it (retries, the error mapping, a fallback)."""
    hello = [{"role": "user", "content": "Hello"}]
    with demo.client() as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="openai/fault-429", messages=hello)
        assert limited.value.response.headers.get("retry-after")
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="qwen/fault-500", messages=hello)
        assert failed.value.status_code == 502
        cli = subprocess.run([sys.executable, "-m", "proxy.cli", "--data-dir", "modelport-demo", "fallbacks", "set",
                              "demo", "qwen/fault-500", "zhipu/glm-4-flash"], cwd=demo.cwd, env=scrubbed_env(),
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        deadline = time.monotonic() + 10
        while True:  # the server picks the change up within a second
            try:
                reply = client.chat.completions.create(model="qwen/fault-500", messages=hello)
                break
            except openai.APIStatusError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    assert reply.model == "glm-4-flash"


def test_the_demo_starts_again_in_its_directory(tmp_path: Path) -> None:
    """A second run binds its emulators on another port: every credential follows it."""
    tokens = []
    for _ in range(2):
        with served_demo(tmp_path) as again, again.client() as client:
            for model in ("huggingface/meta-llama/Meta-Llama-3-8B-Instruct", "qwen/qwen-turbo"):
                assert client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}]).choices
            tokens.append(again.token)
    assert len(set(tokens)) == 2


# -- kept apart from real data --------------------------------------------------------------------


def _refused(cwd: Path, *args: str) -> str:
    proc = serve(cwd, *args)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    assert proc.returncode == 2, out.decode()
    return out.decode()


def test_a_configured_database_is_refused_without_a_demo_directory(tmp_path: Path) -> None:
    config = tmp_path / "modelport.yaml"
    config.write_text(yaml.safe_dump({"database": str(tmp_path / "real.db")}))
    out = _refused(tmp_path, "--demo", "--config", str(config))
    assert "--demo-data-dir" in out and not (tmp_path / "modelport-demo").exists()


def test_a_chosen_data_directory_is_refused_without_a_demo_directory(tmp_path: Path) -> None:
    out = _refused(tmp_path, "--demo", "--data-dir", str(tmp_path / "real-data"))
    assert "--demo-data-dir" in out and not (tmp_path / "real-data").exists()


def test_a_real_database_is_never_taken_for_the_demo_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "modelport.db").write_bytes(b"")
    out = _refused(tmp_path, "--demo", "--demo-data-dir", str(real))
    assert "not the demo's" in out and not (real / ".modelport-demo").exists()


def test_plain_serve_refuses_the_demo_directory(tmp_path: Path) -> None:
    demo_dir = tmp_path / "modelport-demo"
    demo_dir.mkdir()
    (demo_dir / ".modelport-demo").write_text("")
    out = _refused(tmp_path, "--data-dir", str(demo_dir))
    assert "serve --demo" in out


def test_demo_data_dir_needs_demo(tmp_path: Path) -> None:
    assert "--demo-data-dir goes with --demo" in _refused(tmp_path, "--demo-data-dir", str(tmp_path / "x"))
