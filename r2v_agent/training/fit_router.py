"""``r2v train router``: label the fixed policy's steps, fit Brier + lambda * CVaR, calibrate, pick tau.

1. The fixed SLM policy plays training-split tasks alone (no teacher) under every perturbation
   seed -- by default tasks it was not fine-tuned on (``router.fresh_tasks``) -- and each step's
   15 features are recorded (:func:`rollout`).
2. Each step is labelled with the policy's residual failure (:func:`step_labels`): ``progress``
   -- 1 when the step made no progress or ended the episode in failure (env ground truth; a
   step whose tool call failed is judged by the env's expert action instead);
   ``counterfactual`` -- 1 when, in a failed episode, the teacher acting at this step (and the SLM
   after it) turns the episode into a success (costly: one rollout per step).
3. The router MLP is trained on the training tasks with the mean Brier score plus lambda times
   CVaR_alpha of the per-seed mean Brier scores (the worst alpha share of perturbation seeds).
4. Held-out tasks are split in two: one half fits the calibration (temperature or isotonic) and
   tau (an LLM-call budget, or a bound on CVaR of per-seed residual failure); isotonic falls back
   to temperature scaling on too few calibration steps (``min_isotonic_steps``); the other half
   reports Brier, ECE, reliability bins, the base-rate Brier and the escalation share at tau.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from r2v_agent import metrics
from r2v_agent.config import PipelineConfig, RouterConfig
from r2v_agent.errors import StageError
from r2v_agent.router.calibration import fit_isotonic, fit_temperature
from r2v_agent.router.features import FEATURE_NAMES, resolve_features
from r2v_agent.router.model import MLPRouter
from r2v_agent.router.thresholds import score_levels, threshold_for_share
from r2v_agent.training import components
from r2v_agent.training.losses import cvar_of_groups
from r2v_agent.trajectories import TrajectoryWriter

__all__ = [
    "run",
    "counterfactual_runner",
    "parallel_counterfactual",
    "fixed_policy_agent",
    "fit_router",
    "split_tasks",
    "choose_threshold",
]

logger = logging.getLogger(__name__)


def slm_steps(episodes: list[dict[str, Any]]) -> np.ndarray:
    """Per step (in episode order): whether the SLM acted -- the steps a router learns from (a
    teacher-acted step of a mixed trajectory carries the teacher's outcome, not the SLM's)."""
    return np.asarray(
        [step.get("actor", "slm") != "teacher" for e in episodes for step in e["steps"]],
        dtype=bool,
    )


def _features(episodes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, seeds, tasks = [], [], []
    for episode in episodes:
        for step in episode["steps"]:
            if step["features"] is None:
                raise StageError(
                    f"router: episode {episode['episode_key']} has a step without features"
                )
            rows.append([step["features"][name] for name in FEATURE_NAMES])
            seeds.append(episode["perturbation_seed"] or 0)
            tasks.append(episode["env_seed"])
    return np.asarray(rows, dtype=np.float32), np.asarray(seeds), np.asarray(tasks)


def choose_threshold(
    p: np.ndarray, y: np.ndarray, groups: np.ndarray, config: RouterConfig
) -> float:
    """tau on held-out steps: escalate (p > tau) as many as ``budget`` allows (the largest share
    not above it), or the largest tau whose CVaR of per-seed residual failure (failing steps not
    escalated) stays within the bound."""
    if config.target == "budget":
        if config.budget <= 0:
            return 1.0
        # tau sits between levels of (near-)equal scores, so ties (a sharp calibration saturates
        # many at 1.0; a flat stretch of the MLP gives many steps one p_fail) escalate together.
        # The budget is a cap: the closest share overshot 0.4 by a whole level (52 %) once.
        return threshold_for_share(p, config.budget, at_most=True)
    best = 0.0
    # Each level's top: p <= tau keeps a whole level of near-equal scores with the SLM.
    for tau in sorted({level.high for level in score_levels(p)} | {0.0, 1.0}):
        residual = y * (p <= tau)
        per_seed = [residual[groups == g].mean() for g in np.unique(groups)]
        if metrics.cvar(per_seed, config.cvar_alpha) <= config.cvar_bound:
            best = max(best, float(tau))
    return best


def split_tasks(
    tasks: list[int], heldout_fraction: float, *, seed: int
) -> tuple[set[int], set[int]]:
    """The calibration and test tasks :func:`fit_router` holds out of ``tasks`` (the rest
    train): a seeded shuffle, so every fit with the same tasks and seed splits them alike."""
    unique_tasks = sorted(set(tasks))
    if len(unique_tasks) < 3:
        raise StageError(
            f"router: need at least 3 tasks to train and hold out, got {len(unique_tasks)}"
        )
    random.Random(seed).shuffle(unique_tasks)
    n_held = min(len(unique_tasks) - 1, max(2, round(heldout_fraction * len(unique_tasks))))
    return set(unique_tasks[: n_held // 2]), set(unique_tasks[n_held // 2 : n_held])


def fit_router(
    episodes: list[dict[str, Any]], labels: np.ndarray, config: RouterConfig, *, seed: int
) -> tuple[MLPRouter, dict[str, Any], dict[str, np.ndarray]]:
    """Train, calibrate and pick tau; return the router, its report and the held-out arrays."""
    import torch

    x, seeds, tasks = _features(episodes)
    if len(x) != len(labels):
        raise StageError(f"router: {len(x)} steps but {len(labels)} labels")
    slm = slm_steps(episodes)  # mixed trajectories: learn from the SLM's own steps only
    x, seeds, tasks, labels = x[slm], seeds[slm], tasks[slm], labels[slm]
    calib_tasks, test_tasks = split_tasks(tasks.tolist(), config.heldout_fraction, seed=seed)
    is_calib = np.isin(tasks, list(calib_tasks))
    is_test = np.isin(tasks, list(test_tasks))
    is_train = ~(is_calib | is_test)

    one_label = len(np.unique(labels[is_train])) < 2
    if one_label:
        logger.warning(
            "router: every training step has the label %d (failure rate %.2f): the router cannot "
            "rank steps, so its p_fail carries no information and which steps tau escalates is "
            "arbitrary",
            int(labels[is_train][0]),
            float(labels[is_train].mean()),
        )
    torch.manual_seed(seed)
    router = MLPRouter(hidden=config.hidden, seed=seed)
    router.use_features(resolve_features(config.features))
    xt = torch.tensor(x[is_train])
    yt = torch.tensor(labels[is_train])
    gt = torch.tensor(seeds[is_train])
    router.fit_input_range(xt)
    router.net.train()
    optimiser = torch.optim.Adam(
        router.net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    active = False
    history = []
    for epoch in tqdm(range(config.epochs), desc="router: train", unit="epoch"):
        p = torch.sigmoid(router.logits(xt))
        per_step = (p - yt) ** 2
        loss = per_step.mean()
        tail, active = cvar_of_groups(per_step, gt, config.cvar_alpha)
        if config.cvar_weight > 0:
            loss = loss + config.cvar_weight * tail
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if epoch % max(1, config.epochs // 10) == 0 or epoch == config.epochs - 1:
            history.append(
                {
                    "epoch": epoch,
                    "brier": float(per_step.mean().detach()),
                    "cvar": float(tail.detach()),
                }
            )
    router.net.eval()

    def raw(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            z = router.logits(torch.tensor(x[mask])).numpy()
        return z, 1.0 / (1.0 + np.exp(-z))

    z_cal, p_cal = raw(is_calib)
    z_test, p_test_raw = raw(is_test)
    calibration = config.calibration
    y_cal = labels[is_calib]
    if calibration == "isotonic" and (
        len(y_cal) < config.min_isotonic_steps or len(np.unique(y_cal)) < 2
    ):
        logger.warning(
            "router: %d calibration steps (%d failing): too few, or one label only, for "
            "isotonic calibration; using temperature scaling",
            len(y_cal),
            int(y_cal.sum()),
        )
        calibration = "temperature"
    if calibration == "temperature":
        router.temperature = torch.tensor(fit_temperature(z_cal, y_cal))
    else:
        kx, ky = fit_isotonic(p_cal, y_cal)
        router.iso_x, router.iso_y = (
            torch.tensor(kx, dtype=torch.float32),
            torch.tensor(ky, dtype=torch.float32),
        )
    p_cal_cal = router.p_fail(x[is_calib])
    p_test = router.p_fail(x[is_test])
    tau = choose_threshold(p_cal_cal, labels[is_calib], seeds[is_calib], config)
    y_test = labels[is_test]
    base_rate = float(labels[is_train].mean())
    escalate = p_test > tau
    residual = y_test * (~escalate)
    # The most calibration steps one p_fail holds: a threshold escalates all of them or none,
    # so a big level makes the reachable LLM shares jump (shown with the threshold).
    largest = max(score_levels(p_cal_cal), key=lambda level: level.count)
    per_seed = [float(residual[seeds[is_test] == g].mean()) for g in np.unique(seeds[is_test])]
    report: dict[str, Any] = {
        "steps": int(len(x)),
        "teacher_steps_left_out": int((~slm).sum()),
        "train_steps": int(is_train.sum()),
        "calibration_steps": int(is_calib.sum()),
        "test_steps": int(is_test.sum()),
        "label": config.label,
        "failure_rate_train": base_rate,
        "failure_rate_test": float(y_test.mean()),
        "one_label": one_label,
        "features": router.features,
        "cvar_weight": config.cvar_weight,
        "cvar_alpha": config.cvar_alpha,
        "cvar_active": bool(active and config.cvar_weight > 0),
        "perturbation_seeds": int(len(np.unique(seeds))),
        "input_range": "clamped to the training range",
        "constant_features": router.constant_features,
        "training_curve": history,
        "calibration": calibration,
        "calibration_configured": config.calibration,
        "temperature": float(router.temperature),
        "test_brier_uncalibrated": metrics.brier(p_test_raw, y_test),
        "test_brier": metrics.brier(p_test, y_test),
        "test_brier_base_rate": metrics.brier(np.full_like(y_test, base_rate), y_test),
        "test_ece_uncalibrated": metrics.ece(p_test_raw, y_test),
        "test_ece": metrics.ece(p_test, y_test),
        "test_auroc": metrics.auroc(p_test, y_test),
        "reliability_bins": [b.__dict__ for b in metrics.reliability_bins(p_test, y_test)],
        "target": config.target,
        "budget": config.budget,
        "threshold": tau,
        "calibration_escalation_share": float((p_cal_cal > tau).mean()),
        "calibration_largest_level": {
            "p_fail": [largest.low, largest.high],
            "share": largest.count / len(p_cal_cal),
        },
        "test_escalation_share": float(escalate.mean()),
        "test_residual_failure": float(residual.mean()),
        "test_residual_failure_cvar": metrics.cvar(per_seed, config.cvar_alpha)
        if per_seed
        else math.nan,
    }
    return router, report, {"p": p_test, "y": y_test}


def counterfactual_runner(
    config: PipelineConfig, agent: Any
) -> Callable[[dict[str, Any], int], bool]:
    """Replay an episode to step t, let the teacher act there, then the SLM to the end."""
    from r2v_agent.rollout import make_env

    envs: dict[Any, Any] = {}  # one env per perturbation seed: starting a game is the slow part

    def run(episode: dict[str, Any], t: int) -> bool:
        z = episode["perturbation_seed"]
        if z not in envs:
            envs[z] = make_env(
                config.env.id,
                kwargs=config.env.kwargs,
                split="train",
                max_steps=config.env.max_steps,
                perturbation=episode["perturbation"],
                perturbation_seed=z,
            )
        env = envs[z]
        observation, info = env.reset(seed=episode["env_seed"])
        agent.reset(seed=config.seed)
        for step in episode["steps"][:t]:
            agent.record(observation, step["action"])
            observation, _, terminated, truncated, info = env.step(step["action"])
            if terminated or truncated:
                return False
        teacher_action = info.get("expert_action") or episode["steps"][t]["action"]
        agent.record(observation, teacher_action)
        observation, _, terminated, truncated, info = env.step(teacher_action)
        while not (terminated or truncated):
            observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
        return bool(info.get("success"))

    return run


def fixed_policy_agent(config: PipelineConfig) -> Any:
    """The DPO stage's policy alone (never escalating) on ``router.backend``, as the router
    stage plays and labels with it; label workers build the same agent, so their labels match
    the stage's own."""
    from r2v_agent.router.baselines import NeverEscalate

    policy_dir = str(config.run_dir / "dpo" / "policy")
    return components.agent(
        config, policy_dir, NeverEscalate(), keep_base=True, backend=config.router.backend
    )


