"""``R2V/Routing-v0``: the routing decision as an MDP, built from logged SLM rollouts, and the
PPO router baseline learned on it with stable-baselines3.

Each episode replays one logged SLM-only episode (``rollouts.jsonl`` of the router stage). At
step t the observation is the logged feature vector f_t (with the escalation-share feature
recomputed from the agent's own choices so far), the action is 0 = let the SLM act or
1 = call the teacher. The reward is the step's success minus the call's cost:

* SLM: 1 if the logged SLM step was right (its router-stage label is 0 -- the stage's saved
  ``labels.json``, counterfactual ones included; else the ``progress`` rule: progress, or the
  expert's move when the tool failed), else 0;
* teacher: 1 (the counterfactual teacher step is the expert's action, which makes progress),
  minus ``cost`` (lambda, in units of one step's success).

So an episode's return is its share of successful steps minus lambda times its LLM calls: PPO
must learn from the features alone where the SLM fails often enough to pay for the teacher.
The logged trajectory does not branch on the choice (the counterfactual is one step deep), the
same simplification as the step-level labels of the router stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register, registry

from r2v_agent.router.baselines import Router
from r2v_agent.router.features import FEATURE_NAMES, N_FEATURES

__all__ = ["RoutingEnv", "PPORouter", "train_ppo_router", "load_routing_episodes"]

_SHARE = FEATURE_NAMES.index("escalation_share")


def load_routing_episodes(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features (T, 15), SLM-failure labels (T,)) per logged episode. The labels are the router
    stage's own (``labels.json`` beside the log, e.g. counterfactual ones) when it wrote them,
    else computed as in its ``progress`` mode."""
    from r2v_agent.groundtruth import LABELS_FILE, load_step_labels, step_labels
    from r2v_agent.trajectories import read_episodes

    saved: dict[str, list[int]] = {}
    if (Path(path).parent / LABELS_FILE).is_file():
        _, saved = load_step_labels(Path(path).parent / LABELS_FILE)
    episodes = []
    for record in read_episodes(path):
        steps = record["steps"]
        if not steps or any(s["features"] is None for s in steps):
            continue
        x = np.asarray([[s["features"][n] for n in FEATURE_NAMES] for s in steps], dtype=np.float32)
        labels = saved.get(record["episode_key"])
        if labels is None or len(labels) != len(steps):
            y = step_labels([record], "progress")
        else:
            y = np.asarray(labels, dtype=np.float32)
        episodes.append((x, y))
    if not episodes:
        raise ValueError(f"{path}: no logged episodes with features")
    return episodes


class RoutingEnv(gym.Env[np.ndarray, np.int64]):
    """See the module docstring. ``episodes``: a list of (features, labels), or a path to a
    rollouts JSONL file."""

    metadata = {"render_modes": []}

    def __init__(self, episodes: Any, cost: float = 0.3) -> None:
        self.episodes = (
            load_routing_episodes(episodes) if isinstance(episodes, (str, Path)) else list(episodes)
        )
        self.cost = float(cost)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(N_FEATURES,), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(2)
        self._x = self._y = np.zeros((0,))
        self._t = 0
        self._escalations = 0

    def _obs(self) -> np.ndarray:
        obs = self._x[self._t].copy()
        obs[_SHARE] = self._escalations / self._t if self._t else 0.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        index = (
            int(options["episode"])
            if options and "episode" in options
            else int(self.np_random.integers(len(self.episodes)))
        )
        self._x, self._y = self.episodes[index]
        self._t = 0
        self._escalations = 0
        return self._obs(), {"episode": index}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"routing action must be 0 (SLM) or 1 (teacher), got {action!r}")
        teacher = int(action) == 1
        failed = bool(self._y[self._t] > 0.5)
        reward = (1.0 - self.cost) if teacher else (0.0 if failed else 1.0)
        self._escalations += teacher
        self._t += 1
        terminated = self._t >= len(self._y)
        obs = self._obs() if not terminated else np.zeros(N_FEATURES, dtype=np.float32)
        return obs, reward, terminated, False, {"slm_failed": failed, "escalated": teacher}


class PPORouter(Router):
    """A stable-baselines3 PPO policy as a router: p_fail = its probability of calling the
    teacher (so tau = 0.5 follows its greedy choice)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        import torch

        obs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        with torch.no_grad():
            dist = self.model.policy.get_distribution(obs)
            return dist.distribution.probs[:, 1].numpy().astype(np.float32)

    def save(self, path: str | Path) -> None:
        self.model.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> PPORouter:
        from stable_baselines3 import PPO

        return cls(PPO.load(str(path), device="cpu"))

    def spec(self) -> dict[str, Any]:
        return {"type": "PPORouter"}


def train_ppo_router(
    episodes: Any,
    *,
    cost: float = 0.3,
    timesteps: int = 20_000,
    gamma: float = 0.5,
    seed: int = 0,
) -> PPORouter:
    """Train PPO (SB3's MLP policy, discount ``gamma``) on :class:`RoutingEnv`."""
    from stable_baselines3 import PPO

    env = RoutingEnv(episodes, cost=cost)
    # The logged trajectory does not branch on the choice, so little credit flows to later
    # steps (only through the escalation-share feature): a short horizon learns much faster.
    model = PPO(
        "MlpPolicy",
        env,
        seed=seed,
        n_steps=512,
        batch_size=128,
        gamma=gamma,
        learning_rate=1e-3,
        verbose=0,
        device="cpu",
    )
    model.learn(total_timesteps=timesteps, progress_bar=False)
    return PPORouter(model)


# Registered when evaluation uses the PPO baseline (importing this module), not on every
# ``import r2v_agent``; the entry point is a string, so registering imports nothing heavy.
if "R2V/Routing-v0" not in registry:
    register(id="R2V/Routing-v0", entry_point="r2v_agent.evaluation.ppo:RoutingEnv")
