"""Where RSA runs: a helper process while serving, the calling thread otherwise.

RSA must stay off the event loop, and a thread is not enough: pycryptodome holds the
GIL between many small C calls, so with the loop thread busy a decrypt in a thread took
~75x longer (and a key generation minutes) while the loop itself slowed to ~40 % (GIL
convoy). A process has its own GIL. `InlineCrypto` is for one-shot CLI commands, tests
and `crypto.processes: 0`, where there is no loop worth protecting or it is accepted.

The helpers are plain subprocesses (`keystore/crypto_helper.py`, which exits when
idle) spoken to over pipes
by the event loop itself. Not multiprocessing: its spawn copies the parent's environment,
where a gateway worker keeps $MODELPORT_MASTER_KEY, and /proc/PID/environ shows it to
whoever can read the helper's; and its executor's manager and feeder threads contend
with a busy loop for the GIL. Here the helper gets an explicit, minimal environment
(`_child_environment`), and no thread of ours takes part.

Only RSA crosses the process boundary: the master key never leaves the parent, which
unwraps a tenant's private key (AES-GCM, microseconds) and sends the DER to the child
over the pipe. The child keeps nothing between calls.

Each exchange is read by the helper's protocol, in the loop's own read callback, not
by the caller: a caller cancelled mid-call (its client went away) only abandons its
future. The answer is still consumed and the helper returned to the idle queue then,
so the pipe never holds a stale answer that the next caller would take for its own.
(A task per exchange awaited through asyncio.shield gives the same guarantee, but
wakes the caller three loop iterations later, and under load an iteration of the loop
is milliseconds: measured, that made it slower than the executor.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from asyncio.subprocess import PIPE
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from keystore.crypto import KeyPair, KeystoreError
from keystore.crypto_helper import (
    _HEADER,
    _MAX_ANSWER,
    DECRYPT_NICENESS,
    IDLE_EXIT,
    LAUNCH,
    _Answer,
    _decrypt,
    _generate,
)

__all__ = ["CryptoRunner", "InlineCrypto", "ProcessCrypto"]

log = logging.getLogger("modelport")

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0  # a key generation in progress finishes well within this

# What the interpreter needs to run and to find temp files and locale; nothing else, so
# no secret of the parent's (the master key, an API key in the environment) can leak.
_KEPT_ENV = ("PATH", "LANG", "TMPDIR", "HOME", "SYSTEMROOT")


class CryptoRunner(Protocol):
    async def generate_key_pair(self) -> KeyPair: ...

    async def decrypt(self, private_der: bytes, blob: bytes) -> bytes:
        """`blob` opened with a private key that `crypto.unwrap_private_key` produced."""
        ...

    async def close(self) -> None: ...


# -- the runners ------------------------------------------------------------------------------

class InlineCrypto:
    """RSA in the calling thread: blocks an event loop for the operation's duration."""

    async def generate_key_pair(self) -> KeyPair:
        return _generate()

    async def decrypt(self, private_der: bytes, blob: bytes) -> bytes:
        return _decrypt(private_der, blob)

    async def close(self) -> None:
        pass


def _child_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if (name in _KEPT_ENV or name.startswith("LC_")) and not name.startswith("MODELPORT_")}
    # The parent's own import path, so the child runs exactly the parent's code however
    # it was installed (a checkout, a venv, a wheel, pytest's rootdir).
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(str(entry)) for entry in sys.path)
    return env


def _parse(frame: bytes) -> _Answer | None:
    """The answer in a frame, or None if it holds none (the helper is then replaced)."""
    try:
        answer = pickle.loads(frame)
    except Exception:
        return None
    if (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], bool)
            and (answer[0] or (isinstance(answer[1], tuple) and len(answer[1]) == 2
                               and isinstance(answer[1][1], str)))):
        return cast(_Answer, answer)
    return None


