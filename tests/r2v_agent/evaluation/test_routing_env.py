"""R2V/Routing-v0 passes Gymnasium's checker; PPO learns to escalate where the SLM fails."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import r2v_agent.evaluation.ppo  # noqa: F401  (registers R2V/Routing-v0)
from r2v_agent.evaluation.ppo import RoutingEnv
from r2v_agent.router.features import FEATURE_NAMES

ENTROPY = FEATURE_NAMES.index("chosen_entropy_mean")
SHARE = FEATURE_NAMES.index("escalation_share")


def synthetic_episodes(n: int = 60, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The SLM fails exactly on high-entropy steps (entropy > 1)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        length = int(rng.integers(3, 9))
        x = rng.normal(size=(length, len(FEATURE_NAMES))).astype(np.float32) * 0.1
        x[:, ENTROPY] = rng.uniform(0, 2, size=length)
        episodes.append((x, (x[:, ENTROPY] > 1.0).astype(np.float32)))
    return episodes


def test_check_env_and_registration() -> None:
    from gymnasium.utils.env_checker import check_env

    env = RoutingEnv(synthetic_episodes(5), cost=0.3)
    check_env(env, skip_render_check=True)
    made = gym.make("R2V/Routing-v0", episodes=synthetic_episodes(3))
    obs, info = made.reset(seed=0)
    assert obs.shape == (15,)


def test_rewards_and_escalation_share_by_hand() -> None:
    x = np.zeros((3, 15), dtype=np.float32)
    y = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    env = RoutingEnv([(x, y)], cost=0.25)
    obs, _ = env.reset(seed=0, options={"episode": 0})
    rewards, shares = [], [obs[SHARE]]
    for action in (1, 0, 0):
        obs, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        shares.append(obs[SHARE])
    assert rewards == [0.75, 1.0, 0.0]  # teacher: 1 - cost; SLM ok: 1; SLM fails: 0
    assert terminated
    assert shares[:3] == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="routing action"):
        env.reset(options={"episode": 0})
        env.step(2)


def test_ppo_router_escalates_on_failing_steps() -> None:
    pytest.importorskip("stable_baselines3")
    from r2v_agent.evaluation.ppo import train_ppo_router

    router = train_ppo_router(synthetic_episodes(), cost=0.3, timesteps=6000, seed=0)
    test = synthetic_episodes(20, seed=1)
    x = np.concatenate([e[0] for e in test])
    y = np.concatenate([e[1] for e in test])
    p = router(x)
    assert p[y == 1].mean() > p[y == 0].mean() + 0.3
    assert ((p > 0.5) == (y == 1)).mean() > 0.8
