"""The benchmark's HTTP driver: the official openai SDK (`AsyncOpenAI`, streaming), the client
our users' applications use, against `/v1/completions` with token-id prompts.

Each request asks for exactly its output length: `max_tokens`, and vLLM's `ignore_eos` and
`min_tokens` (extra body fields; a server without them may stop early, counted in
`short_outputs`). `stream_options.include_usage` asks for the server's token count. The SDK's
own retries are off (`max_retries=0`): every 429/503 is recorded; with `retry` the driver
waits the response's `Retry-After` (capped, and within the run's duration) and sends again,
recording the wait.

Times come from `time.perf_counter` (the host's monotonic clock): TTFT is the first streamed
chunk that carries a choice, every later one adds an inter-token gap, end-to-end is the end
of the stream (vLLM's `bench serve` measures the same way).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from infra.core.bench.load import DEFAULT_VOCAB, Schedule, prompt_ids
from infra.core.bench.results import HTTP_PREFIX, OK, RequestRecord

MAX_RETRY_WAIT_S = 60.0  # one Retry-After is honoured up to this long
DEFAULT_RETRY_AFTER_S = 1.0  # a 429/503 without the header, with --retry
REQUEST_ID_HEADER = "X-Request-Id"  # bench-<seed>-<index>: the gateway's and vLLM's logs can name a request


@dataclass(frozen=True)
class DriverConfig:
    base_url: str  # ends in /v1
    model: str  # the served model name
    api_key: str
    timeout_s: float = 300.0
    retry: bool = False
    max_attempts: int = 4
    vocab: int = DEFAULT_VOCAB
    ignore_eos: bool = True
    host_header: str | None = None  # a gateway's listener matches on Host (its Service has another name)


def api_base(url: str) -> str:
    """The SDK's base URL: `url` itself when it ends in /v1, else `url` + /v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def retry_after_s(headers) -> float | None:
    """The Retry-After header in seconds (delta-seconds form), None when absent or a date."""
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Driver:
    """Runs a `Schedule` against one endpoint; `records` fills as requests finish (so an
    interrupted run still has everything that completed)."""

    def __init__(self, cfg: DriverConfig, sched: Schedule, *, on_done: Callable[[RequestRecord], None] | None = None,
                 client=None) -> None:
        self.cfg = cfg
        self.sched = sched
        self.records: list[RequestRecord] = []
        self.on_done = on_done or (lambda r: None)
        self._client = client
        self._rng = np.random.default_rng(sched.seed + 1)
        self.started = 0.0
        self.finished = 0.0

    def request_id(self, index: int) -> str:
        return f"bench-{self.sched.seed}-{index}"

    @property
    def wall_s(self) -> float:
        end = self.finished or time.perf_counter()
        return max(0.0, end - self.started) if self.started else 0.0

    def _client_for(self):
        if self._client is None:
            from openai import AsyncOpenAI

            headers = {"Host": self.cfg.host_header} if self.cfg.host_header else None
            self._client = AsyncOpenAI(base_url=api_base(self.cfg.base_url), api_key=self.cfg.api_key or "EMPTY",
                                       max_retries=0, timeout=self.cfg.timeout_s, default_headers=headers)
        return self._client

    def run(self) -> list[RequestRecord]:
        """Run to the end (or Ctrl-C: KeyboardInterrupt propagates; `records` keeps what finished)."""
        asyncio.run(self._main())
        return self.records

    async def _main(self) -> None:
        client = self._client_for()
        self.started = time.perf_counter()
        deadline = self.started + self.sched.duration_s
        try:
            if self.sched.arrival_s is None:
                await self._closed(client, deadline)
            else:
                await self._open(client, deadline)
        finally:
            self.finished = time.perf_counter()
            await client.close()

    async def _closed(self, client, deadline: float) -> None:
        next_index = iter(range(len(self.sched)))

        async def worker() -> None:
            for i in next_index:
                if time.perf_counter() >= deadline:
                    return
                await self._request(client, i, deadline)

        await asyncio.gather(*(worker() for _ in range(min(self.sched.concurrency or 1, len(self.sched)))))

    async def _open(self, client, deadline: float) -> None:
        tasks = []
        for i, at in enumerate(self.sched.arrival_s.tolist()):
            when = self.started + at
            if when >= deadline:
                break
            delay = when - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._request(client, i, deadline)))
        await asyncio.gather(*tasks)

    async def _request(self, client, i: int, deadline: float) -> None:
        ins, outs = int(self.sched.input_tokens[i]), int(self.sched.output_tokens[i])
        prompt = prompt_ids(self._rng, ins, self.cfg.vocab)
        waited = 0.0
        rec = RequestRecord(i, ins, outs, time.perf_counter() - self.started)
        for attempt in range(1, self.cfg.max_attempts + 1):
            rec = RequestRecord(i, ins, outs, time.perf_counter() - self.started, attempts=attempt, retry_wait_s=waited,
                                retry_after_s=rec.retry_after_s)
            await self._attempt(client, prompt, rec)
            retryable = rec.outcome in (f"{HTTP_PREFIX}429", f"{HTTP_PREFIX}503")
            if not (self.cfg.retry and retryable) or attempt == self.cfg.max_attempts:
                break
            wait = min(MAX_RETRY_WAIT_S, rec.retry_after_s if rec.retry_after_s is not None else DEFAULT_RETRY_AFTER_S)
            if time.perf_counter() + wait >= deadline:
                break  # the run ends first: the failure stands
            await asyncio.sleep(wait)
            waited += wait
        self.records.append(rec)
        self.on_done(rec)

    async def _attempt(self, client, prompt: list[int], rec: RequestRecord) -> None:
        import openai

        t0 = time.perf_counter()
        started_stream = False
        try:
            stream = await client.completions.create(
                model=self.cfg.model, prompt=prompt, max_tokens=rec.output_tokens_requested, stream=True,
                stream_options={"include_usage": True}, extra_headers={REQUEST_ID_HEADER: self.request_id(rec.index)},
                extra_body={"ignore_eos": self.cfg.ignore_eos, "min_tokens": rec.output_tokens_requested})
            started_stream = True
            chunks = 0
            async for chunk in stream:
                now = time.perf_counter() - t0
                if chunk.choices:
                    chunks += 1
                    rec.chunk_s.append(now)
                    if rec.ttft_s is None:
                        rec.ttft_s = now
                    reason = chunk.choices[0].finish_reason
                    if reason:
                        rec.finish_reason = reason
                usage = getattr(chunk, "usage", None)
                if usage is not None and usage.completion_tokens is not None:
                    rec.output_tokens = int(usage.completion_tokens)
            rec.e2e_s = time.perf_counter() - t0
            rec.output_tokens = rec.output_tokens or chunks
            rec.http_status = 200
            rec.outcome = OK if rec.finish_reason else "incomplete"
            if not rec.finish_reason:
                rec.error = "the stream ended without a finish reason"
        except openai.APIStatusError as exc:
            rec.http_status = exc.status_code
            rec.outcome = f"{HTTP_PREFIX}{exc.status_code}"
            rec.retry_after_s = retry_after_s(exc.response.headers)
            rec.error = str(exc)[:200]
        except openai.APITimeoutError as exc:
            rec.outcome, rec.error = "timeout", str(exc)[:200]
        except openai.APIConnectionError as exc:
            rec.outcome, rec.error = ("disconnect" if started_stream else "connect"), str(exc)[:200]
        except openai.APIError as exc:  # an error event inside the stream
            rec.outcome, rec.error = "stream-error", str(exc)[:200]
        except ValueError as exc:  # a chunk that is not JSON
            rec.outcome, rec.error = "malformed", f"{type(exc).__name__}: {exc}"[:200]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the transport broke mid-stream (httpx's errors)
            timeout = "timeout" in type(exc).__name__.lower()
            rec.outcome = "timeout" if timeout else ("disconnect" if started_stream else "connect")
            rec.error = f"{type(exc).__name__}: {exc}"[:200]
        if not rec.ok:
            rec.ttft_s = rec.e2e_s = None  # a failure is never a latency


def server_version(url: str, timeout_s: float = 3.0) -> str | None:
    """vLLM's `GET /version` (at the server root), or None when it does not answer one."""
    import json
    import urllib.request

    root = api_base(url).removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/version", timeout=timeout_s) as resp:  # noqa: S310 - the benched URL
            value = json.loads(resp.read(4096)).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None
