"""A small OpenAI-compatible streaming server on 127.0.0.1 for the benchmark's tests.

`/v1/completions` (stream: true) answers with one SSE chunk per token: the first after `ttft_s`,
each next after `itl_s`, then a usage chunk and `data: [DONE]`. `behaviour(i)` picks what request
i gets: `Ok()`, `Status(503, retry_after_s=2)`, `Disconnect(after_tokens=3)` (the socket closes
mid-stream), `Malformed(after_tokens=2)` (a chunk that is not JSON). The server records, per
request, when it received it and when it sent each token chunk (`time.perf_counter`, the same
host clock the client uses), so tests compare the client's figures with that record.

HTTP/1.1 with keep-alive and chunked transfer encoding; TCP_NODELAY, and every chunk drained
before its send time is taken.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Ok:
    pass


@dataclass(frozen=True)
class Status:
    code: int
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Disconnect:
    after_tokens: int


@dataclass(frozen=True)
class Malformed:
    after_tokens: int


@dataclass
class Sent:
    """What the server did for one request."""

    index: int
    body: dict
    headers: dict
    received_at: float
    behaviour: object
    chunk_at: list[float] = field(default_factory=list)  # each token chunk, after its drain

    @property
    def ttft_s(self) -> float:
        return self.chunk_at[0] - self.received_at

    @property
    def gaps_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_at, self.chunk_at[1:])]


REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}


class FakeOpenAI:
    def __init__(self, *, ttft_s: float = 0.05, itl_s: float = 0.01,
                 behaviour: Callable[[int], object] = lambda i: Ok()) -> None:
        self.ttft_s, self.itl_s, self.behaviour = ttft_s, itl_s, behaviour
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def by_request_id(self) -> dict[str, Sent]:
        return {s.headers.get("x-request-id", ""): s for s in self.sent}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:  # open connections: end them inside the loop, then close it
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    # -- HTTP ---------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._handle(method, path, headers, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _plain(self, writer, code: int, doc: dict, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        hdrs = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})}
        writer.write(f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\n".encode()
                     + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode() + b"\r\n" + data)
        await writer.drain()

    async def _handle(self, method: str, path: str, headers: dict, raw: bytes, writer) -> bool:
        """Answer one request; False when the connection must close."""
        if method == "GET" and path.rstrip("/") == "/version":
            await self._plain(writer, 200, {"version": "0.18.0"})
            return True
        if method != "POST" or path.rstrip("/") != "/v1/completions":
            await self._plain(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        received = time.perf_counter()
        body = json.loads(raw)
        with self._lock:
            index = len(self.sent)
            rec = Sent(index, body, headers, received, self.behaviour(index))
            self.sent.append(rec)
        b = rec.behaviour
        if isinstance(b, Status):
            extra = {"Retry-After": f"{b.retry_after_s:g}"} if b.retry_after_s is not None else {}
            await self._plain(writer, b.code, {"error": {"message": "overloaded", "code": b.code}}, extra)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        tokens = int(body.get("max_tokens") or 16)
        start = received
        for k in range(tokens):
            due = start + self.ttft_s + k * self.itl_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if isinstance(b, Disconnect) and k == b.after_tokens:
                writer.transport.abort()
                return False
            if isinstance(b, Malformed) and k == b.after_tokens:
                await self._event(writer, '{"id": "cmpl-x", "choices": [{"text": ')
                await self._event(writer, "[DONE]")
                self._end(writer)
                return True
            last = k == tokens - 1
            await self._event(writer, json.dumps({
                "id": f"cmpl-{index}", "object": "text_completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "text": f" t{k}", "logprobs": None, "finish_reason": "length" if last else None}],
            }))
            rec.chunk_at.append(time.perf_counter())
        prompt = body.get("prompt") or []
        await self._event(writer, json.dumps({
            "id": f"cmpl-{index}", "object": "text_completion", "created": 0, "model": body.get("model"), "choices": [],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": tokens, "total_tokens": len(prompt) + tokens},
        }))
        await self._event(writer, "[DONE]")
        self._end(writer)
        await writer.drain()
        return True

    @staticmethod
    async def _event(writer, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()

    @staticmethod
    def _end(writer) -> None:
        writer.write(b"0\r\n\r\n")
