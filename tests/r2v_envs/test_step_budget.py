"""One step budget: the limit the user sets, however it is set, counts every ``env.step`` call.

Before the fix, ``gym.make(id, max_episode_steps=N)`` put Gymnasium's ``TimeLimit(N)`` around the
env while ``flaky_tool`` spent a second counter inside it: with ``N = 3`` and every call failing,
an episode ran to the env's own default (50 steps on TextWorld), and a limit above that default
never raised it.
"""

from __future__ import annotations

import shutil

import gymnasium as gym
import pytest

import perturbations
import r2v_envs
from r2v_agent.rollout import make_env

# A cheap action that never ends an episode, per family.
_IDLE = {"TextWorld": "look", "HumanEval": "test", "TerminalBench": "echo idle"}


def _idle_action(env_id: str) -> str:
    return next(a for family, a in _IDLE.items() if family in env_id)


def _skip_without_sandbox(env_id: str) -> None:
    if env_id in r2v_envs.TERMINALBENCH_IDS and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (the local TerminalBench backend needs it)")


def _steps_until_end(env: gym.Env[str, str], action: str, cap: int = 200) -> tuple[int, dict]:
    env.reset(seed=0)
    for n in range(1, cap + 1):
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            assert truncated and not terminated
            return n, info
    raise AssertionError(f"the episode did not end within {cap} steps")


@pytest.mark.parametrize("env_id", r2v_envs.ENV_IDS)
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_gym_make_limit_counts_flaky_failures(env_id: str, p: float) -> None:
    _skip_without_sandbox(env_id)
    env = perturbations.make_stack(
        gym.make(env_id, max_episode_steps=3), f"flaky_tool(p={p})+truncate(max_chars=500)", seed=1
    )
    try:
        steps, info = _steps_until_end(env, _idle_action(env_id))
    finally:
        env.close()
    assert steps == 3
    assert info["elapsed_steps"] == 3 and info["max_episode_steps"] == 3


@pytest.mark.parametrize("env_id", r2v_envs.ENV_IDS)
def test_gym_make_limit_above_the_default_raises_it(env_id: str) -> None:
    _skip_without_sandbox(env_id)
    env = gym.make(env_id)
    default = env.unwrapped.max_episode_steps
    env.close()
    env = gym.make(env_id, max_episode_steps=default + 2)
    try:
        steps, _ = _steps_until_end(env, _idle_action(env_id))
    finally:
        env.close()
    assert steps == default + 2


def test_env_kwarg_limit_counts_flaky_failures() -> None:
    from r2v_envs.humaneval.env import HumanEvalEnv

    env = perturbations.make_stack(HumanEvalEnv(max_episode_steps=4), "flaky_tool(p=1.0)", seed=0)
    steps, _ = _steps_until_end(env, "test")
    assert steps == 4


def test_config_limit_counts_flaky_failures() -> None:
    """The pipeline's and run.py's ``make_env`` (a config's ``env.max_steps``)."""
    env = make_env(
        "R2V/TextWorld-v0",
        kwargs={"difficulty": 1},
        max_steps=5,
        perturbation="flaky_tool(p=0.6)",
        perturbation_seed=7,
    )
    steps, _ = _steps_until_end(env, "look")
    env.close()
    assert steps == 5


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_terminalbench_grades_when_a_flaky_call_spends_the_last_step() -> None:
    """The expert's solution, then a failed call at the limit: the episode is still graded."""
    env = gym.make("R2V/TerminalBench-v0", expert_hints=True, max_episode_steps=40)
    _, info = env.reset(seed=0)
    plan = []
    while info["expert_action"] != "submit":
        plan.append(info["expert_action"])
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        assert not (terminated or truncated)
    env.close()
    limit = len(plan) + 1
    env = perturbations.make_stack(
        gym.make("R2V/TerminalBench-v0", max_episode_steps=limit), "flaky_tool(p=1.0)", seed=0
    )
    inner = env.unwrapped
    env.reset(seed=0)
    for action in plan:  # play the plan beneath the flaky layer, then fail the last call
        inner.step(action)
    _, reward, terminated, truncated, info = env.step("submit")
    env.close()
    assert truncated and not terminated and info["tool_error"]
    assert info["success"] and reward == 1.0
