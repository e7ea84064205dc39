"""RSA off the event loop (keystore/offload.py), the key pair pool (keystore/keypool.py)
and the keystore's bounded private-key cache (keystore/store.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from Crypto.IO import PKCS8
from Crypto.PublicKey import RSA
from Crypto.Util.asn1 import DerSequence

from keystore import crypto, offload
from keystore.crypto import DecryptionError, KeyPair, KeystoreError, new_master_key
from keystore.crypto_helper import DECRYPT_NICENESS
from keystore.keypool import KeyPairPool
from keystore.models import Credential, CredentialField
from keystore.offload import CryptoRunner, InlineCrypto, ProcessCrypto
from keystore.store import Keystore

SPEC = (CredentialField("api_key"),)
MASTER = bytes(range(32))


@pytest.fixture(scope="module")
def pair() -> KeyPair:
    return crypto.generate_key_pair()


@pytest.fixture(scope="module")
def pairs() -> list[KeyPair]:
    return [crypto.generate_key_pair() for _ in range(3)]


@pytest.fixture(scope="module")
async def process_runner() -> AsyncIterator[ProcessCrypto]:
    runner = ProcessCrypto(1)
    try:
        yield runner
    finally:
        await runner.close()


def _seal(pair: KeyPair, text: str) -> bytes:
    return crypto.encrypt_secret(crypto.load_public_key(pair.public_pem), text.encode())


async def _until(condition: Callable[[], bool], steps: int = 1000) -> None:
    """Let the loop run until `condition` holds (bounded: a broken pool fails, not hangs)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def _ticks_while_pending(work: Awaitable[Any]) -> int:
    """How often a 1 ms ticker ran while `work` was still pending. RSA on the loop itself
    finishes before the ticker ever runs again: 0. Off the loop it is many."""
    task = asyncio.ensure_future(work)
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.001)
        if not task.done():
            ticks += 1
    await task
    return ticks


# -- the fast loader for our own unwrapped keys ---------------------------------------------

def test_the_fast_loader_builds_the_same_key_as_import_key(pair: KeyPair) -> None:
    fast = crypto.load_unwrapped_private_key(pair.private_der)
    assert fast == RSA.import_key(pair.private_der)
    assert fast.has_private() and fast.u == RSA.import_key(pair.private_der).u
    blob = _seal(pair, "sk-fast")
    assert crypto.decrypt_secret(fast, blob) == b"sk-fast"


def test_the_fast_loader_refuses_what_is_not_an_rsa_private_key(pair: KeyPair) -> None:
    public_der = RSA.import_key(pair.public_pem).export_key(format="DER")
    oid, pkcs1, _ = PKCS8.unwrap(pair.private_der)
    fields = DerSequence().decode(pkcs1)[:]
    fields[1] += 2  # a modulus that is not p * q: well-formed DER, wrong key
    wrong_modulus = PKCS8.wrap(DerSequence(fields).encode(), oid)
    for bad in (b"", b"\x30\x03\x02\x01\x00", pair.private_der[:-7], public_der, pair.public_pem, wrong_modulus):
        with pytest.raises(KeystoreError, match="not a valid RSA private key"):
            crypto.load_unwrapped_private_key(bad)


# -- the runners --------------------------------------------------------------------------------

async def test_process_decryption_equals_inline_decryption(pair: KeyPair, process_runner: ProcessCrypto) -> None:
    blob = _seal(pair, "sk-same-either-way")
    inline = await InlineCrypto().decrypt(pair.private_der, blob)
    assert inline == b"sk-same-either-way"
    assert await process_runner.decrypt(pair.private_der, blob) == inline


async def test_a_failure_in_the_helper_arrives_as_the_keystore_error(pairs: list[KeyPair],
                                                                   process_runner: ProcessCrypto) -> None:
    blob = _seal(pairs[0], "sk-wrong-key")
    with pytest.raises(DecryptionError) as raised:
        await process_runner.decrypt(pairs[1].private_der, blob)
    assert raised.value.__cause__ is None  # the child's traceback text is not chained on
    assert "sk-" not in str(raised.value)


