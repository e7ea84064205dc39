"""The slow upstream for the soak: an OpenAI-format SSE stream that sends one chunk
every `--interval` seconds (nginx cannot dribble a static file chunk by chunk).

    python -m bench.dribble --port 9000 --chunks 20 --interval 0.1

Raw asyncio protocol (uvloop when installed): HTTP/1.1 keep-alive, any POST path,
the request body is read (Content-Length) and ignored, the answer is chunked.
Prints `ready` on stdout when listening. It stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import ClassVar

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def events(chunks: int) -> list[bytes]:
    """chunks content events, then the usage chunk and [DONE] (sent together at the end)."""
    created = int(time.time())
    base = {"id": "chatcmpl-bench-dribble", "object": "chat.completion.chunk", "created": created,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_bench"}
    out = []
    for i in range(chunks):
        delta: dict[str, object] = {"content": f" tok{i}"}
        if i == 0:
            delta = {"role": "assistant", "content": ""}
        finish = "stop" if i == chunks - 1 else None
        if finish:
            delta = {}
        ev = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        out.append(b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n")
    usage = {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": chunks,
                                              "total_tokens": 9 + chunks}}
    tail = b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"
    out[-1] = out[-1] + tail
    return [_chunk(e) for e in out] + [b"0\r\n\r\n"]


class Dribble(asyncio.Protocol):
    frames: ClassVar[list[bytes]] = []
    interval: ClassVar[float] = 0.1
    active: ClassVar[int] = 0

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._maybe_start()

    def _maybe_start(self) -> None:
        if self.busy:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip() == b"content-length":
                length = int(value.strip())
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[:end + 4 + length]
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        Dribble.active += 1
        try:
            t = self.transport
            if t is None:
                return
            t.write(HEAD + self.frames[0])
            for frame in self.frames[1:-1]:
                await asyncio.sleep(self.interval)
                if self.transport is None:
                    return
                self.transport.write(frame)
            if self.transport is not None:
                self.transport.write(self.frames[-1])
        finally:
            Dribble.active -= 1
            self.busy = False
            self.task = None
        if self.transport is not None and self.buf:
            self._maybe_start()


async def serve(port: int, chunks: int, interval: float) -> None:
    Dribble.frames = events(chunks)
    Dribble.interval = interval
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Dribble, "127.0.0.1", port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.1)
    a = p.parse_args()
    run(serve(a.port, a.chunks, a.interval))


def run(coro: object) -> None:
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
