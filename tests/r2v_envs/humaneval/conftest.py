from __future__ import annotations

import shutil

import gymnasium as gym
import pytest

import r2v_envs  # noqa: F401

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install bubblewrap; .ci/run installs it)",
)


@pytest.fixture(scope="session")
def he_env():
    env = gym.make("R2V/HumanEvalPlus-v0", expert_hints=True)
    yield env
    env.close()
