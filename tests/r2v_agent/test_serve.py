"""``r2v serve`` under uvicorn on loopback, spoken to with the official ``openai`` client: a
saved tiny-random agent (real forward passes) and a real fake teacher server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from r2v_agent.agent import RoutedAgent  # noqa: E402
from r2v_agent.serve.app import ServeSettings, create_app  # noqa: E402
from r2v_agent.serve.engine import QueueFull, StepEngine, StepJob  # noqa: E402
from r2v_agent.teacher.openai_http import OpenAITeacher  # noqa: E402
from tests.r2v_agent.fake_openai import (  # noqa: E402
    REPLY,
    USAGE,
    FakeOpenAI,
    free_port,
    running_fake_openai,
)

MESSAGES = [
    {"role": "system", "content": "You play a text adventure. Answer with one command."},
    {
        "role": "user",
        "content": "You are in a kitchen. There is a knife. Your task: take the knife.",
    },
]


class GatedPolicy:
    """The agent's real policy, held at a gate so a test can fill the queue deterministically."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.gate.wait(30)
        return self.policy.sample(*args, **kwargs)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a loopback port; yield its ``/v1`` URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _agent(agent_dir: Path) -> RoutedAgent:
    return RoutedAgent.from_pretrained(agent_dir, seed=0)


def _teacher(url: str) -> OpenAITeacher:
    return OpenAITeacher(url, "gpt-test", timeout=1.0, max_retries=1, backoff=0.01)


@pytest.fixture(scope="module")
def teacher_server() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as srv:
        yield srv


@pytest.fixture(scope="module")
def served(tiny_agent_dir: Path, teacher_server: FakeOpenAI) -> Iterator[str]:
    app = create_app(_agent(tiny_agent_dir), _teacher(teacher_server.base_url), ServeSettings())
    with serving(app) as url:
        yield url


def _client(url: str, key: str = "unused", **kwargs: Any) -> Any:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60, **kwargs)


def test_models_lists_the_agent(served: str) -> None:
    assert [m.id for m in _client(served).models.list()] == ["r2v-agent"]


def test_a_plain_completion_carries_the_routing_record(served: str) -> None:
    reply = _client(served).chat.completions.create(
        model="r2v-agent", messages=MESSAGES, extra_body={"r2v": {"tau": 1.0}}
    )
    r2v = reply.model_extra["r2v"]
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert r2v["actor"] == "slm" and not r2v["escalated"] and r2v["tau"] == 1.0
    assert 0.0 <= r2v["p_fail"] <= 1.0
    assert len(r2v["candidates"]) == 3  # the saved agent's K
    chosen = r2v["candidates"][r2v["chosen"]]
    assert reply.choices[0].message.content == chosen["action"]
    assert chosen["verifier_score"] == max(c["verifier_score"] for c in r2v["candidates"])
    slm = r2v["usage"]["slm"]
    assert slm["prompt_tokens"] > 20 and slm["completion_tokens"] >= 3  # K candidates' tokens
    assert reply.usage.prompt_tokens == slm["prompt_tokens"]
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_tau_override_sends_the_step_to_the_teacher(
    served: str, teacher_server: FakeOpenAI
) -> None:
    before = len(teacher_server.requests)
    reply = _client(served).chat.completions.create(
        model="r2v-agent", messages=MESSAGES, extra_body={"r2v": {"tau": 0.0}}
    )
    r2v = reply.model_extra["r2v"]
    assert r2v["p_fail"] > 0.0
    assert r2v["actor"] == "teacher" and r2v["escalated"] and not r2v["teacher_fallback"]
    assert reply.choices[0].message.content == REPLY
    # The client's own messages went to the teacher, unchanged.
    assert len(teacher_server.requests) == before + 1
    assert teacher_server.requests[-1]["body"]["messages"] == MESSAGES
    assert r2v["usage"]["teacher"] == USAGE
    assert reply.usage.prompt_tokens == r2v["usage"]["slm"]["prompt_tokens"] + 40
    assert r2v["cost"]["calls"] == 1


