from __future__ import annotations

import shutil

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import perturbations
import r2v_envs

STACK = "flaky_tool(p=0.3)+truncate(max_chars=300,mode=middle)+noisy(typo_rate=0.02)"


@pytest.mark.parametrize("env_id", r2v_envs.ENV_IDS)
def test_check_env_bare_and_perturbed(env_id: str) -> None:
    if env_id in r2v_envs.TERMINALBENCH_IDS and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (the local TerminalBench backend needs it)")
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    perturbed = perturbations.make_stack(gym.make(env_id), STACK, seed=3)
    check_env(perturbed, skip_render_check=True)
    perturbed.close()


def test_id_groups_cover_every_id() -> None:
    assert (
        set(r2v_envs.TEXTWORLD_IDS) | set(r2v_envs.HUMANEVAL_IDS) | set(r2v_envs.TERMINALBENCH_IDS)
    ) == set(r2v_envs.ENV_IDS)
    for env_id in r2v_envs.ENV_IDS:
        assert env_id in gym.registry
        assert isinstance(gym.registry[env_id].entry_point, str)
