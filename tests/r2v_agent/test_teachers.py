"""Teachers, including the OpenAI-compatible one against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from r2v_agent.policy.prompts import Turn
from r2v_agent.teacher import OpenAITeacher, OracleTeacher, PriceTable
from tests.r2v_agent.fake_openai import FakeOpenAI, running_fake_openai

TURNS = [Turn("You are in a kitchen. Your task: take the knife.")]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as srv:
        yield srv


def _teacher(url: str, **kwargs) -> OpenAITeacher:
    defaults = {
        "timeout": 0.5,
        "max_retries": 2,
        "backoff": 0.01,
        "max_backoff": 0.2,
        "prices": PriceTable({"gpt-test": (1.0, 2.0)}),
    }
    return OpenAITeacher(url, "gpt-test", **{**defaults, **kwargs})


def test_success_extracts_action_and_costs_the_call(server: FakeOpenAI) -> None:
    teacher = _teacher(server.base_url, api_key="sk-test")
    reply = teacher.act(TURNS, {}, fallback_action="look")
    assert reply.action == "take knife" and not reply.fallback
    assert reply.cost.calls == 1 and reply.cost.prompt_tokens == 40
    assert reply.cost.usd == pytest.approx((40 * 1.0 + 3 * 2.0) / 1e6)
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["messages"][0]["role"] == "system"
    assert sent["body"]["messages"][-1]["content"] == TURNS[0].observation
    assert "api_key" not in json.dumps(teacher.spec())


@pytest.mark.parametrize(
    ("script", "retries"),
    [(["500", "ok"], 1), (["429:0.05", "500", "ok"], 2), (["hang", "ok"], 1)],
)
def test_transient_faults_are_retried(server: FakeOpenAI, script: list[str], retries: int) -> None:
    server.script = list(script)
    teacher = _teacher(server.base_url)
    reply = teacher.act(TURNS, {}, fallback_action="look")
    assert reply.action == "take knife" and not reply.fallback
    assert reply.retries == retries and teacher.stats.retries == retries
    assert teacher.stats.requests == len(script)


def test_retry_after_is_honoured(server: FakeOpenAI) -> None:
    server.script = ["429:0.3", "ok"]
    teacher = _teacher(server.base_url, max_backoff=1.0)
    start = time.monotonic()
    assert not teacher.act(TURNS, {}, fallback_action="look").fallback
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize(
    "script", [["500", "500", "500"], ["hang", "hang", "hang"], ["malformed"], ["400"]]
)
def test_persistent_failures_fall_back_without_raising(
    server: FakeOpenAI, script: list[str]
) -> None:
    server.script = list(script)
    teacher = _teacher(server.base_url)
    start = time.monotonic()
    reply = teacher.act(TURNS, {}, fallback_action="go north")
    assert reply.fallback and reply.action == "go north" and reply.error
    assert reply.cost.calls == 0 and teacher.stats.fallbacks == 1
    assert teacher.stats.requests == len(script)  # malformed / 4xx are not retried
    assert time.monotonic() - start < 5


def test_connection_refused_falls_back() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    teacher = _teacher(f"http://127.0.0.1:{port}/v1")
    reply = teacher.act(TURNS, {}, fallback_action="look")
    assert reply.fallback and "refused" in reply.error.lower()
    assert teacher.stats.requests == 3 and teacher.stats.retries == 2


def test_oracle_teacher_reads_the_expert_hint_and_falls_back_without_it() -> None:
    teacher = OracleTeacher(model="frontier", prices=PriceTable({"frontier": (3.0, 15.0)}))
    reply = teacher.act(TURNS, {"expert_action": "take knife"}, fallback_action="look")
    assert reply.action == "take knife" and reply.cost.calls == 1 and reply.cost.usd > 0
    missing = teacher.act(TURNS, {}, fallback_action="look")
    assert missing.fallback and missing.action == "look" and "expert_hints" in missing.error
    assert teacher.total.calls == 1


def test_local_teacher_falls_back_when_its_model_says_nothing() -> None:
    pytest.importorskip("torch")
    from r2v_agent.teacher import TransformersTeacher

    # The untrained tiny model's greedy reply is only line breaks: no action, a recorded fallback.
    teacher = TransformersTeacher("tiny-random", max_new_tokens=8)
    reply = teacher.act(TURNS, {}, fallback_action="look")
    assert reply.fallback and reply.action == "look" and "no action" in reply.error
    assert teacher.total.calls == 0
    assert teacher.spec() == {"type": "TransformersTeacher", "model": "tiny-random"}


@pytest.mark.slow
def test_local_teacher_with_smollm2_acts_and_costs_tokens() -> None:
    from r2v_agent.teacher import TransformersTeacher

    teacher = TransformersTeacher("smollm2-135m", max_new_tokens=16)
    first = teacher.act(TURNS, {}, fallback_action="look")
    second = teacher.act(TURNS, {}, fallback_action="look")
    assert not first.fallback and first.action and first.action == second.action  # greedy
    assert first.cost.calls == 1 and first.cost.prompt_tokens > 20
    assert teacher.total.calls == 2


def test_concurrent_calls_lose_no_count(server: FakeOpenAI) -> None:
    """serve shares one teacher across its thread pool: every call is counted once."""
    from concurrent.futures import ThreadPoolExecutor

    teacher = _teacher(server.base_url, timeout=30.0)  # no retry for a slow, busy machine
    server.script = ["500"] * 10  # the first 10 requests fail once each and are retried
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: teacher.act(TURNS, {}, fallback_action="x"), range(64)))
    assert all(r.action == "take knife" for r in replies)
    assert teacher.stats.successes == 64 and teacher.stats.fallbacks == 0
    assert teacher.stats.retries == 10 and teacher.stats.requests == 74
    assert teacher.total.calls == 64 and teacher.total.prompt_tokens == 64 * 40