async def test_key_generation_happens_in_the_helper_process(monkeypatch: pytest.MonkeyPatch,
                                                           process_runner: ProcessCrypto) -> None:
    def not_here() -> KeyPair:
        raise AssertionError("generated in the parent process")

    # Patched in this process only: a spawned child imports its own, untouched copy.
    monkeypatch.setattr(crypto, "generate_key_pair", not_here)
    with pytest.raises(AssertionError, match="in the parent"):
        await InlineCrypto().generate_key_pair()  # the control: inline does run here
    made = await process_runner.generate_key_pair()
    public, private = crypto.load_public_key(made.public_pem), crypto.load_private_key(made.private_der)
    assert public.n == private.n and private.size_in_bits() == crypto.RSA_BITS
    assert await process_runner._call(os.getpid) != os.getpid()


async def test_the_event_loop_keeps_running_while_a_key_pair_is_generated(process_runner: ProcessCrypto) -> None:
    assert await _ticks_while_pending(InlineCrypto().generate_key_pair()) == 0  # the control
    assert await _ticks_while_pending(process_runner.generate_key_pair()) >= 2


def _helper(runner: ProcessCrypto) -> Any:
    """The runner's one helper process (its protocol object: `pid`, `kill()`, `finished`)."""
    helpers = list(runner._helpers)
    assert len(helpers) == 1
    return helpers[0]


