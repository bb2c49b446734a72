"""The in-process vLLM backend (vLLM's CPU build, SmolLM2 in float32): the Policy contract,
parity with transformers, prefix reuse, several episodes in one batch, ``r2v eval`` end to end.

vLLM pins its own transformers, so these run in the environment ``make vllm`` makes:
``make test`` runs this file a second time with ``.venv-vllm/bin/python`` (in the main
environment it skips, as vLLM is not importable there)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

from r2v_agent.errors import ConfigError  # noqa: E402
from r2v_agent.policy.base import Policy  # noqa: E402
from r2v_agent.policy.build import build_policy  # noqa: E402
from r2v_agent.policy.models import load_model_and_tokenizer, source_dir  # noqa: E402
from r2v_agent.policy.prompts import FORMATS, Turn  # noqa: E402
from r2v_agent.policy.vllm import VLLMPolicy  # noqa: E402
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
def policy(smollm2):
    _, tokenizer = smollm2
    built = build_policy(
        "vllm", None, tokenizer, source=source_dir("smollm2-135m"), k=5, seed=0, entropy_top_k=20
    )
    assert isinstance(built, VLLMPolicy)
    yield built
    built.close()


def test_the_policy_contract(policy, smollm2) -> None:
    assert isinstance(policy, Policy)
    check_contract(policy, len(smollm2[1]))


def test_parity_with_the_transformers_model(policy, smollm2) -> None:
    worst = check_parity(policy, *smollm2)
    print("vllm backend vs transformers, largest deviations:", worst)


def test_prefix_reuse_and_batched_episodes(policy) -> None:
    fmt = FORMATS["textworld"]
    # a prompt no earlier test sent, and one candidate: vLLM counts as cached the prompt blocks
    # the K candidates of one request share, which would hide what reuse across steps saves
    turns = [Turn(MESSAGES[-1]["content"] * 3)]
    marker = uuid.uuid4().hex[:8]
    computed = []
    for step in range(3):
        out = policy.sample(marked(fmt.messages(turns), marker), k=1, max_new_tokens=6)
        computed.append((out.computed_prompt_tokens, out.prompt_tokens))
        turns[-1] = Turn(turns[-1].observation, "open fridge")
        turns.append(Turn(f"Step {step}: you open the fridge. It is empty. " * 3))
    # the first step computes its whole prompt; later ones reuse the whole blocks (128 tokens
    # on vLLM's CPU build) of the previous step's prompt
    assert computed[0][0] == computed[0][1] >= 128, computed
    for (_, before), (done, total) in zip(computed, computed[1:], strict=False):
        assert total - done >= 128 * (before // 128), computed
    # several episodes' prompts in one engine batch: each seeded like a call of its own
    prompts = [fmt.messages([Turn(f"Room {i}: a door leads north.")]) for i in range(3)]
    policy.reseed(5)
    batched = policy.sample_many(prompts, max_new_tokens=6)
    policy.reseed(5)
    alone = [policy.sample(p, max_new_tokens=6) for p in prompts]
    assert [[c.text for c in r.candidates] for r in batched] == [
        [c.text for c in r.candidates] for r in alone
    ]


def test_r2v_eval_with_the_vllm_backend(tmp_path: Path) -> None:
    """A seeded evaluation on the smoke config's env, SLM steps sampled by vLLM."""
    from r2v_agent.cli import main
    from r2v_agent.evaluation import run
    from r2v_agent.trajectories import read_episodes

    out = tmp_path / "e.jsonl"
    argv = ["eval", "--config", "benchmarks/configs/smoke.yaml", "--agent", "smollm2-135m"]
    argv += ["--tasks", "2", "--seeds", "100", "--methods", "slm,r2v", "--max-steps", "3"]
    argv += ["--backend", "vllm", "--out", str(out)]
    try:
        assert main(argv) == 0
    finally:  # the runner keeps its agent (and its engine) for later jobs: stop it here
        for cached in run._CACHE.values():  # agents (and envs) the runner kept
            close = getattr(getattr(cached, "policy", None), "close", None)
            if close is not None:
                close()
        run._CACHE.clear()
    records = list(read_episodes(out))
    assert len(records) == 4
    assert all(s["features"] and s["candidates"] for r in records for s in r["steps"])


def test_a_folder_is_needed(smollm2) -> None:
    with pytest.raises(ConfigError, match="safetensors"):
        build_policy("vllm", None, smollm2[1], entropy_top_k=20)


@pytest.mark.gpu
def test_vllm_cuda_build_on_a_gpu(smollm2) -> None:
    """On a CUDA machine with vLLM's CUDA build (``make vllm VLLM_SPEC=vllm``): the contract and
    parity in float32, and a bfloat16 engine's step time printed."""
    from vllm.platforms import current_platform

    if not torch.cuda.is_available() or current_platform.is_cpu():
        pytest.skip("needs a CUDA GPU and vLLM's CUDA build")
    _, tokenizer = smollm2
    folder = source_dir("smollm2-135m")
    exact = build_policy(
        "vllm",
        None,
        tokenizer,
        source=folder,
        k=5,
        entropy_top_k=20,
        backend_options={"dtype": "float32"},
    )
    check_contract(exact, len(tokenizer))
    print("cuda float32 vs transformers:", check_parity(exact, *smollm2))
    exact.close()
    fast = build_policy("vllm", None, tokenizer, source=folder, k=5, entropy_top_k=20)
    fast.sample(MESSAGES, max_new_tokens=16)
    seconds = sorted(fast.sample(MESSAGES, max_new_tokens=16).seconds for _ in range(5))[2]
    print(f"cuda {fast.llm.llm_engine.model_config.dtype}: K=5 step {seconds:.3f} s")
    fast.close()
