"""The openai-SDK driver against a real streaming server on 127.0.0.1: its figures match the
server's own send record (same host clock), and failures are counted as failures."""
from __future__ import annotations

import statistics

import pytest

from infra.core.bench.load import schedule
from infra.core.bench.results import summarise
from infra.core.sizing.simulate.workload import Lengths
from infra.ops.bench.driver import Driver, DriverConfig
from tests.bench.server import Disconnect, Malformed, Ok, Status


def run(server, *, requests: int, concurrency: int | None = 2, rate: float | None = None, tokens: int = 8,
        duration_s: float = 30.0, retry: bool = False) -> Driver:
    sched = schedule(requests=requests, duration_s=duration_s, concurrency=concurrency, rate_per_s=rate,
                     lengths=Lengths(32, tokens), seed=3)
    driver = Driver(DriverConfig(server.url, "served-model", "secret-token", retry=retry, timeout_s=10), sched)
    driver.run()
    return driver


def paired(server, driver):
    """(bench record, server record) per request, matched by the X-Request-Id the driver sends."""
    sent = server.by_request_id()
    return [(r, sent[driver.request_id(r.index)]) for r in driver.records]


def test_ttft_and_gaps_match_the_servers_send_record(fake_openai):
    """200 ms to the first token and 20 ms per token (the issue's figures), compared with what the
    server recorded sending rather than with wall-clock targets, so a loaded machine holds."""
    server = fake_openai(ttft_s=0.2, itl_s=0.02)
    driver = run(server, requests=4, concurrency=2, tokens=8)
    pairs = paired(server, driver)
    assert len(pairs) == 4 and all(r.ok for r, _ in pairs)
    for r, s in pairs:
        # never before the server sent it, and the client's share is small against the record
        assert s.ttft_s - 0.002 <= r.ttft_s <= s.ttft_s * 1.25 + 0.005
        assert len(r.gaps_s) == len(s.gaps_s) == 7
        diffs = [abs(a - b) for a, b in zip(r.gaps_s, s.gaps_s)]
        assert statistics.median(diffs) <= 0.25 * statistics.median(s.gaps_s)
        assert r.output_tokens == 8 and r.finish_reason == "length"
    doc = summarise(driver.records, wall_s=driver.wall_s)
    server_ttft = statistics.median(s.ttft_s for _, s in pairs) * 1e3
    server_gap = statistics.median(g for _, s in pairs for g in s.gaps_s) * 1e3
    assert server_ttft <= doc["ttft_ms"]["p50"] <= server_ttft * 1.25 + 5
    assert abs(doc["tpot_ms"]["p50"] - server_gap) <= 0.25 * server_gap
    assert abs(doc["itl_ms"]["p50"] - server_gap) <= 0.25 * server_gap


def test_requests_carry_exact_lengths_and_the_key(fake_openai):
    server = fake_openai(ttft_s=0.01, itl_s=0.001)
    driver = run(server, requests=3, tokens=5)
    for r, s in paired(server, driver):
        body = s.body
        assert len(body["prompt"]) == 32 and all(isinstance(t, int) for t in body["prompt"])
        assert body["max_tokens"] == body["min_tokens"] == 5 and body["ignore_eos"] is True
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["model"] == "served-model" and s.headers["authorization"] == "Bearer secret-token"
    prompts = [tuple(s.body["prompt"][:4]) for s in server.sent]
    assert len(set(prompts)) == len(prompts)  # no shared prefix: no prefix-cache hit flatters TTFT


FAILING = {0: Status(503, retry_after_s=7), 1: Disconnect(after_tokens=3), 2: Malformed(after_tokens=2),
           3: Status(429)}


def test_failures_are_failures_never_latency(fake_openai):
    server = fake_openai(ttft_s=0.02, itl_s=0.005, behaviour=lambda i: FAILING.get(i, Ok()))
    driver = run(server, requests=6, concurrency=1, tokens=6)
    by_server = {s.index: r for r, s in paired(server, driver)}
    assert by_server[0].outcome == "http-503" and by_server[0].retry_after_s == 7
    assert by_server[1].outcome == "disconnect" and by_server[2].outcome == "malformed"
    assert by_server[3].outcome == "http-429" and by_server[3].retry_after_s is None
    for i in range(4):
        assert by_server[i].ttft_s is None and by_server[i].e2e_s is None
    doc = summarise(driver.records, wall_s=driver.wall_s, targets_ms={"ttft": 10_000, "tpot": None, "e2e": None})
    assert doc["errors"] == {"429": 1, "503": 1, "disconnect": 1, "malformed": 1}
    assert doc["requests"] == {"sent": 6, "ok": 2, "failed": 4}
    # the two successes are the only latencies; the failures are misses in the attainment
    assert doc["attainment_pct"] == pytest.approx(100 * 2 / 6, abs=0.01)
    assert doc["ttft_ms"]["p99"] < 1_000


def test_retry_waits_the_retry_after_and_records_it(fake_openai):
    server = fake_openai(ttft_s=0.01, itl_s=0.001, behaviour=lambda i: Status(503, 0.2) if i == 0 else Ok())
    driver = run(server, requests=1, concurrency=1, tokens=3, retry=True)
    (rec,) = driver.records
    assert rec.ok and rec.attempts == 2 and rec.retry_wait_s == pytest.approx(0.2)
    assert rec.retry_after_s == 0.2
    first, second = server.sent
    assert second.received_at - first.received_at >= 0.2  # it did wait before sending again
    doc = summarise(driver.records, wall_s=driver.wall_s)
    assert doc["errors"] == {} and doc["retries"] == {"retried_requests": 1, "waited_s": 0.2}


def test_open_loop_sends_on_the_schedule(fake_openai):
    server = fake_openai(ttft_s=0.005, itl_s=0.001)
    driver = run(server, requests=6, concurrency=None, rate=40.0, tokens=2)
    arrivals = driver.sched.arrival_s
    received = sorted(s.received_at for s in server.sent)
    offsets = [t - received[0] for t in received]
    for want, got in zip(arrivals, offsets):
        assert got >= want - 0.01  # never early (the first one anchors both clocks)
    assert all(r.ok for r in driver.records)


def test_duration_bounds_the_run(fake_openai):
    server = fake_openai(ttft_s=0.05, itl_s=0.005)
    driver = run(server, requests=10_000, concurrency=2, tokens=4, duration_s=0.25)
    assert 2 <= len(driver.records) <= 12
    assert driver.wall_s < 1.0
