"""The shared JSON-over-HTTP transport (retries, what is not retried, bounded delays) against a
real HTTP server on loopback. ``truncated``: the server promises more bytes than it sends."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from r2v_agent.http_json import HTTPJSONError, RetryPolicy, request_json
from tests.r2v_agent.fake_openai import FakeOpenAI, free_port, running_fake_openai

FAST = RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.2)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as srv:
        yield srv


def _call(url: str, attempts: list[int] | None = None, **kwargs):
    on_attempt = attempts.append if attempts is not None else None
    defaults = {"timeout": 1.0, "retry": FAST, "rng": random.Random(0), "on_attempt": on_attempt}
    return request_json(url, {"q": 1}, **{**defaults, **kwargs})


def test_a_5xx_is_retried_and_the_retries_counted(server: FakeOpenAI) -> None:
    server.script = ["500", "429:0.01", "truncated", "ok"]
    attempts: list[int] = []
    payload, retries = _call(
        server.base_url + "/chat/completions", attempts, api_key="sk-x", retry=RetryPolicy(3, 0.01)
    )
    assert payload["choices"][0]["message"]["content"] and retries == 3
    assert attempts == [0, 1, 2, 3] and len(server.requests) == 4
    assert server.requests[0]["body"] == {"q": 1} and server.requests[0]["auth"] == "Bearer sk-x"


@pytest.mark.parametrize(("script", "requests"), [(["400"], 1), (["500", "400"], 2)])
def test_a_4xx_is_not_retried(server: FakeOpenAI, script: list[str], requests: int) -> None:
    server.script = list(script)
    with pytest.raises(HTTPJSONError, match="HTTP 400") as info:
        _call(server.base_url + "/chat/completions")
    assert not info.value.retryable and info.value.retries == requests - 1
    assert len(server.requests) == requests


def test_an_answer_that_is_not_json_is_not_retried(server: FakeOpenAI) -> None:
    server.script = ["malformed"]
    with pytest.raises(HTTPJSONError, match="not JSON") as info:
        _call(server.base_url + "/chat/completions")
    assert not info.value.retryable and len(server.requests) == 1


def test_a_dead_server_fails_after_every_try_within_a_bound() -> None:
    attempts: list[int] = []
    start = time.monotonic()
    with pytest.raises(HTTPJSONError, match="failed after 3 tries") as info:
        _call(f"http://127.0.0.1:{free_port()}/v1/models", attempts, timeout=0.5)
    assert info.value.retryable and info.value.retries == 2 and attempts == [0, 1, 2]
    assert time.monotonic() - start < 10


def test_delays_double_with_jitter_and_are_capped() -> None:
    policy = RetryPolicy(max_retries=5, backoff=0.5, max_backoff=3.0)
    rng = random.Random(1)
    for retry, base in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
        delay = policy.delay(retry, None, rng)
        assert base * 0.5 <= delay <= base
    assert policy.delay(0, 2.5, rng) == 2.5  # Retry-After replaces the backoff...
    assert policy.delay(0, 60.0, rng) == 3.0  # ...within the cap
    with pytest.raises(ValueError, match=">= 0"):
        RetryPolicy(max_retries=-1)