def test_a_seeded_request_is_reproducible_and_streaming_says_the_same(served: str) -> None:
    client = _client(served)
    body = {
        "model": "r2v-agent",
        "messages": MESSAGES,
        "seed": 7,
        "extra_body": {"r2v": {"tau": 1.0}},
    }
    first = client.chat.completions.create(**body)
    second = client.chat.completions.create(**body)
    assert first.model_extra["r2v"]["candidates"] == second.model_extra["r2v"]["candidates"]
    chunks = list(
        client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    assert finals[0].model_extra["r2v"]["candidates"] == first.model_extra["r2v"]["candidates"]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens == first.usage.total_tokens


def test_a_session_accumulates_steps_and_escalations(served: str) -> None:
    client = _client(served)

    def step(tau: float) -> dict[str, Any]:
        reply = client.chat.completions.create(
            model="r2v-agent",
            messages=MESSAGES,
            extra_body={"r2v": {"session": "ep-1", "tau": tau}},
        )
        return reply.model_extra["r2v"]

    records = [step(0.0), step(0.0), step(1.0)]
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(r["session"] == "ep-1" for r in records)
    alone = client.chat.completions.create(model="r2v-agent", messages=MESSAGES)
    assert alone.model_extra["r2v"]["step"] == 0 and alone.model_extra["r2v"]["session"] is None


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (
            json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(),
            400,
            "messages[0]",
        ),
        (json.dumps({"messages": MESSAGES, "n": 2}).encode(), 400, "n"),
        (json.dumps({"messages": MESSAGES, "r2v": {"tau": 2}}).encode(), 400, "r2v.tau"),
        (json.dumps({"messages": MESSAGES, "r2v": {"budget": 1}}).encode(), 400, "r2v"),
    ],
)
def test_malformed_requests_get_openai_style_400s(
    served: str, payload: bytes, status: int, param: str | None
) -> None:
    response = httpx.post(f"{served}/chat/completions", content=payload, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_an_oversize_request_is_refused_with_413(served: str) -> None:
    huge = [{"role": "user", "content": "x" * 1_100_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        _client(served).chat.completions.create(model="r2v-agent", messages=huge)
    assert caught.value.status_code == 413


def test_metrics_count_requests_escalations_and_share(served: str) -> None:
    client = _client(served)
    client.chat.completions.create(
        model="r2v-agent", messages=MESSAGES, extra_body={"r2v": {"tau": 0.0}}
    )
    text = httpx.get(served.removesuffix("/v1") + "/metrics", timeout=30).text
    assert 'r2v_requests_total{code="200"}' in text
    assert 'r2v_steps_total{actor="teacher"}' in text
    assert "r2v_escalations_total" in text and "r2v_request_seconds_bucket" in text
    share = float(text.split("\nr2v_llm_share ")[1].split()[0])
    assert 0.0 < share <= 1.0


def test_a_teacher_that_is_down_falls_back_to_the_slm(tiny_agent_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    app = create_app(_agent(tiny_agent_dir), _teacher(url), ServeSettings(tau=0.0))
    with serving(app) as served_url:
        reply = _client(served_url).chat.completions.create(model="r2v-agent", messages=MESSAGES)
        r2v = reply.model_extra["r2v"]
        assert r2v["escalated"] and r2v["teacher_fallback"] and r2v["actor"] == "slm"
        assert "Connection" in r2v["teacher_error"] or "URLError" in r2v["teacher_error"]
        assert reply.choices[0].message.content == r2v["candidates"][r2v["chosen"]]["action"]
        text = httpx.get(served_url.removesuffix("/v1") + "/metrics", timeout=30).text
        assert "r2v_teacher_fallbacks_total 1.0" in text


def test_the_api_key_is_required_when_set(tiny_agent_dir: Path, teacher_server: FakeOpenAI) -> None:
    app = create_app(
        _agent(tiny_agent_dir),
        _teacher(teacher_server.base_url),
        ServeSettings(api_key="s3cret-key", tau=1.0),
    )
    with serving(app) as url:
        with pytest.raises(openai.AuthenticationError):
            _client(url, key="wrong").chat.completions.create(model="r2v-agent", messages=MESSAGES)
        with pytest.raises(openai.AuthenticationError):
            _client(url, key="wrong").models.list()
        assert httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).status_code == 401
        reply = _client(url, key="s3cret-key").chat.completions.create(
            model="r2v-agent", messages=MESSAGES
        )
        assert reply.model_extra["r2v"]["actor"] == "slm"


def test_a_full_queue_answers_429_and_a_stuck_step_504(
    tiny_agent_dir: Path, teacher_server: FakeOpenAI
) -> None:
    agent = _agent(tiny_agent_dir)
    gated = GatedPolicy(agent.policy)
    agent.policy = gated
    app = create_app(
        agent,
        _teacher(teacher_server.base_url),
        ServeSettings(tau=1.0, max_queue=1, max_batch=1, request_timeout=60, retry_after=3),
    )
    with serving(app) as url:
        client = _client(url)
        results: dict[str, Any] = {}

        def call(name: str) -> None:
            results[name] = client.chat.completions.create(model="r2v-agent", messages=MESSAGES)

        running = threading.Thread(target=call, args=("running",))
        running.start()
        assert gated.entered.wait(30)  # the engine holds the first step at the gate
        waiting = threading.Thread(target=call, args=("waiting",))
        waiting.start()
        deadline = time.monotonic() + 30
        while app.state.engine.depth < 1:  # the second step is queued
            assert time.monotonic() < deadline
            time.sleep(0.02)
        turned_away = {"messages": MESSAGES, "r2v": {"session": "s"}}
        response = httpx.post(f"{url}/chat/completions", json=turned_away, timeout=30)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"]["code"] == "queue_full"
        gated.gate.set()
        running.join(60)
        waiting.join(60)
        assert results["running"].model_extra["r2v"]["actor"] == "slm"
        assert results["waiting"].model_extra["r2v"]["actor"] == "slm"
        # The turned-away request did not count as a step of its session.
        again = client.chat.completions.create(
            model="r2v-agent", messages=MESSAGES, extra_body={"r2v": {"session": "s"}}
        )
        assert again.model_extra["r2v"]["step"] == 0

    agent = _agent(tiny_agent_dir)
    agent.policy = GatedPolicy(agent.policy)  # never released: the step cannot finish in time
    app = create_app(agent, None, ServeSettings(request_timeout=0.5))
    with serving(app) as url:
        response = httpx.post(f"{url}/chat/completions", json={"messages": MESSAGES}, timeout=30)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
        agent.policy.gate.set()


def test_the_engine_refuses_past_its_bound_and_batches_sample_many(tiny_agent_dir: Path) -> None:
    agent = _agent(tiny_agent_dir)
    engine = StepEngine(agent, family="textworld", max_queue=2)
    job = StepJob(MESSAGES, MESSAGES[-1]["content"], 0, 0)
    engine.submit(job)
    engine.submit(StepJob(MESSAGES, MESSAGES[-1]["content"], 0, 0))
    with pytest.raises(QueueFull):
        engine.submit(StepJob(MESSAGES, MESSAGES[-1]["content"], 0, 0))
    engine.stop()
    assert job.future.cancelled()

    calls: list[int] = []

    class Batching(GatedPolicy):
        def sample_many(self, prompts: list[Any], **kwargs: Any) -> list[Any]:
            calls.append(len(prompts))
            return [self.policy.sample(p, **kwargs) for p in prompts]

    agent.policy = Batching(agent.policy)
    agent.policy.gate.set()
    engine = StepEngine(agent, family="textworld", max_queue=8, max_batch=8)
    jobs = [StepJob(MESSAGES, MESSAGES[-1]["content"], i, 0) for i in range(4)]
    for item in jobs:  # queued before the worker starts: one batch
        engine.submit(item)
    engine.start()
    results = [item.future.result(timeout=60) for item in jobs]
    engine.stop()
    assert calls == [4]
    assert [r.assessment.features["step_frac"] for r in results] == sorted(
        r.assessment.features["step_frac"] for r in results
    )


def test_the_cli_serves_logs_no_secrets_and_stops_on_sigterm(
    tiny_agent_dir: Path, teacher_server: FakeOpenAI, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    key_file = tmp_path / "key"
    key_file.write_text("cli-key-123\n")
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    command = [sys.executable, "-m", "r2v_agent.cli", "serve", "--agent", str(tiny_agent_dir)]
    command += ["--teacher-url", teacher_server.base_url, "--teacher-model", "gpt-test"]
    command += ["--port", str(port), "--api-key-file", str(key_file), "--tau", "0"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "r2v serve exited while starting"
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "r2v serve did not start in 120 s"
            time.sleep(0.2)
        secret = "the-secret-content-of-this-conversation"
        messages = [{"role": "user", "content": f"You are in a kitchen. {secret}"}]
        reply = _client(url, key="cli-key-123").chat.completions.create(
            model="r2v-agent", messages=messages
        )
        assert reply.model_extra["r2v"]["actor"] == "teacher"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    log.seek(0)
    text = log.read()
    # uvicorn shuts the app down (the engine stops), then re-raises SIGTERM as its exit.
    assert "Application shutdown complete" in text
    assert code in (0, -signal.SIGTERM)
    assert "answered step 0" in text  # our own line per request ...
    assert secret not in text and "cli-key-123" not in text  # ... holds no body and no key


def test_the_cli_refuses_bad_settings(tiny_agent_dir: Path, tmp_path: Path) -> None:
    from r2v_agent.cli import main

    base = ["serve", "--agent", str(tiny_agent_dir), "--teacher-url", "http://127.0.0.1:9/v1"]
    base += ["--teacher-model", "m"]
    assert main([*base, "--api-key-file", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").write_text("  \n")
    assert main([*base, "--api-key-file", str(tmp_path / "empty")]) == 2
    assert main([*base, "--tau", "1.5"]) == 2