def _gone(pid: int) -> bool:
    """Exited and reaped: a zombie still answers signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _soon(call: Awaitable[Any]) -> Awaitable[Any]:
    """Bounded: a broken runner fails the test instead of hanging it."""
    return asyncio.wait_for(call, 10)


async def test_a_killed_helper_is_replaced(pair: KeyPair) -> None:
    runner = ProcessCrypto(1)
    try:
        first = await runner._call(os.getpid)
        killed = _helper(runner)
        assert killed.pid == first
        killed.kill()  # as the OOM killer would, while it is idle
        await _soon(killed.finished)
        blob = _seal(pair, "sk-after-crash")
        assert await _soon(runner.decrypt(pair.private_der, blob)) == b"sk-after-crash"
        assert await _soon(runner._call(os.getpid)) != first
        assert _gone(first)
    finally:
        await runner.close()


async def test_a_helper_killed_mid_call_is_replaced_and_the_call_retried(pair: KeyPair) -> None:
    runner = ProcessCrypto(1)
    try:
        first = await runner._call(os.getpid)
        slow = asyncio.ensure_future(runner._call(time.sleep, 0.5))
        await asyncio.sleep(0.1)
        os.kill(first, signal.SIGKILL)
        assert await _soon(slow) is None  # answered, by the replacement
        assert await _soon(runner._call(os.getpid)) != first
        assert await _soon(runner.decrypt(pair.private_der, _seal(pair, "sk-retried"))) == b"sk-retried"
    finally:
        await runner.close()


async def test_a_helper_that_keeps_dying_fails_the_call_and_not_the_runner(pair: KeyPair) -> None:
    runner = ProcessCrypto(1)
    try:
        with pytest.raises(KeystoreError, match="died twice"):
            await _soon(runner._call(os._exit, 3))  # kills each helper it reaches: the first and its replacement
        blob = _seal(pair, "sk-still-served")
        assert await _soon(runner.decrypt(pair.private_der, blob)) == b"sk-still-served"
    finally:
        await runner.close()
    with pytest.raises(KeystoreError, match="closed"):
        await runner.decrypt(pair.private_der, blob)


async def test_the_helper_environment_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")
    # What a gateway worker does for itself (proxy/app.py: app_from_handoff), and others.
    secret = "mp-master-key-not-a-real-one-4f1c9d"
    monkeypatch.setenv("MODELPORT_MASTER_KEY", secret)
    monkeypatch.setenv("MODELPORT_ADMIN_TOKEN", "mpa-not-a-real-token")
    monkeypatch.setenv("HOSTED_OPENAI_API_KEY", "sk-not-a-real-key-in-the-env")
    monkeypatch.setenv("LC_TIME", "C")
    runner = ProcessCrypto(1)
    try:
        pid = await runner._call(os.getpid)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
        assert secret.encode() not in environ and b"sk-not-a-real-key" not in environ
        assert not [name for name in names if name.startswith("MODELPORT_")]
        assert "HOSTED_OPENAI_API_KEY" not in names and "LC_TIME" in names
        assert names <= {"PATH", "LANG", "TMPDIR", "HOME", "SYSTEMROOT", "PYTHONPATH"} | {
            name for name in names if name.startswith("LC_")}
        assert await runner._call(os.getenv, "MODELPORT_MASTER_KEY") is None  # not set later either
        # It runs the parent's code: its import path is the parent's (site drops duplicates).
        expected = list(dict.fromkeys(os.path.abspath(entry) for entry in sys.path))
        child_path = await runner._call(eval, "__import__('sys').path")
        assert child_path[:len(expected)] == expected
    finally:
        await runner.close()


async def test_a_cancelled_caller_leaves_the_helper_in_step(pair: KeyPair) -> None:
    runner = ProcessCrypto(1)
    try:
        pid = await runner._call(os.getpid)
        gone = asyncio.ensure_future(runner._call(time.sleep, 0.3))  # answers None, later
        waiting = asyncio.ensure_future(runner._call(os.getpid))  # waits for the only helper
        await asyncio.sleep(0.1)
        gone.cancel()
        waiting.cancel()
        for cancelled in (gone, waiting):
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        # The next call gets its own answer (not the abandoned None), from the same helper.
        blob = _seal(pair, "sk-in-step")
        assert await _soon(runner.decrypt(pair.private_der, blob)) == b"sk-in-step"
        assert await _soon(runner._call(os.getpid)) == pid
    finally:
        await runner.close()


async def test_an_oversize_answer_counts_as_a_dead_helper(pair: KeyPair) -> None:
    runner = ProcessCrypto(1)
    try:
        first = await runner._call(os.getpid)
        with pytest.raises(KeystoreError, match="died twice"):
            await _soon(runner._call(bytes, offload._MAX_ANSWER + 1))  # a real helper, a frame too big
        assert _gone(first)  # killed and reaped, as was its replacement
        assert await _soon(runner.decrypt(pair.private_der, _seal(pair, "sk-after-big"))) == b"sk-after-big"
    finally:
        await runner.close()


@pytest.mark.parametrize("garbage", [
    offload._HEADER.pack(5) + b"junk!",                      # not a pickle
    offload._HEADER.pack(11) + b"\x80\x05K\x07.oops..",      # a pickle, not an answer (and extra)
    offload._HEADER.pack(0xFFFF_FFFF),                        # a 4 GiB frame announced
])
async def test_a_garbage_frame_counts_as_a_dead_helper(pair: KeyPair, garbage: bytes) -> None:
    runner = ProcessCrypto(1)
    try:
        first = await runner._call(os.getpid)
        helper = _helper(runner)
        slow = asyncio.ensure_future(runner._call(time.sleep, 0.2))
        await asyncio.sleep(0.05)
        helper.pipe_data_received(1, garbage)  # as if the helper had written it
        assert await _soon(slow) is None  # retried on a new helper
        await _soon(helper.finished)
        assert _gone(first) and await _soon(runner._call(os.getpid)) != first
        # Garbage from an idle helper (an answer nobody asked for): replaced on next use.
        second = _helper(runner)
        second.pipe_data_received(1, garbage)
        assert await _soon(runner.decrypt(pair.private_der, _seal(pair, "sk-clean"))) == b"sk-clean"
        assert await _soon(runner._call(os.getpid)) not in (first, second.pid)
    finally:
        await runner.close()


async def test_another_failure_in_the_helper_arrives_by_its_type_only(process_runner: ProcessCrypto) -> None:
    with pytest.raises(KeystoreError) as raised:
        await process_runner._call(int, "sk-a-secret-that-is-no-number")
    assert "ValueError" in str(raised.value) and "sk-" not in str(raised.value)
    assert type(raised.value) is KeystoreError


async def test_close_waits_for_a_call_in_progress_and_leaves_nothing_running() -> None:
    runner = ProcessCrypto(2)
    first = asyncio.ensure_future(runner._call(os.getpid))
    second = asyncio.ensure_future(runner._call(os.getpid))
    pids = {await first, await second}
    assert len(pids) == 2
    slow = asyncio.ensure_future(runner._call(eval, "__import__('time').sleep(0.3) or 'slept'"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(runner.close(), 10)
    assert await slow == "slept"  # it finished its work before exiting
    assert all(_gone(pid) for pid in pids) and not runner._helpers
    await runner.close()  # twice is fine
    with pytest.raises(KeystoreError, match="closed"):
        await runner._call(os.getpid)


async def test_close_kills_a_helper_that_does_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "_CLOSE_TIMEOUT", 0.2)
    runner = ProcessCrypto(1)
    pid = await runner._call(os.getpid)
    stuck = asyncio.ensure_future(runner._call(time.sleep, 60))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await asyncio.wait_for(runner.close(), 10)
    assert time.monotonic() - started < 5 and _gone(pid)
    with pytest.raises(KeystoreError, match="closed"):
        await stuck


def test_the_helpers_work_under_uvloop(pair: KeyPair) -> None:
    """The server's loop (uvicorn picks uvloop when installed)."""
    uvloop = pytest.importorskip("uvloop")

    async def exercise() -> None:
        runner = ProcessCrypto(1)
        try:
            blob = _seal(pair, "sk-uvloop")
            first = await runner._call(os.getpid)
            os.kill(first, signal.SIGKILL)
            assert await _soon(runner.decrypt(pair.private_der, blob)) == b"sk-uvloop"
            second = await runner._call(os.getpid)
            gone = asyncio.ensure_future(runner._call(time.sleep, 0.2))
            await asyncio.sleep(0.05)
            gone.cancel()
            assert await _soon(runner.decrypt(pair.private_der, blob)) == b"sk-uvloop"
            assert await _soon(runner._call(os.getpid)) == second != first
        finally:
            await runner.close()
        assert _gone(first) and _gone(second)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        run.run(exercise())