# A label worker's rollout function, built once per process (loading the policy is slow).
_WORKER_RUNNER: Callable[[dict[str, Any], int], bool] | None = None


def _label_worker_init(config: PipelineConfig, threads: int) -> None:
    import torch

    global _WORKER_RUNNER
    torch.set_num_threads(threads)
    _WORKER_RUNNER = counterfactual_runner(config, fixed_policy_agent(config))


def _label_episode(episode: dict[str, Any]) -> tuple[str, list[bool]]:
    if _WORKER_RUNNER is None:
        raise StageError("router: a label worker ran before its initialiser")
    return episode["episode_key"], [
        _WORKER_RUNNER(episode, t) for t in range(len(episode["steps"]))
    ]


def parallel_counterfactual(
    config: PipelineConfig, episodes: list[dict[str, Any]], workers: int
) -> Callable[[dict[str, Any], int], bool]:
    """:func:`counterfactual_runner`'s outcomes for every step of every failed episode, played
    by ``workers`` processes that each load the router stage's policy; returns a lookup with the
    runner's signature. Each rollout reseeds the policy and the env, so an outcome does not
    depend on the process that plays it or on what that process played before."""
    import os

    from r2v_agent.workers import map_unordered

    failed = [e for e in episodes if not e["success"]]
    threads = max(1, (os.cpu_count() or 1) // workers)
    outcomes: dict[str, list[bool]] = {}
    results = map_unordered(
        _label_episode,
        failed,
        workers,
        initializer=_label_worker_init,
        initargs=(config, threads),
    )
    desc = f"router: counterfactual labels ({workers} workers)"
    for key, labels in tqdm(results, total=len(failed), desc=desc, unit="episode"):
        outcomes[key] = labels
    return lambda episode, t: outcomes[episode["episode_key"]][t]


def run(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.groundtruth import LABELS_FILE, save_step_labels, step_labels
    from r2v_agent.router.baselines import NeverEscalate
    from r2v_agent.teacher.oracle import OracleTeacher
    from r2v_agent.training.fit_router import fit_router

    agent = fixed_policy_agent(config)
    if config.router.fresh_tasks:  # unseen by BC and DPO: the failures deployment will meet
        first = config.env.train_tasks
        tasks = list(range(first, first + (config.router.tasks or config.env.train_tasks)))
    else:
        n = min(config.router.tasks or config.env.train_tasks, config.env.train_tasks)
        tasks = list(range(n))

    def play(name: str, desc: str) -> list[dict[str, Any]]:
        return components.play_training_games(config, agent, tasks, agent_name=name, desc=desc)

    episodes = play("slm", "router: SLM rollouts")
    rate = config.router.mixed_escalation_rate
    if rate > 0:  # mixed trajectories: the same tasks with seeded random escalations
        from r2v_agent.router.baselines import RandomRouter

        agent.router, agent.threshold = RandomRouter(rate, config.seed), 0.5
        agent.teacher = OracleTeacher()
        episodes += play("mixed", f"router: mixed rollouts ({rate:.0%} random escalations)")
        agent.router, agent.teacher = NeverEscalate(), None
    with TrajectoryWriter(out / "rollouts.jsonl") as writer:
        for episode in episodes:
            writer.write(episode)
    counterfactual = None
    if config.router.label == "counterfactual":
        workers = config.router.label_workers
        counterfactual = (
            counterfactual_runner(config, agent)
            if workers == 1
            else parallel_counterfactual(config, episodes, workers)
        )
    pooled = counterfactual is not None and config.router.label_workers > 1
    labels = step_labels(episodes, config.router.label, counterfactual, progress=not pooled)
    save_step_labels(out / LABELS_FILE, episodes, labels, config.router.label)
    fitted_on, fitted_labels = episodes, labels
    if config.router.feature_draws > 1:  # the same states sampled again: see feature_draws
        from r2v_agent.training.feature_draws import (
            DRAWS_FILE,
            extra_draws,
            save_draws,
            with_draws,
        )

        draws = extra_draws(config, agent, episodes, config.router.feature_draws - 1)
        save_draws(out / DRAWS_FILE, draws)
        fitted_on, fitted_labels = with_draws(episodes, labels, draws)
    router, report, heldout = fit_router(fitted_on, fitted_labels, config.router, seed=config.seed)
    agent.router = router
    agent.threshold = report["threshold"]
    agent.teacher = OracleTeacher()
    agent.save_pretrained(out / "agent")
    slm_only = [e for e in episodes if e["agent"] == "slm"]
    report["slm_rollout_success"] = sum(e["success"] for e in slm_only) / len(slm_only)
    report["mixed_escalation_rate"] = rate
    report["mixed_episodes"] = len(episodes) - len(slm_only)
    report["feature_draws"] = config.router.feature_draws
    import numpy as np

    np.savez(out / "heldout_predictions.npz", p=heldout["p"], y=heldout["y"])
    return report
