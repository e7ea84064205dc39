"""The RSA helper process (started as `python -P -c LAUNCH IDLE_SECONDS NICENESS`): the child
side of `keystore/offload.py`. It imports the keystore's cryptography and nothing of the
gateway, answers one request at a time, and exits when its stdin closes (the parent
stops it) or when no request came for IDLE_SECONDS: a worker whose tenants are all warm
needs no RSA, and an idle helper would cost it ~35 MB. The parent starts a new one on
the next need (~0.25 s).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys

from keystore import crypto
from keystore.crypto import KeyPair, KeystoreError

# A frame: 4-byte big-endian length, then a pickle. Pickle is safe here only because
# both ends are our own processes, started by us with our code, over private pipes.
_HEADER = struct.Struct(">I")
# A key pair is ~3 KB and a secret far less: anything bigger is a broken helper, and
# the bound keeps one from making the parent buffer gigabytes.
_MAX_ANSWER = 1 << 20
# Niceness added to the helper's: its RSA then yields the core to the serving workers,
# which are the latency-sensitive ones. Decryptions (a cold tenant's request waits for
# one) get a little less than the workers, key generation (an admin waits) much less.
DECRYPT_NICENESS = 5
KEYGEN_NICENESS = 10
IDLE_EXIT = 120.0  # seconds without a request before a helper exits

_Answer = tuple[bool, object]


# Module-level so that they pickle by name.

def _generate() -> KeyPair:
    return crypto.generate_key_pair()


def _decrypt(private_der: bytes, blob: bytes) -> bytes:
    # The DER comes from an authenticated unwrap in the parent (see load_unwrapped_private_key).
    return crypto.decrypt_secret(crypto.load_unwrapped_private_key(private_der), blob)


def _read_exactly(fd: int, size: int, idle: float | None) -> bytes | None:
    """`size` bytes from `fd`; None at end of file, or when `idle` seconds pass before the
    first byte. Unbuffered: nothing can wait in a buffer that `select` does not see."""
    data = bytearray()
    while len(data) < size:
        if not data and idle is not None and not select.select([fd], [], [], idle)[0]:
            return None
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _answer(request: bytes) -> _Answer:
    try:
        fn, args = pickle.loads(request)
        return True, fn(*args)
    except KeystoreError as exc:
        # Our own errors carry messages written to be shown (never a secret): the class
        # too, so that a DecryptionError stays one.
        return False, (type(exc), str(exc))
    except Exception as exc:
        # Anything else might quote its input, which may be key material: the type only.
        return False, (None, type(exc).__name__)


# How the parent starts a helper: lower the priority first, then import (the imports
# are ~0.25 s of CPU that must not compete with the serving workers either).
# argv: [-c, IDLE_SECONDS or "-", NICENESS].
LAUNCH = ("import os, runpy, sys\n"
          "try:\n    os.nice(int(sys.argv[2]))\n"
          "except (AttributeError, OSError):\n    pass  # best effort\n"
          "runpy.run_module('keystore.crypto_helper', run_name='__main__')\n")


def _serve(idle: float | None) -> None:
    """One request at a time until stdin closes or `idle` seconds pass without one."""
    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.fileno()
    # Frames go to a private copy of fd 1, and fd 1 becomes stderr: a stray print, from
    # Python or C, cannot corrupt them.
    answers = os.dup(1)
    os.dup2(2, 1)
    while (header := _read_exactly(requests, _HEADER.size, idle)) is not None:
        request = _read_exactly(requests, _HEADER.unpack(header)[0], None)
        if request is None:
            return
        answer = _answer(request)
        try:
            frame = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            frame = pickle.dumps((False, (None, type(exc).__name__)), pickle.HIGHEST_PROTOCOL)
        out = memoryview(_HEADER.pack(len(frame)) + frame)
        try:
            while out:
                out = out[os.write(answers, out):]
        except OSError:
            return  # the parent is gone


if __name__ == "__main__":
    _idle = sys.argv[1] if len(sys.argv) > 1 else "-"  # "-": never exit for idleness
    _serve(None if _idle == "-" else float(_idle))
