from __future__ import annotations

import copy
import multiprocessing as mp
import subprocess
import sys

import pytest
from gymnasium.vector.utils import shared_memory as shm

import r2v_envs
from r2v_envs.core import TextSpace, fit_text
from r2v_envs.errors import InvalidActionError
from tests.conftest import CounterEnv


def test_text_space_accepts_any_string_up_to_its_length() -> None:
    space = TextSpace(10)
    assert space.contains("Hé! ☃\n\t{}")
    assert space.contains("")
    assert not space.contains("x" * 11)
    assert not space.contains(b"bytes")
    assert not space.contains(3)
    space.seed(0)
    assert all(space.contains(space.sample()) for _ in range(50))


def test_text_space_shared_memory_round_trips_unicode() -> None:
    space = TextSpace(32)
    memory = shm.create_shared_memory(space, n=3, ctx=mp.get_context())
    values = ["crème brûlée ☃", "", "x" * 32]
    for i, value in enumerate(values):
        shm.write_to_shared_memory(space, i, value, memory)
    view = shm.read_from_shared_memory(space, memory, n=3)
    assert view == tuple(values) and view[1:] == tuple(values[1:])
    # The view is live (AsyncVectorEnv reads the buffer once) and deep-copies to a tuple.
    shm.write_to_shared_memory(space, 1, "new", memory)
    assert view[1] == "new"
    assert copy.deepcopy(view) == (values[0], "new", values[2])
    assert type(copy.deepcopy(view)) is tuple


def test_fit_text_caps_and_marks() -> None:
    assert fit_text("short", 10) == "short"
    out = fit_text("y" * 100, 40)
    assert len(out) == 40 and out.endswith("truncated ...]")


def test_reward_is_score_change_and_step_limit_truncates() -> None:
    env = CounterEnv(target=5, max_episode_steps=4)
    obs, info = env.reset(seed=1)
    assert set(r2v_envs.INFO_KEYS) <= set(info)
    rewards = []
    for action in ["inc", "noop", "inc", "inc"]:
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
    assert rewards == [1.0, 0.0, 1.0, 1.0]
    assert info["score"] == 3.0 and not terminated and truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step("inc")


def test_terminated_on_win_with_success() -> None:
    env = CounterEnv(target=2)
    env.reset(seed=0)
    env.step("inc")
    _, reward, terminated, truncated, info = env.step("inc")
    assert terminated and not truncated and info["success"] and reward == 1.0


def test_bad_actions_give_error_observation_or_clear_exception() -> None:
    env = CounterEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="int"):
        env.step(7)  # type: ignore[arg-type]
    for bad in ["", "   ", "x" * 1_000_000]:
        obs, reward, terminated, _, info = env.step(bad)
        assert obs.startswith("Invalid action") and info["invalid_action"]
        assert reward == 0.0 and not terminated
    _, _, _, _, info = env.step("inc")
    assert info["score"] == 1.0  # the env still works


def test_import_is_light() -> None:
    code = (
        "import sys, r2v_envs, perturbations;"
        "heavy = [m for m in ('textworld', 'torch', 'docker', 'transformers') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
