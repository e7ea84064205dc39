"""The `modelport` command (issue §1, §6): `serve` on a fresh directory, and every
management command's output, run in-process on a data directory of its own (no
server needed: the CLI works on the database whether or not a server runs)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from keystore import mask
from proxy.bootstrap import open_store_and_keystore
from proxy.cli import main as cli_main
from proxy.settings import load_settings
from proxy.tenants import Directory
from tests.e2e.harness import GatewayProcess
from emulators.server import free_port
from translators import REGISTRY

KEY = "sk-test-cli-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, fresh_database: Callable[[], str | None]) -> GatewayProcess:
    gateway = GatewayProcess(tmp_path_factory.mktemp("cli"), database=fresh_database())
    gateway.write_config()
    return gateway


@pytest.fixture
def tenant(offline: GatewayProcess) -> str:
    name = "cli-" + uuid.uuid4().hex[:8]
    offline.cli("tenants", "create", name)
    return name


@pytest.fixture(scope="module")
def shared_tenant(offline: GatewayProcess) -> str:
    """For tests that must leave the tenant unchanged (saves an RSA key pair each)."""
    name = "cli-shared"
    offline.cli("tenants", "create", name)
    return name


def rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


# -- serve ---------------------------------------------------------------------------------------


@pytest.mark.sqlite_only("the database file in a fresh data dir")
def test_serve_creates_the_data_dir_and_writes_the_admin_token_to_a_private_file(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "fresh", workers=1)
    assert not gateway.data_dir.exists()
    gateway.start()
    try:
        assert (gateway.data_dir / "modelport.db").is_file()
        key_file = gateway.data_dir / "master.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        token_file = gateway.data_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        admin = token_file.read_text().strip()
        assert re.fullmatch(r"mpa-[A-Za-z0-9_-]{40,}", admin)
        # Its path is printed, the token itself nowhere (logs outlive secrets).
        printed = [line for line in gateway.log().splitlines() if "admin token" in line]
        assert printed == [f"modelport: created the admin token for /admin/v1 in {token_file} (mode 0600)"]
        assert admin not in gateway.log()
        response = httpx.get(gateway.base_url + "/admin/v1/tenants", headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 200 and response.json() == {"object": "list", "data": []}
        assert httpx.get(gateway.base_url + "/healthz").json() == {"status": "ok"}
    finally:
        gateway.stop()
    key_text = key_file.read_text()
    gateway.start()  # the same data directory again
    try:
        log = gateway.log()
        assert [line for line in log.splitlines() if "admin token" in line] == printed  # not created again
        assert token_file.read_text().strip() == admin
        assert log.count("serving on") == 2
        assert key_file.read_text() == key_text  # the key is kept, not regenerated
        response = httpx.get(gateway.base_url + "/admin/v1/tenants", headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 200
        # `admin-token reset` replaces the token for the running server too (a leaked one must die).
        reset = gateway.cli("admin-token", "reset").out.strip()
        assert reset.startswith("mpa-") and reset != admin
        assert token_file.read_text().strip() == reset  # the file never holds a dead token

        def status(token: str) -> int:
            return httpx.get(gateway.base_url + "/admin/v1/tenants",
                             headers={"Authorization": f"Bearer {token}"}).status_code

        deadline = time.monotonic() + 1.0
        while (status(admin), status(reset)) != (401, 200):
            assert time.monotonic() < deadline, "the reset admin token did not take effect within 1 s"
            time.sleep(0.05)
        assert reset not in gateway.log()
    finally:
        gateway.stop()


@pytest.mark.sqlite_only("where the SQLite file is put by default")
def test_cli_finds_the_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELPORT_CONFIG", raising=False)
    monkeypatch.delenv("MODELPORT_MASTER_KEY", raising=False)
    assert cli_main(["tenants", "list"]) == 0
    assert (tmp_path / "modelport-data" / "modelport.db").is_file()
    assert stat.S_IMODE((tmp_path / "modelport-data" / "master.key").stat().st_mode) == 0o600
    assert cli_main(["--data-dir", str(tmp_path / "elsewhere"), "tenants", "list"]) == 0
    assert (tmp_path / "elsewhere" / "modelport.db").is_file()
    capsys.readouterr()


# -- tenants and tokens -----------------------------------------------------------------------------


def test_tenants_create_list_delete(offline: GatewayProcess) -> None:
    name = "cli-" + uuid.uuid4().hex[:8]
    created = offline.cli("tenants", "create", name)
    tenant_id = created.out.strip()
    assert re.fullmatch(r"tn_[0-9a-f]{16}", tenant_id) and rows(created.out) == [tenant_id]
    listed = [line for line in rows(offline.cli("tenants", "list").out) if name in line]
    assert len(listed) == 1 and f"id={tenant_id}" in listed[0] and f"name={name}" in listed[0]
    as_json = json.loads(offline.cli("--json", "tenants", "list").out)
    assert {"id": tenant_id, "name": name} in [{"id": t["id"], "name": t["name"]} for t in as_json]

    duplicate = offline.cli("tenants", "create", name, check=False)
    assert duplicate.code == 1 and "already exists" in duplicate.err
    invalid = offline.cli("tenants", "create", "no spaces", check=False)
    assert invalid.code == 1 and "tenant names" in invalid.err

    assert "deleted=True" in offline.cli("tenants", "delete", name).out
    assert name not in offline.cli("tenants", "list").out
    gone = offline.cli("tenants", "delete", name, check=False)
    assert gone.code == 1 and "not found" in gone.err


def test_tokens_create_list_revoke(offline: GatewayProcess, tenant: str) -> None:
    created = offline.cli("tokens", "create", tenant, "--name", "laptop")
    token = created.out.strip()
    assert rows(created.out) == [token] and token.startswith("mp-")
    assert "shown only this once" in created.err and token not in created.err
    token_id = re.search(r"token (tok_[0-9a-f]+)", created.err).group(1)  # type: ignore[union-attr]

    as_json = json.loads(offline.cli("--json", "tokens", "create", tenant).out)
    assert as_json["token"].startswith("mp-") and as_json["tenant"] == tenant and as_json["name"] is None

    listed = offline.cli("tokens", "list", tenant).out
    assert token not in listed and as_json["token"] not in listed
    assert f"hint={token[:5]}...{token[-4:]}" in listed and "name=laptop" in listed
    entries = json.loads(offline.cli("--json", "tokens", "list", tenant).out)
    assert len(entries) == 2 and all("token" not in e and not e["revoked"] for e in entries)

    assert "revoked=True" in offline.cli("tokens", "revoke", token_id).out
    entries = {e["id"]: e for e in json.loads(offline.cli("--json", "tokens", "list", tenant).out)}
    assert entries[token_id]["revoked"] is True and entries[as_json["id"]]["revoked"] is False
    unknown = offline.cli("tokens", "revoke", "tok_nope", check=False)
    assert unknown.code == 1 and "not found" in unknown.err
    no_tenant = offline.cli("tokens", "create", "nobody-" + uuid.uuid4().hex[:6], check=False)
    assert no_tenant.code == 1 and "not found" in no_tenant.err and not no_tenant.out


# -- providers, models, defaults -----------------------------------------------------------------------


def test_providers_set_list_remove_masks_secrets(offline: GatewayProcess, tenant: str) -> None:
    masked = f"sk-...{KEY[-4:]}"
    set_out = offline.cli("providers", "set", tenant, "openai", f"api_key={KEY}", "organization=org-cli",
                          "base_url=http://127.0.0.1:9/v1/").out
    assert KEY not in set_out and masked in set_out
    listed = offline.cli("providers", "list", tenant).out
    assert KEY not in listed and KEY[3:-4] not in listed and masked in listed and "org-cli" in listed
    entries = json.loads(offline.cli("--json", "providers", "list", tenant).out)
    assert entries == [{"provider": "openai", "name": "default", "weight": 1, "invalid": False,
                        "cooling_down_until": None,
                        "fields": {"api_key": masked, "organization": "org-cli", "base_url": "http://127.0.0.1:9/v1"}}]
    # A second, named credential with a weight (issue 13); removed by name, or all at once.
    offline.cli("providers", "set", tenant, "openai", "--name", "backup", "--weight", "3", "api_key=sk-test-backup-0001")
    entries = json.loads(offline.cli("--json", "providers", "list", tenant).out)
    assert [(e["name"], e["weight"]) for e in entries] == [("default", 1), ("backup", 3)]
    assert "removed=True" in offline.cli("providers", "remove", tenant, "openai", "--name", "backup").out
    assert [e["name"] for e in json.loads(offline.cli("--json", "providers", "list", tenant).out)] == ["default"]
    assert offline.cli("providers", "set", tenant, "openai", "--name", "bad name", "api_key=sk-x-0001",
                       check=False).code == 1
    assert "removed=True" in offline.cli("providers", "remove", tenant, "openai").out
    assert json.loads(offline.cli("--json", "providers", "list", tenant).out) == []
    again = offline.cli("providers", "remove", tenant, "openai", check=False)
    assert again.code == 1 and "not found" in again.err


@pytest.mark.parametrize(("fields", "named"), [
    (["organization=org-1"], "api_key"),
    ([], "api_key"),
    (["api_key="], "api_key"),
    ([f"api_key={KEY}", "api_sekret=x"], "api_sekret"),
    ([f"api_key={KEY}", "base_url=ftp://example.com"], "base_url"),
    (["api_key"], "key=value"),
])
def test_providers_set_rejects_bad_fields_naming_them(offline: GatewayProcess, shared_tenant: str,
                                                      fields: list[str], named: str) -> None:
    tenant = shared_tenant
    result = offline.cli("providers", "set", tenant, "openai", *fields, check=False)
    assert result.code == 1 and named in result.err
    assert KEY not in result.err + result.out
    assert json.loads(offline.cli("--json", "providers", "list", tenant).out) == []


def test_unknown_provider_is_refused(offline: GatewayProcess, shared_tenant: str) -> None:
    tenant = shared_tenant
    result = offline.cli("providers", "set", tenant, "nosuchvendor", f"api_key={KEY}", check=False)
    assert result.code == 1 and "unknown provider 'nosuchvendor'" in result.err and "openai" in result.err


def test_models_add_refuses_own_model_providers(offline: GatewayProcess, tenant: str) -> None:
    result = offline.cli("models", "add", tenant, "openai", "gpt-4o", "--type", "llm", f"api_key={KEY}", check=False)
    assert result.code == 1
    assert f"modelport providers set {tenant} openai" in result.err and KEY not in result.err
    assert offline.cli("models", "list", tenant).out == ""
    assert json.loads(offline.cli("--json", "models", "list", tenant).out) == []
    fields_first = offline.cli("models", "add", tenant, "openai", "gpt-4o", f"api_key={KEY}", "--type", "llm",
                               check=False)
    assert fields_first.code == 1 and "providers set" in fields_first.err
    with pytest.raises(SystemExit):  # an option no command has
        offline.cli("models", "list", tenant, "--bogus")
    with pytest.raises(SystemExit):  # argparse: not one of the three model types
        offline.cli("models", "add", tenant, "openai", "gpt-4o", "--type", "images")
    missing = offline.cli("models", "remove", tenant, "openai", "gpt-4o", check=False)
    assert missing.code == 1 and "not found" in missing.err


@pytest.mark.skipif("azure_openai" not in REGISTRY, reason="needs a provider whose models are added one by one")
def test_models_add_list_remove_for_a_per_model_provider(offline: GatewayProcess, tenant: str) -> None:
    key = "azkey" + secrets.token_hex(16)
    endpoint = "https://res.openai.azure.com"
    added = offline.cli("models", "add", tenant, "azure_openai", "prod-chat", "--type", "llm",
                        f"endpoint={endpoint}", f"api_key={key}").out
    assert key not in added and mask(key) in added
    entries = json.loads(offline.cli("--json", "models", "list", tenant).out)
    assert entries == [{"provider": "azure_openai", "model": "prod-chat", "type": "llm", "name": "default",
                        "weight": 1, "invalid": False, "cooling_down_until": None,
                        "fields": {"endpoint": endpoint, "api_key": mask(key)}}]
    assert key not in offline.cli("models", "list", tenant).out
    # A second, named credential of the same deployment (issue 13); the type stays the entry's.
    offline.cli("models", "add", tenant, "azure_openai", "prod-chat", "--type", "llm", "--name", "backup",
                "--weight", "2", f"endpoint={endpoint}", f"api_key={key}x")
    entries = json.loads(offline.cli("--json", "models", "list", tenant).out)
    assert [(e["model"], e["name"], e["weight"]) for e in entries] == [("prod-chat", "default", 1),
                                                                        ("prod-chat", "backup", 2)]
    other_type = offline.cli("models", "add", tenant, "azure_openai", "prod-chat", "--type", "text-embedding",
                             "--name", "third", f"endpoint={endpoint}", f"api_key={key}", check=False)
    assert other_type.code == 1 and "llm model" in other_type.err
    assert "removed=True" in offline.cli("models", "remove", tenant, "azure_openai", "prod-chat", "--name",
                                         "backup").out
    assert [e["name"] for e in json.loads(offline.cli("--json", "models", "list", tenant).out)] == ["default"]

    missing = offline.cli("models", "add", tenant, "azure_openai", "other", "--type", "llm",
                          f"endpoint={endpoint}", check=False)
    assert missing.code == 1 and "api_key" in missing.err
    whole = offline.cli("providers", "set", tenant, "azure_openai", f"endpoint={endpoint}", f"api_key={key}",
                        check=False)
    assert whole.code == 1 and "models add" in whole.err and key not in whole.err

    assert "model=azure_openai/prod-chat" in offline.cli("defaults", "set", tenant, "llm", "azure_openai/prod-chat").out
    wrong_type = offline.cli("defaults", "set", tenant, "text-embedding", "azure_openai/prod-chat", check=False)
    assert wrong_type.code == 1 and "llm" in wrong_type.err
    not_added = offline.cli("defaults", "set", tenant, "llm", "azure_openai/nope", check=False)
    assert not_added.code == 1 and "models add" in not_added.err

    assert "removed=True" in offline.cli("models", "remove", tenant, "azure_openai", "prod-chat").out
    assert json.loads(offline.cli("--json", "models", "list", tenant).out) == []


def test_defaults_set_show_clear(offline: GatewayProcess, tenant: str) -> None:
    no_credential = offline.cli("defaults", "set", tenant, "llm", "openai/gpt-4o", check=False)
    assert no_credential.code == 1 and "providers set" in no_credential.err
    offline.cli("providers", "set", tenant, "openai", f"api_key={KEY}")
    assert "model=openai/gpt-4o" in offline.cli("defaults", "set", tenant, "llm", "openai/gpt-4o").out
    offline.cli("defaults", "set", tenant, "llm", "openai/gpt-4.1")  # replaces, one per type
    offline.cli("defaults", "set", tenant, "speech2text", "openai/whisper-1")
    shown = offline.cli("defaults", "show", tenant).out
    assert "llm=openai/gpt-4.1" in shown and "speech2text=openai/whisper-1" in shown
    assert "text-embedding=None" in shown and "gpt-4o" not in shown
    assert json.loads(offline.cli("--json", "defaults", "show", tenant).out) == {
        "llm": "openai/gpt-4.1", "text-embedding": None, "speech2text": "openai/whisper-1"}

    bare = offline.cli("defaults", "set", tenant, "llm", "gpt-4o", check=False)
    assert bare.code == 1 and "PROVIDER/MODEL" in bare.err
    bad_type = offline.cli("defaults", "set", tenant, "images", "openai/gpt-4o", check=False)
    assert bad_type.code == 1 and "llm, text-embedding, speech2text" in bad_type.err
    unknown = offline.cli("defaults", "set", tenant, "llm", "nosuch/model", check=False)
    assert unknown.code == 1 and "unknown provider" in unknown.err

    offline.cli("defaults", "clear", tenant, "llm")
    assert json.loads(offline.cli("--json", "defaults", "show", tenant).out)["llm"] is None


def test_tenant_by_id_everywhere(offline: GatewayProcess) -> None:
    name = "cli-" + uuid.uuid4().hex[:8]
    tenant_id = offline.cli("tenants", "create", name).out.strip()
    offline.cli("providers", "set", tenant_id, "openai", f"api_key={KEY}")
    offline.cli("defaults", "set", tenant_id, "text-embedding", "openai/text-embedding-3-small")
    created = json.loads(offline.cli("--json", "tokens", "create", tenant_id).out)
    assert created["tenant"] == name
    assert f"sk-...{KEY[-4:]}" in offline.cli("providers", "list", name).out
    assert "text-embedding=openai/text-embedding-3-small" in offline.cli("defaults", "show", name).out
    assert created["id"] in offline.cli("tokens", "list", tenant_id).out
    assert "deleted=True" in offline.cli("tenants", "delete", tenant_id).out
    assert offline.cli("defaults", "show", name, check=False).code == 1


def test_database_of_the_cli_holds_no_secret(offline: GatewayProcess) -> None:
    for raw in offline.stored_bytes().values():
        assert KEY.encode() not in raw


# -- secrets from stdin or a file, options after the verb, a locked database (issue 10) ----------


def stored_credential(offline: GatewayProcess, tenant: str, provider: str) -> dict[str, str]:
    """The credential as the gateway will decrypt it (what `providers list` only shows masked)."""
    async def read() -> dict[str, str]:
        store, keystore = await open_store_and_keystore(load_settings(offline.config_path))
        try:
            directory = Directory(store, keystore)
            row = await store.find_tenant(tenant)
            assert row is not None
            return dict(await directory.credential(await directory.tenant(row.id), provider, None))
        finally:
            await store.close()
    return asyncio.run(read())


def test_secret_values_come_from_stdin_or_a_file(offline: GatewayProcess, tenant: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from_stdin = "sk-test-stdin-" + secrets.token_hex(8)
    monkeypatch.setattr("sys.stdin", io.StringIO(from_stdin + "\n"))
    offline.cli("providers", "set", tenant, "openai", "api_key=@-", "organization=org-plain")
    assert stored_credential(offline, tenant, "openai") == {"api_key": from_stdin, "organization": "org-plain"}

    from_file = "sk-test-file-" + secrets.token_hex(8)
    key_file = tmp_path / "key.txt"
    key_file.write_text(from_file + "\n")  # exactly one trailing newline is dropped
    offline.cli("providers", "set", tenant, "openai", f"api_key=@{key_file}", "organization=@@literal")
    assert stored_credential(offline, tenant, "openai") == {"api_key": from_file, "organization": "@literal"}

    missing = offline.cli("providers", "set", tenant, "openai", f"api_key=@{tmp_path / 'nope'}", check=False)
    assert missing.code == 1 and rows(missing.err) == [
        f"modelport: api_key=@{tmp_path / 'nope'}: cannot read the file: No such file or directory"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n"))
    twice = offline.cli("providers", "set", tenant, "openai", "api_key=@-", "organization=@-", check=False)
    assert twice.code == 1 and "only one value can come from stdin" in twice.err


def test_global_options_work_after_the_verb(offline: GatewayProcess, shared_tenant: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MODELPORT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./modelport-data to fall back on unnoticed
    config = str(offline.config_path)
    assert cli_main(["tenants", "list", "--config", config, "--json"]) == 0
    assert shared_tenant in [t["name"] for t in json.loads(capsys.readouterr().out)]
    assert cli_main(["tenants", "--json", "list", "--config", config]) == 0
    assert shared_tenant in [t["name"] for t in json.loads(capsys.readouterr().out)]
    assert cli_main(["--json", "providers", "list", shared_tenant, "--config", config]) == 0
    assert json.loads(capsys.readouterr().out) == []
    other = tmp_path / "other-data"
    assert cli_main(["tenants", "list", "--data-dir", str(other)]) == 0
    assert (other / "modelport.db").is_file() and not (tmp_path / "modelport-data").exists()
    capsys.readouterr()


def test_serve_takes_config_after_the_verb(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "after", workers=1)
    gateway.port = free_port()
    gateway.write_config()
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--config", str(gateway.config_path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not (gateway.data_dir / "admin-token").exists() or not _healthy(gateway):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _healthy(gateway: GatewayProcess) -> bool:
    try:
        return httpx.get(gateway.base_url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.sqlite_only("SQLite's file lock")
def test_a_locked_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "locked", settings={"database_busy_timeout": 0.2})
    gateway.write_config()
    gateway.cli("tenants", "create", "before")
    holder = sqlite3.connect(gateway.data_dir / "modelport.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
        started = time.monotonic()
        result = gateway.cli("tenants", "create", "during", check=False)
        assert time.monotonic() - started < 5
        assert result.code == 1 and result.out == ""
        assert rows(result.err) == ["modelport: The database is busy (locked by another process); retry shortly."]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    gateway.cli("tenants", "create", "after")  # and nothing is stuck afterwards
