"""The openai backend against a real vLLM server on loopback (vLLM's CPU build, SmolLM2 in
float32), plus its fault cases. One server for the whole module: an engine start takes 1-3
minutes on 2 cores.

vLLM lives in its own environment (``make vllm``); ``make test`` sets ``R2V_REQUIRE_VLLM=1`` so
that a missing one fails instead of skipping."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from r2v_agent.errors import ConfigError  # noqa: E402
from r2v_agent.policy.base import Policy  # noqa: E402
from r2v_agent.policy.build import build_policy  # noqa: E402
from r2v_agent.policy.models import load_model_and_tokenizer, source_dir  # noqa: E402
from r2v_agent.policy.openai_compat import OpenAIPolicy, SLMServerError  # noqa: E402
from r2v_agent.policy.prompts import FORMATS, Turn  # noqa: E402
from r2v_agent.policy.vllm_server import VLLMServer, find_vllm_python  # noqa: E402
from tests.r2v_agent.backend_parity import (  # noqa: E402
    MESSAGES,
    check_contract,
    check_parity,
    marked,
)


@pytest.fixture(scope="module")
def smollm2() -> tuple:
    return load_model_and_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def server(smollm2):  # noqa: ARG001 -- the weights folder exists once SmolLM2 is loaded
    if find_vllm_python() is None:
        if os.environ.get("R2V_REQUIRE_VLLM") == "1":
            pytest.fail("R2V_REQUIRE_VLLM=1 but no Python with vLLM (make vllm)")
        pytest.skip("no Python with vLLM (make vllm makes .venv-vllm)")
    with VLLMServer(source_dir("smollm2-135m"), dtype="float32") as running:
        yield running


@pytest.fixture(scope="module")
def policy(server, smollm2) -> OpenAIPolicy:
    _, tokenizer = smollm2
    built = build_policy(
        "openai",
        None,
        tokenizer,
        k=5,
        seed=0,
        entropy_top_k=20,
        backend_options={"url": server.url},
    )
    assert isinstance(built, OpenAIPolicy)
    return built


def test_the_policy_contract(policy, smollm2) -> None:
    assert isinstance(policy, Policy) and policy.model == "slm"
    check_contract(policy, len(smollm2[1]))


def test_parity_with_the_transformers_model(policy, smollm2) -> None:
    worst = check_parity(policy, *smollm2)
    print("openai backend vs transformers, largest deviations:", worst)


def test_greedy_action_is_the_transformers_backends(policy, smollm2) -> None:
    model, tokenizer = smollm2
    reference = build_policy("transformers", model, tokenizer, k=1, entropy_top_k=20)
    ours = policy.sample(MESSAGES, greedy=True, max_new_tokens=16).candidates[0]
    theirs = reference.sample(MESSAGES, greedy=True, max_new_tokens=16).candidates[0]
    assert ours.token_ids == theirs.token_ids and ours.text == theirs.text


def test_prefix_reuse_across_an_episodes_steps(policy, server) -> None:
    """vLLM's prefix cache holds the earlier steps' prompt: later steps compute less."""
    client = OpenAIPolicy(server.url, policy.tokenizer, k=1, seed=0)
    fmt = FORMATS["textworld"]
    # a prompt no earlier test sent, and one candidate: vLLM counts as cached the prompt blocks
    # the K candidates of one request share, which would hide what reuse across steps saves
    turns = [Turn(MESSAGES[-1]["content"] * 3)]
    marker = uuid.uuid4().hex[:8]
    computed = []
    for step in range(3):
        out = client.sample(marked(fmt.messages(turns), marker), k=1, max_new_tokens=6)
        computed.append((out.computed_prompt_tokens, out.prompt_tokens))
        turns[-1] = Turn(turns[-1].observation, "open fridge")
        turns.append(Turn(f"Step {step}: you open the fridge. It is empty. " * 3))
    # the first step computes its whole prompt; later ones reuse the whole blocks (128 tokens
    # on vLLM's CPU build) of the previous step's prompt
    assert computed[0][0] == computed[0][1] >= 128, computed
    for (_, before), (done, total) in zip(computed, computed[1:], strict=False):
        assert total - done >= 128 * (before // 128), computed


def test_concurrent_clients_share_the_engine(policy, server, smollm2) -> None:
    """Several episodes at once against one server: each gets its own seeded candidates."""
    _, tokenizer = smollm2
    clients = [OpenAIPolicy(server.url, tokenizer, k=3, seed=s) for s in range(4)]
    results: dict[int, list[str]] = {}

    def run(i: int) -> None:
        results[i] = [c.text for c in clients[i].sample(MESSAGES, max_new_tokens=6).candidates]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == [0, 1, 2, 3] and all(len(v) == 3 for v in results.values())
    # the same seed alone gives the same candidates as under concurrency
    again = OpenAIPolicy(server.url, tokenizer, k=3, seed=2).sample(MESSAGES, max_new_tokens=6)
    assert [c.text for c in again.candidates] == results[2]


def test_server_down_is_a_clear_error_not_a_hang(smollm2) -> None:
    _, tokenizer = smollm2
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SLMServerError, match="is it running"):
        OpenAIPolicy(f"http://127.0.0.1:{port}/v1", tokenizer, timeout=2, max_retries=1)
    assert time.monotonic() - start < 20


def test_a_server_that_never_answers_times_out(smollm2) -> None:
    _, tokenizer = smollm2
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never replies
    try:
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(SLMServerError):
            OpenAIPolicy(
                f"http://127.0.0.1:{port}/v1", tokenizer, model="m", timeout=1.5, max_retries=1
            ).sample(MESSAGES)
        assert time.monotonic() - start < 20
    finally:
        listener.close()


def test_r2v_eval_with_the_openai_backend_is_seeded(server, tmp_path: Path) -> None:
    """End to end on the smoke config's env: one server, two workers as its clients; the
    same seed writes the same episodes."""
    from r2v_agent.cli import main
    from r2v_agent.trajectories import read_episodes

    def run(out: Path) -> list[dict]:
        argv = ["eval", "--config", "benchmarks/configs/smoke.yaml", "--agent", "smollm2-135m"]
        argv += ["--tasks", "2", "--seeds", "100", "--methods", "slm,r2v", "--max-steps", "3"]
        argv += ["--workers", "2", "--backend", "openai", "--slm-url", server.url]
        argv += ["--out", str(out)]
        assert main(argv) == 0
        return sorted(read_episodes(out), key=lambda r: r["episode_key"])

    first, second = run(tmp_path / "a.jsonl"), run(tmp_path / "b.jsonl")
    assert len(first) == 4
    assert all(s["features"] and s["candidates"] for r in first for s in r["steps"])
    actions = [[s["action"] for s in r["steps"]] for r in first]
    assert actions == [[s["action"] for s in r["steps"]] for r in second]
    settings = json.loads((tmp_path / "a.settings.json").read_text())
    assert settings["backend"] == "openai"


def test_eval_refuses_inconsistent_backend_options(tmp_path: Path) -> None:
    from r2v_agent.cli import main

    base = ["eval", "--env", "R2V/TextWorld-v0", "--agent", "tiny-random"]
    base += ["--out", str(tmp_path / "x.jsonl")]
    assert main([*base, "--backend", "openai"]) == 2  # no URL
    assert main([*base, "--slm-url", "http://127.0.0.1:1/v1"]) == 2  # URL without openai
    assert main([*base, "--backend", "vllm", "--workers", "2"]) == 2
    with pytest.raises(ConfigError):
        build_policy("vllm", None, None, entropy_top_k=20)  # tiny-random has no folder
