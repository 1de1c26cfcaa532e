"""The benchmark's tests run against tests/bench/server.py on 127.0.0.1 (no other network)."""
from __future__ import annotations

import pytest

from tests.bench.server import FakeOpenAI


@pytest.fixture
def fake_openai():
    """`fake_openai(ttft_s=..., itl_s=..., behaviour=...)` starts a server, stopped after the test."""
    started = []

    def start(**kwargs) -> FakeOpenAI:
        server = FakeOpenAI(**kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