class _Helper(asyncio.SubprocessProtocol):
    """One helper process. Its answers are framed here as they arrive, whoever still
    waits for them (see the module docstring); the caller wakes one loop iteration
    after its answer arrives. One request at a time: `busy` from `_take` to the answer."""

    def __init__(self, release: Callable[[_Helper | None], None]) -> None:
        self._release = release  # back to the idle queue: itself, or None once broken
        self._transport: asyncio.SubprocessTransport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer | None] | None = None
        self.busy = False  # taken by a call, until its answer arrives or the helper breaks
        self.broken = False
        self.finished = asyncio.get_running_loop().create_future()  # exited, reaped, pipes closed

    @property
    def pid(self) -> int:
        assert self._transport is not None
        return self._transport.get_pid()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def send(self, request: bytes) -> asyncio.Future[_Answer | None]:
        """The answer to come, or None if the helper breaks first."""
        assert self._transport is not None and self.busy and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        stdin = cast(asyncio.WriteTransport, self._transport.get_pipe_transport(0))
        try:
            stdin.write(request)  # a few KB: the pipe takes it at once, no drain needed
        except Exception as exc:  # its pipe closed under us (uvloop raises, asyncio does not)
            self._break(f"its stdin failed ({type(exc).__name__})")
        return self._waiter

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.broken:
            return
        self._buffer += data
        while not self.broken and len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > _MAX_ANSWER:
                self._break(f"it sent a frame of {size} bytes")
                return
            if len(self._buffer) < _HEADER.size + size:
                return
            frame = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
            del self._buffer[:_HEADER.size + size]
            if self._waiter is None:
                self._break("it sent an answer nobody asked for")
                return
            answer = _parse(frame)
            if answer is None:
                self._break("it sent a frame that is not an answer")
                return
            waiter, self._waiter = self._waiter, None
            if not waiter.done():  # done: cancelled, its caller went away
                waiter.set_result(answer)
            self.busy = False
            self._release(self)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        # The end of its answers, not process_exited: that may come first, before the
        # last answer is delivered.
        if fd == 1:
            # It is exiting: killing it now could reap it behind asyncio's back.
            self._break("it exited", kill=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def close_stdin(self) -> None:
        if self._transport is not None:
            pipe = self._transport.get_pipe_transport(0)
            if pipe is not None:
                pipe.close()

    def returncode(self) -> int | None:
        return None if self._transport is None else self._transport.get_returncode()

    def kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            try:
                self._transport.kill()
            except ProcessLookupError:
                pass  # exited meanwhile

    def _break(self, reason: str, kill: bool = True) -> None:
        if self.broken:
            return
        self.broken = True
        self._buffer.clear()
        if self.busy:
            log.warning("cryptography helper %d failed: %s", self.pid, reason)
        if kill:
            self.kill()  # the loop reaps it (`finished`)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.busy:  # an idle one stays queued, broken: its next taker replaces it
            self.busy = False
            self._release(None)


class ProcessCrypto:
    """RSA in `processes` helper processes, started on first use.

    A helper that dies (OOM killer, a signal) or breaks the protocol is killed and
    replaced, and the call retried once; a second failure fails the call with a
    KeystoreError instead of retrying for ever, and the next call starts a new helper."""

    def __init__(self, processes: int = 1, idle_exit: float | None = IDLE_EXIT,
                 niceness: int = DECRYPT_NICENESS) -> None:
        if processes < 1:
            raise ValueError("ProcessCrypto needs at least one process (use InlineCrypto for none)")
        self._processes = processes
        self._idle_exit = idle_exit  # a helper exits after this long without work (None: never)
        self._niceness = niceness
        # A slot per helper; None is one not started yet (or replaced after it broke).
        self._idle: asyncio.Queue[_Helper | None] = asyncio.Queue()
        for _ in range(processes):
            self._idle.put_nowait(None)
        self._helpers: set[_Helper] = set()  # every helper not yet reaped, busy or idle
        self._closed = False

    @property
    def processes(self) -> int:
        return self._processes

    async def generate_key_pair(self) -> KeyPair:
        return await self._call(_generate)

    async def decrypt(self, private_der: bytes, blob: bytes) -> bytes:
        return await self._call(_decrypt, private_der, blob)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        body = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        request = _HEADER.pack(len(body)) + body
        for _ in range(2):  # a helper that broke is replaced: once more, with the new one
            helper = await self._take()
            if helper is None:
                continue  # it could not start (logged)
            answer = await helper.send(request)
            if answer is not None:
                return cast(T, _result(answer))
            if self._closed:
                break
        if self._closed:
            raise KeystoreError("the keystore is closed")
        raise KeystoreError("the cryptography helper process died twice in a row (or could not "
                            "start); see the server log (out of memory?)")

    async def _take(self) -> _Helper | None:
        """An idle, working helper (started if need be), or None if one could not start."""
        if self._closed:
            raise KeystoreError("the keystore is closed")
        slot = await self._idle.get()
        if self._closed:
            self._idle.put_nowait(slot)  # wakes the next waiter, which fails the same way
            raise KeystoreError("the keystore is closed")
        if slot is not None and not slot.broken:
            slot.busy = True
            return slot
        if slot is not None and slot.returncode() == 0:
            log.debug("the cryptography helper exited after %s s without work; starting a new one", self._idle_exit)
        elif slot is not None:  # broke while idle (killed when it broke; the loop reaps it)
            log.warning("a cryptography helper process died while idle; starting a new one")
        helper = None
        try:
            helper = await self._start()  # on cancellation asyncio kills and reaps what it started
        except Exception as exc:
            log.warning("could not start a cryptography helper process: %s", type(exc).__name__)
        finally:
            if helper is None:
                self._idle.put_nowait(None)
        if helper is not None and self._closed:  # close() ran while it started
            self._idle.put_nowait(None)
            helper.kill()
            await helper.finished
            raise KeystoreError("the keystore is closed")
        if helper is not None:
            helper.busy = True
        return helper

    async def _start(self) -> _Helper:
        loop = asyncio.get_running_loop()
        _, helper = await loop.subprocess_exec(
            lambda: _Helper(self._idle.put_nowait),
            # -P: not the working directory first on the path; it might hold another
            # checkout whose `keystore` would shadow ours.
            sys.executable, "-P", "-c", LAUNCH,
            "-" if self._idle_exit is None else str(self._idle_exit), str(self._niceness),
            stdin=PIPE, stdout=PIPE, stderr=None, env=_child_environment())
        self._helpers.add(helper)
        helper.finished.add_done_callback(lambda _: self._helpers.discard(helper))
        return helper

    async def close(self) -> None:
        """Stop the helpers: each finishes what it is doing (a key generation: under a
        second), sees its stdin closed and exits; after `_CLOSE_TIMEOUT`, it is killed.
        A call still waiting gets its answer, or KeystoreError("the keystore is closed")."""
        self._closed = True
        helpers = list(self._helpers)
        if not helpers:
            return
        for helper in helpers:
            helper.close_stdin()
        await asyncio.wait([h.finished for h in helpers], timeout=_CLOSE_TIMEOUT)
        for helper in helpers:
            if not helper.finished.done():
                helper.kill()
        await asyncio.gather(*(h.finished for h in helpers))


def _result(answer: _Answer) -> object:
    ok, payload = answer
    if ok:
        return payload
    kind, message = cast(tuple[object, str], payload)
    if isinstance(kind, type) and issubclass(kind, KeystoreError):
        try:
            error = kind(message)
        except Exception:
            error = KeystoreError(message)
        raise error
    raise KeystoreError(f"the cryptography helper failed: {message}")
