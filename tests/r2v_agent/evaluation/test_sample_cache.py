"""The SLM sample cache: hits restore the sampling state, so cached and uncached evaluation
runs write identical records, and methods sharing a trajectory prefix share its samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from r2v_agent.errors import ConfigError  # noqa: E402
from r2v_agent.policy.build import build_policy  # noqa: E402
from r2v_agent.policy.cache import CachedPolicy, SampleCache, model_fingerprint  # noqa: E402
from r2v_agent.policy.models import build_tiny_random  # noqa: E402
from r2v_agent.policy.prompts import FORMATS, Turn  # noqa: E402

PROMPTS = [
    FORMATS["textworld"].messages([Turn(f"Room {i}. A door leads north.")]) for i in range(3)
]


def _texts(result) -> list[list[int]]:
    return [c.token_ids for c in result.candidates]


@pytest.mark.parametrize("backend", ["transformers", "llamacpp"])
def test_a_hit_gives_the_candidates_and_the_state_of_a_real_call(backend, tmp_path) -> None:
    if backend == "llamacpp":
        pytest.importorskip("llama_cpp")
    model, tokenizer = build_tiny_random(seed=0)
    plain = build_policy(backend, model, tokenizer, k=3, seed=0)
    cached = CachedPolicy(
        build_policy(backend, model, tokenizer, k=3, seed=0), SampleCache(tmp_path / "c.sqlite")
    )
    runs = []
    for policy in (plain, cached, cached):  # the second cached pass is all hits
        policy.reseed(5)
        runs.append([_texts(policy.sample(p, max_new_tokens=5)) for p in PROMPTS])
    assert runs[0] == runs[1] == runs[2]
    counters = cached.cache.counters()
    assert counters == {"hits": 3, "calls": 6, "entries": 3}
    # a different seed, k or token cap is another key
    cached.reseed(6)
    cached.sample(PROMPTS[0], max_new_tokens=5)
    cached.reseed(5)
    cached.sample(PROMPTS[0], max_new_tokens=4)
    assert cached.cache.counters()["hits"] == 3
    # and the weights are part of the key
    other, _ = build_tiny_random(seed=1)
    assert model_fingerprint(build_policy(backend, other, tokenizer, k=3)) != cached.fingerprint


def test_a_policy_without_a_sampling_state_is_refused(tmp_path) -> None:
    class Opaque:
        base_model = None
        source = None

    with pytest.raises(ConfigError):
        CachedPolicy(Opaque(), SampleCache(tmp_path / "c.sqlite"), fingerprint="x")


def test_cached_and_uncached_runs_write_identical_records(tiny_agent_dir, tmp_path) -> None:
    from r2v_agent.cli import main
    from r2v_agent.trajectories import read_episodes

    def run(out: Path, *extra: str) -> list[dict]:
        argv = ["eval", "--agent", str(tiny_agent_dir), "--env", "R2V/TextWorld-v0"]
        argv += ["--env-kwargs", '{"difficulty": 1}', "--tasks", "2", "--max-steps", "4"]
        argv += ["--perturbation", "flaky_tool(p=0.3)", "--seeds", "100"]
        argv += ["--methods", "slm,entropy@0.2,entropy@0.6", "--workers", "1"]
        assert main([*argv, "--out", str(out), *extra]) == 0
        return sorted(read_episodes(out), key=lambda r: r["episode_key"])

    cache = tmp_path / "samples.sqlite"
    plain = run(tmp_path / "plain.jsonl")
    cached = run(tmp_path / "cached.jsonl", "--sample-cache", str(cache))
    assert json.dumps(plain, sort_keys=True) == json.dumps(cached, sort_keys=True)
    counters = SampleCache(cache).counters()
    steps = sum(len(r["steps"]) for r in plain)
    assert counters["calls"] == steps
    # the three methods start every episode from the same prompt and seed: at least the first
    # step of the two later methods' episodes is served from the cache
    assert counters["hits"] >= 2 * 2
    # a rerun (a new results file) is served entirely from the cache, and writes the same
    again = run(tmp_path / "again.jsonl", "--sample-cache", str(cache))
    assert json.dumps(again, sort_keys=True) == json.dumps(plain, sort_keys=True)
    assert SampleCache(cache).counters()["hits"] == counters["hits"] + steps
