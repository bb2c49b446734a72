"""fit_router: calibration on the held-out tasks, and its fallback when they are too few."""

from __future__ import annotations

import numpy as np
import pytest

from r2v_agent.config import RouterConfig
from r2v_agent.router.features import FEATURE_NAMES
from r2v_agent.training.fit_router import fit_router


def _episodes(n_tasks: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Steps whose first feature predicts the label (with noise), 2 perturbation seeds each."""
    rng = np.random.default_rng(seed)
    episodes, labels = [], []
    for task in range(n_tasks):
        for pseed in (0, 1):
            steps = []
            for _ in range(4):
                fail = rng.random() < 0.4
                features = {name: float(rng.normal()) for name in FEATURE_NAMES}
                features[FEATURE_NAMES[0]] = float(fail) + 0.3 * float(rng.normal())
                steps.append({"features": features})
                labels.append(float(fail))
            episodes.append(
                {
                    "episode_key": f"t{task}/s{pseed}",
                    "env_seed": task,
                    "perturbation_seed": pseed,
                    "steps": steps,
                }
            )
    return episodes, np.asarray(labels, dtype=np.float32)


def test_isotonic_on_few_calibration_steps_falls_back_to_temperature() -> None:
    episodes, labels = _episodes(10)  # 3 held-out tasks: 1 calibrates (8 steps)
    config = RouterConfig(calibration="isotonic", epochs=200, budget=0.4)
    _, report, held = fit_router(episodes, labels, config, seed=0)
    assert report["calibration_steps"] < config.min_isotonic_steps
    assert report["calibration"] == "temperature"
    assert report["calibration_configured"] == "isotonic"
    # Scores keep their ranking, so tau escalates some steps and separates the classes.
    assert 0.0 < report["test_escalation_share"] < 1.0
    assert len(np.unique(held["p"])) > 1
    assert report["test_auroc"] > 0.8


def test_isotonic_used_with_enough_calibration_steps() -> None:
    episodes, labels = _episodes(60)  # 18 held-out tasks: 9 calibrate (72 steps)
    config = RouterConfig(calibration="isotonic", epochs=200, budget=0.4)
    router, report, _ = fit_router(episodes, labels, config, seed=0)
    assert report["calibration_steps"] >= config.min_isotonic_steps
    assert report["calibration"] == "isotonic"
    assert router.iso_x is not None and len(router.iso_x) >= 2


def test_budget_threshold_escalates_tied_scores() -> None:
    from r2v_agent.training.fit_router import choose_threshold

    config = RouterConfig(target="budget", budget=0.4)
    groups = np.zeros(10)
    # 7 of 10 scores saturated at 1.0: the ties escalate together or not at all, and the
    # budget is a cap -- 0.7 would exceed 0.4, so none; a budget of 0.7 takes them all.
    p = np.array([0.1, 0.2, 0.3] + [1.0] * 7)
    tau = choose_threshold(p, np.ones(10), groups, config)
    assert (p > tau).mean() == 0.0
    tau = choose_threshold(p, np.ones(10), groups, RouterConfig(target="budget", budget=0.7))
    assert (p > tau).mean() == 0.7
    # The closest share would overshoot: 0.6 of distinct scores and a level of 0.3 above them.
    p = np.array([0.1] * 4 + [0.5] * 3 + [0.6, 0.7, 0.8])
    tau = choose_threshold(p, np.ones(10), groups, RouterConfig(target="budget", budget=0.5))
    assert (p > tau).mean() == 0.3  # not 0.6
    # Distinct scores: the share comes out at the budget.
    p = np.linspace(0.05, 0.95, 10)
    tau = choose_threshold(p, np.ones(10), groups, config)
    assert (p > tau).mean() == 0.4
    assert choose_threshold(p, np.ones(10), groups, RouterConfig(budget=0.0)) == 1.0


def test_sharp_temperature_keeps_the_ranking() -> None:
    import torch

    from r2v_agent.router.model import MLPRouter

    router = MLPRouter(hidden=4, seed=0)
    router.temperature = torch.tensor(0.01)
    x = np.random.default_rng(0).normal(size=(64, len(FEATURE_NAMES))).astype(np.float32)
    logits = router.logits(torch.tensor(x)).detach().numpy()
    p = router.p_fail(x)
    assert np.all(np.argsort(p[logits > 0]) == np.argsort(logits[logits > 0]))


def test_a_feature_constant_in_training_cannot_move_p_fail() -> None:
    """escalation_share is 0 in every SLM-only step; an escalation at run time must not swing
    the router (before the clamp, 1.0 reached the MLP ~1000 standard deviations out)."""
    episodes, labels = _episodes(12)
    share = FEATURE_NAMES.index("escalation_share")
    for episode in episodes:
        for step in episode["steps"]:
            step["features"]["escalation_share"] = 0.0
    router, report, _ = fit_router(episodes, labels, RouterConfig(epochs=200), seed=0)
    assert report["constant_features"] == ["escalation_share"]
    assert router.spec()["constant_features"] == ["escalation_share"]
    assert router.spec()["input_range"] == "clamped to the training range"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, len(FEATURE_NAMES))).astype(np.float32)
    x[:, share] = 0.0
    base = router.p_fail(x)
    for value in (0.25, 0.5, 1.0, -3.0):
        x[:, share] = value
        np.testing.assert_array_equal(router.p_fail(x), base)
    # A feature that varied in training still moves it.
    x[:, 0] += 3.0
    assert not np.allclose(router.p_fail(x), base)


def test_input_range_survives_save_and_load(tmp_path) -> None:
    from r2v_agent.router.model import MLPRouter

    episodes, labels = _episodes(12)
    router, _, _ = fit_router(episodes, labels, RouterConfig(epochs=50), seed=0)
    router.save(tmp_path / "router.safetensors")
    loaded = MLPRouter.load(tmp_path / "router.safetensors")
    x = np.full((3, len(FEATURE_NAMES)), 50.0, dtype=np.float32)  # far outside training
    np.testing.assert_array_equal(loaded.p_fail(x), router.p_fail(x))
    assert loaded.spec()["input_range"] == "clamped to the training range"


def test_one_label_is_reported(caplog) -> None:
    """A policy that fails every step leaves nothing to rank: said in the log and the report."""
    episodes, labels = _episodes(12)
    with caplog.at_level("WARNING", logger="r2v_agent.training.fit_router"):
        _, report, _ = fit_router(episodes, np.ones_like(labels), RouterConfig(epochs=20), seed=0)
    assert report["one_label"] and "cannot rank steps" in caplog.text
    _, report, _ = fit_router(episodes, labels, RouterConfig(epochs=20), seed=0)
    assert not report["one_label"]


def test_feature_sets_resolve_groups_and_removals() -> None:
    from r2v_agent.router.features import FEATURE_GROUPS, resolve_features

    assert resolve_features(None) == FEATURE_NAMES
    assert resolve_features(["verifier"]) == FEATURE_GROUPS["verifier"]
    no_verifier = resolve_features(["all", "-verifier"])
    assert len(no_verifier) == 11 and not set(no_verifier) & set(FEATURE_GROUPS["verifier"])
    assert resolve_features(["entropy", "step_frac"]) == (
        "chosen_entropy_mean",
        "chosen_entropy_max",
        "step_frac",
    )
    for bad in (["nope"], ["-all"], "entropy"):
        with pytest.raises(ValueError):
            resolve_features(bad)


def test_ablations_find_the_feature_that_carries_the_signal(tmp_path) -> None:
    """The label follows chosen_entropy_mean: variants reading it rank the held-out steps,
    variants without it cannot; a saved router keeps the features it reads."""
    from r2v_agent.router.model import MLPRouter
    from r2v_agent.training.router_ablation import run_ablations

    episodes, labels = _episodes(40)
    config = RouterConfig(calibration="temperature", epochs=200, budget=0.4)
    rows = {r["variant"]: r for r in run_ablations(episodes, labels, config, seed=0)}
    assert rows["all 15"]["test_auroc"] > 0.8 and rows["entropy only"]["test_auroc"] > 0.8
    assert rows["verifier only"]["test_auroc"] < 0.7
    assert rows["all - entropy"]["test_auroc"] < 0.7
    assert len(rows["all - verifier"]["features"]) == 11
    assert rows["all, no CVaR term"]["cvar_active"] is False  # the term is off: it cannot bind
    # the mask is saved and loaded with the router
    variant = RouterConfig(calibration="temperature", epochs=50, features=["entropy"])
    router, report, _ = fit_router(episodes, labels, variant, seed=0)
    router.save(tmp_path / "r.safetensors")
    loaded = MLPRouter.load(tmp_path / "r.safetensors")
    assert loaded.features == report["features"] == ["chosen_entropy_mean", "chosen_entropy_max"]
    x = np.random.default_rng(1).normal(size=(6, len(FEATURE_NAMES))).astype(np.float32)
    y = x.copy()
    y[:, 7:] += 5.0  # features it does not read change nothing
    np.testing.assert_allclose(loaded.p_fail(x), loaded.p_fail(y))


def test_teacher_acted_steps_of_mixed_trajectories_are_not_training_examples() -> None:
    episodes, labels = _episodes(20)
    mixed, mixed_labels, i = [], [], 0
    rng = np.random.default_rng(3)
    for episode in episodes:
        steps = []
        for step in episode["steps"]:
            steps.append({**step, "actor": "slm"})
            mixed_labels.append(labels[i])
            i += 1
            if rng.random() < 0.3:  # a teacher step with misleading features and label
                noise = {name: 50.0 for name in FEATURE_NAMES}
                steps.append({"features": noise, "actor": "teacher"})
                mixed_labels.append(1.0)
        mixed.append({**episode, "steps": steps})
    config = RouterConfig(calibration="temperature", epochs=100, budget=0.4)
    _, alone, _ = fit_router(episodes, labels, config, seed=0)
    _, with_teacher, _ = fit_router(mixed, np.asarray(mixed_labels, np.float32), config, seed=0)
    assert with_teacher["teacher_steps_left_out"] > 0 and alone["teacher_steps_left_out"] == 0
    for key in ("steps", "test_auroc", "test_brier", "threshold"):
        assert with_teacher[key] == alone[key], key


def test_residual_failure_by_hand() -> None:
    from r2v_agent.training.router_ablation import residual_failure

    p, y = np.array([0.9, 0.1, 0.5, 0.3]), np.array([1.0, 0.0, 1.0, 0.0])
    assert residual_failure(p, y, 0.0) == 0.5  # nothing escalated: every step's label
    assert residual_failure(p, y, 0.25) == 0.25  # 0.9 escalated: 0.5 fails, 1 of 4 steps
    assert residual_failure(p, y, 0.5) == 0.0  # 0.9 and 0.5: both failures go to the teacher
    assert residual_failure(p, y, 1.0) == 0.0  # all escalated: nothing left to fail
    with pytest.raises(ValueError, match="3 scores for 4 labels"):
        residual_failure(p[:3], y, 0.5)


def test_repeated_splits_pair_each_variant_with_all_15_on_the_same_split() -> None:
    from r2v_agent.training.router_ablation import (
        render_repeated_table,
        repeated_ablations,
        run_ablations,
    )

    episodes, labels = _episodes(30)
    config = RouterConfig(calibration="temperature", epochs=100, budget=0.4)
    variants = {"all 15": {}, "all - entropy": {"features": ["all", "-entropy"]}}
    rows = repeated_ablations(episodes, labels, config, seeds=[0, 1, 2], variants=variants)
    single = [run_ablations(episodes, labels, config, seed=s, variants=variants) for s in (0, 1, 2)]
    full, without = rows
    # each split's value is that split's single fit; the difference is paired by split
    np.testing.assert_allclose(full["values"]["test_auroc"], [r[0]["test_auroc"] for r in single])
    np.testing.assert_allclose(
        without["deltas"]["test_brier"],
        [r[1]["test_brier"] - r[0]["test_brier"] for r in single],
    )
    assert np.all(full["deltas"]["test_auroc"] == 0.0)
    assert full["test_failures"] == sum(r[0]["test_failures"] for r in single) > 0
    # the label follows the entropy feature: without it the AUROC drops on every split
    assert np.all(without["deltas"]["test_auroc"] < 0)
    table = render_repeated_table(rows)
    assert "| all - entropy | 13 |" in table and "| 3 of 3 |" in table
    assert "| all 15 | 15 |" in table and "| 0 of 3 |" in table