# -- the key pair pool --------------------------------------------------------------------------

class FakeGenerator:
    """Numbered fake pairs; `gate` holds every generation until set."""

    def __init__(self, fail: int = 0) -> None:
        self.made = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    async def generate_key_pair(self) -> KeyPair:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail:
                self.fail -= 1
                raise KeystoreError("generation failed")
            self.made += 1
            return KeyPair(public_pem=b"public %d" % self.made, private_der=b"private %d" % self.made)
        finally:
            self.in_flight -= 1

    async def decrypt(self, private_der: bytes, blob: bytes) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_the_pool_hands_out_pregenerated_pairs_and_refills() -> None:
    runner = FakeGenerator()
    pool = KeyPairPool(runner, 2)
    try:
        assert pool.ready == 0 and runner.made == 0  # nothing before start()
        pool.start()
        await _until(lambda: pool.ready == 2)
        for _ in range(5):
            await asyncio.sleep(0)
        assert runner.made == 2  # bounded by the size
        taken = await pool.take()
        assert taken.public_pem == b"public 1" and pool.hits == 1 and pool.misses == 0
        await _until(lambda: pool.ready == 2)
        assert runner.made == 3
        assert (await pool.take()).public_pem == b"public 2"
    finally:
        await pool.close()


async def test_a_pool_never_started_fills_after_its_first_take() -> None:
    runner = FakeGenerator()
    pool = KeyPairPool(runner, 2)
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert runner.made == 0  # a worker that creates no tenant generates nothing
        assert (await pool.take()).public_pem == b"public 1" and pool.misses == 1
        await _until(lambda: pool.ready == 2)
        assert (await pool.take()).public_pem == b"public 2" and pool.hits == 1
    finally:
        await pool.close()


