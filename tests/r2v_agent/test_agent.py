"""RoutedAgent with the tiny random model in plain Gymnasium loops on every env."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import pytest

import perturbations
import r2v_envs
from r2v_agent import RoutedAgent
from r2v_agent.errors import ConfigError
from r2v_agent.router.features import FEATURE_NAMES
from r2v_agent.teacher import OracleTeacher

SPEC = "flaky_tool(p=0.3)+truncate(max_chars=300,mode=middle)"


def _env_ids() -> list[str]:
    ids = list(r2v_envs.TEXTWORLD_IDS[:2]) + ["R2V/HumanEvalPlus-v0"]
    if shutil.which("bwrap"):
        ids.append("R2V/TerminalBench-v0")
    return ids


@pytest.fixture(scope="module")
def agent() -> RoutedAgent:
    return RoutedAgent.from_pretrained("tiny-random", teacher=OracleTeacher(), k=3)


def _episode(agent: RoutedAgent, env: gym.Env, seed: int, max_steps: int = 4) -> list[dict]:
    obs, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    decisions = []
    for _ in range(max_steps):
        action = agent.act(obs, info)
        decision = agent.decision_dict()
        decisions.append(decision)
        assert decision["action"] == action
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return decisions


@pytest.mark.parametrize("env_id", _env_ids())
@pytest.mark.parametrize("perturbed", [False, True])
def test_decisions_are_complete_and_tau_moves_escalation(
    agent, env_id: str, perturbed: bool
) -> None:
    env = gym.make(env_id, expert_hints=True, max_episode_steps=6)
    if perturbed:
        env = perturbations.make_stack(env, SPEC, seed=1)
    try:
        for tau, expected_actor in ((0.0, "teacher"), (1.0, "slm")):
            agent.threshold = tau
            for decision in _episode(agent, env, seed=3):
                assert len(decision["candidates"]) == 3
                assert set(decision["features"]) == set(FEATURE_NAMES)
                assert len(decision["verifier_scores"]) == 3
                assert all(0.0 <= s <= 1.0 for s in decision["verifier_scores"])
                assert 0.0 < decision["p_fail"] < 1.0 and decision["threshold"] == tau
                for cand in decision["candidates"]:
                    assert len(cand["token_logprobs"]) == len(cand["token_entropies"])
                if not decision["teacher_fallback"]:
                    assert decision["actor"] == expected_actor
                if decision["actor"] == "teacher":
                    assert decision["cost"]["calls"] == 1
    finally:
        env.close()


def test_stats_track_the_llm_share() -> None:
    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    env = gym.make("R2V/TextWorld-TreasureHunter-v0", expert_hints=True)
    agent.threshold = 0.0
    first = len(_episode(agent, env, seed=0, max_steps=3))
    agent.threshold = 1.0
    second = len(_episode(agent, env, seed=1, max_steps=3))
    assert agent.stats.steps == first + second
    assert agent.stats.escalations == first  # every step of the first episode, none after
    assert agent.stats.llm_share == pytest.approx(first / (first + second))
    assert agent.stats.cost.calls == first


def test_save_and_load_give_identical_decisions(tmp_path: Path) -> None:
    env = gym.make("R2V/TextWorld-v0", expert_hints=True)
    original = RoutedAgent.from_pretrained("tiny-random", k=3, threshold=0.45)
    before = _episode(original, env, seed=5)
    original.save_pretrained(tmp_path / "agent")
    assert (tmp_path / "agent" / "config.json").is_file()
    assert (tmp_path / "agent" / "router.safetensors").is_file()
    loaded = RoutedAgent.from_pretrained(tmp_path / "agent")
    assert loaded.threshold == 0.45 and isinstance(loaded.teacher, OracleTeacher)
    after = _episode(loaded, env, seed=5)
    for a, b in zip(before, after, strict=True):
        a.pop("slm_seconds"), b.pop("slm_seconds")
    assert before == after


def test_bad_names_and_thresholds_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        RoutedAgent.from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError, match="threshold"):
        RoutedAgent.from_pretrained("tiny-random", threshold=1.5)