async def test_the_pool_refills_with_one_generation_at_a_time() -> None:
    runner = FakeGenerator()
    runner.gate.clear()
    pool = KeyPairPool(runner, 3)
    try:
        pool.start()
        for _ in range(10):
            pool.start()
            await asyncio.sleep(0)
        assert runner.in_flight == 1
        runner.gate.set()
        await _until(lambda: pool.ready == 3)
        assert runner.most_in_flight == 1 and runner.made == 3
    finally:
        await pool.close()


async def test_an_empty_pool_generates_on_the_spot_and_size_zero_keeps_none() -> None:
    runner = FakeGenerator()
    pool = KeyPairPool(runner, 0)
    pool.start()
    assert (await pool.take()).public_pem == b"public 1"
    await asyncio.sleep(0.01)
    assert runner.made == 1 and pool.ready == 0 and pool.misses == 1
    await pool.close()


async def test_a_failed_refill_stops_and_the_next_take_recovers(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeGenerator(fail=1)
    pool = KeyPairPool(runner, 1)
    try:
        with caplog.at_level(logging.WARNING, logger="modelport"):
            pool.start()
            await _until(lambda: "could not pre-generate" in caplog.text)
        assert pool.ready == 0 and runner.made == 0  # stopped, not spinning
        assert (await pool.take()).public_pem == b"public 1"
        await _until(lambda: pool.ready == 1)
    finally:
        await pool.close()


async def test_closing_the_pool_cancels_a_refill_in_progress() -> None:
    runner = FakeGenerator()
    runner.gate.clear()  # never released: only cancellation ends the refill
    pool = KeyPairPool(runner, 2)
    pool.start()
    await _until(lambda: runner.in_flight == 1)
    closing = asyncio.ensure_future(pool.close())
    try:
        await _until(closing.done, steps=200)
    finally:
        closing.cancel()
    assert runner.in_flight == 0 and pool.ready == 0
    with pytest.raises(RuntimeError):
        await pool.take()


# -- the keystore: tenant keys from the pool, the private-key cache ----------------------------

async def test_tenant_keys_come_from_the_pool_wrapped_under_the_current_master() -> None:
    runner = FakeGenerator()
    keystore = Keystore(MASTER, runner=runner, pregenerated_keys=1)
    keystore.start()
    try:
        await _until(lambda: keystore.pool.ready == 1)
        public, wrapped = await keystore.create_tenant_keys("tn_pool")
        assert public == b"public 1" and keystore.pool.hits == 1
        assert wrapped.master_key_id == crypto.master_key_id(MASTER) == keystore.key_id
        assert crypto.unwrap_private_key(MASTER, wrapped, b"tn_pool") == b"private 1"
        await _until(lambda: keystore.pool.ready == 1)
        assert keystore.stats.keys_generated == 2  # the refill counts too
    finally:
        await keystore.close()


def _tenants(pairs: list[KeyPair]) -> dict[str, tuple[bytes, bytes]]:
    """tenant id -> (wrapped private key, a credential sealed for that tenant)."""
    return {f"tn_{i}": (crypto.wrap_private_key(MASTER, p.private_der, f"tn_{i}".encode()),
                        _seal(p, f'{{"api_key": "sk-{i}"}}'))
            for i, p in enumerate(pairs)}


async def _open(keystore: Keystore, tenants: dict[str, tuple[bytes, bytes]], tenant_id: str) -> Credential:
    wrapped, blob = tenants[tenant_id]
    return await keystore.open_credential(tenant_id, wrapped, blob, SPEC)


async def test_the_private_key_cache_is_bounded_least_recently_used_first(pairs: list[KeyPair]) -> None:
    keystore = Keystore(MASTER, private_keys=2)
    tenants = _tenants(pairs)
    assert (await _open(keystore, tenants, "tn_0"))["api_key"] == "sk-0"
    await _open(keystore, tenants, "tn_1")
    assert keystore.stats.unwraps == 2
    await _open(keystore, tenants, "tn_0")  # a hit, and now the most recently used
    assert keystore.stats.unwraps == 2
    await _open(keystore, tenants, "tn_2")  # evicts tn_1, the least recently used
    assert keystore.stats.unwraps == 3 and keystore.cached_private_keys == 2
    await _open(keystore, tenants, "tn_0")
    assert keystore.stats.unwraps == 3
    assert (await _open(keystore, tenants, "tn_1"))["api_key"] == "sk-1"  # unwrapped again
    assert keystore.stats.unwraps == 4 and keystore.cached_private_keys == 2
    assert keystore.stats.rsa_decryptions == 6


async def test_forget_drops_one_tenant_or_all(pairs: list[KeyPair]) -> None:
    keystore = Keystore(MASTER)
    tenants = _tenants(pairs)
    for tenant_id in ("tn_0", "tn_1"):
        await _open(keystore, tenants, tenant_id)
    keystore.forget("tn_0")
    await _open(keystore, tenants, "tn_1")
    assert keystore.stats.unwraps == 2  # tn_1 stayed cached
    await _open(keystore, tenants, "tn_0")
    assert keystore.stats.unwraps == 3
    keystore.forget()
    await _open(keystore, tenants, "tn_0")
    await _open(keystore, tenants, "tn_1")
    assert keystore.stats.unwraps == 5


async def test_open_credential_in_the_helper_equals_the_inline_decrypt(pairs: list[KeyPair],
                                                                      process_runner: ProcessCrypto) -> None:
    runner: CryptoRunner = process_runner
    served = Keystore(MASTER, runner=runner)
    tenants = _tenants(pairs)
    wrapped, blob = tenants["tn_2"]
    opened = await served.open_credential("tn_2", wrapped, blob, SPEC)
    assert opened == Keystore(MASTER).decrypt("tn_2", wrapped, blob, SPEC)
    assert opened["api_key"] == "sk-2" and served.stats.rsa_decryptions == 1 and served.stats.unwraps == 1


async def test_an_idle_helper_exits_and_the_next_call_starts_another(pair: KeyPair,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    runner = ProcessCrypto(1, idle_exit=0.3)
    try:
        first = await runner._call(os.getpid)
        helper = _helper(runner)
        await asyncio.wait_for(helper.finished, 10)  # it left on its own: nobody closed or killed it
        assert helper.returncode() == 0 and _gone(first) and not runner._helpers
        assert await _soon(runner.decrypt(pair.private_der, _seal(pair, "sk-after-idle"))) == b"sk-after-idle"
        assert await runner._call(os.getpid) != first
        assert "died" not in caplog.text  # an idle exit is no failure
    finally:
        await runner.close()


async def test_a_busy_helper_does_not_exit_for_idleness(pair: KeyPair) -> None:
    runner = ProcessCrypto(1, idle_exit=0.3)
    try:
        first = await runner._call(os.getpid)
        for _ in range(6):  # 0.6 s in all, never 0.3 s without a request
            await runner._call(time.sleep, 0.1)
        assert await runner._call(os.getpid) == first
    finally:
        await runner.close()


async def test_key_generation_and_decryption_run_in_separate_lanes(pairs: list[KeyPair]) -> None:
    decrypting, generating = ProcessCrypto(1), ProcessCrypto(1, niceness=7)
    keystore = Keystore(new_master_key(), runner=decrypting, key_runner=generating)
    try:
        public, wrapped = await keystore.create_tenant_keys("tn_lanes")
        blob = keystore.encrypt(public, Credential({"api_key": "sk-test-lanes-not-real-0000"}))
        cred = await keystore.open_credential("tn_lanes", wrapped, blob, SPEC)
        assert cred["api_key"] == "sk-test-lanes-not-real-0000"
        (decrypter,), (generator,) = decrypting._helpers, generating._helpers
        assert decrypter.pid != generator.pid  # each lane started its own helper, and only one
        nice = [int(Path(f"/proc/{h.pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) for h in (decrypter, generator)]
        assert nice[1] - nice[0] == 7 - DECRYPT_NICENESS  # the generator yields more to the workers
        assert keystore.stats.keys_generated == 1 and keystore.stats.rsa_decryptions == 1
    finally:
        await keystore.close()
    assert not decrypting._helpers and not generating._helpers  # close() stops both lanes
