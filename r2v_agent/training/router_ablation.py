"""What the router's 15 features buy: the same MLP, loss, calibration and tau rule trained on
feature subsets, and with and without the CVaR term, on the router stage's own rollouts.

Each variant is :func:`~r2v_agent.training.fit_router.fit_router` with one field of the
:class:`~r2v_agent.config.RouterConfig` changed, on the same steps, labels, seed and
train / calibration / test split (by task), so the held-out numbers differ only by the variant.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent import metrics
from r2v_agent.config import RouterConfig
from r2v_agent.groundtruth import LABELS_FILE, load_step_labels
from r2v_agent.training.fit_router import fit_router
from r2v_agent.trajectories import read_episodes

__all__ = [
    "FRONTIER_SHARES",
    "residual_failure",
    "ABLATIONS",
    "ROLLOUTS",
    "run_ablations",
    "REPEATED",
    "repeated_ablations",
    "render_repeated_table",
    "draws_comparison",
    "render_draws_comparison",
    "load_router_stage",
    "render_table",
    "save_variant_agent",
    "copy_agent",
]

#: name -> the RouterConfig fields it changes. ``all`` is the configured router itself.
ABLATIONS: dict[str, dict[str, Any]] = {
    "all 15": {},
    "entropy only": {"features": ["entropy"]},
    "verifier only": {"features": ["verifier"]},
    "all - verifier": {"features": ["all", "-verifier"]},
    "all - entropy": {"features": ["all", "-entropy"]},
    "all - step position": {"features": ["all", "-step_position"]},
    "all, no CVaR term": {"cvar_weight": 0.0},
}

#: The report fields a table shows, with their column names.
COLUMNS = {
    "test_auroc": "AUROC",
    "test_brier": "Brier",
    "test_brier_base_rate": "Brier (base rate)",
    "test_ece": "ECE",
    "test_escalation_share": "escalated",
    "test_residual_failure": "residual failure",
    "test_residual_failure_cvar": "residual failure CVaR",
    "cvar_active": "CVaR binds",
}


#: Escalation shares of the held-out steps at which the step-level frontier is read.
FRONTIER_SHARES = (0.2, 0.4, 0.6)


def residual_failure(p_fail: np.ndarray, labels: np.ndarray, share: float) -> float:
    """The step-level frontier: the share of all steps that fail with the SLM acting when the
    router escalates the ``share`` of steps it scores riskiest (ties broken by step order) --
    the fit report's ``test_residual_failure``, at a chosen share instead of tau's."""
    p = np.asarray(p_fail, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.size == 0 or p.size != y.size:
        raise ValueError(f"{p.size} scores for {y.size} labels")
    kept = np.argsort(-p, kind="stable")[int(round(share * p.size)) :]
    return float(y[kept].sum() / p.size)


def load_router_stage(
    run_dir: str | Path, *, draws: list[Any] | None = None, same_action: bool = True
) -> tuple[list[dict[str, Any]], np.ndarray, str]:
    """The router stage's rollouts and step labels (in step order) from a pipeline run, with
    the stage's extra feature draws (``router.feature_draws``) as further copies, as the stage
    fitted them; ``draws`` replaces the stage's (``[]``: the recorded draw only).
    ``same_action``: see :func:`~r2v_agent.training.feature_draws.with_draws`."""
    from r2v_agent.training.feature_draws import DRAWS_FILE, load_draws, with_draws

    stage = Path(run_dir) / "router"
    episodes = list(read_episodes(stage / "rollouts.jsonl"))
    mode, per_episode = load_step_labels(stage / LABELS_FILE)
    labels = np.asarray(
        [v for e in episodes for v in per_episode[e["episode_key"]]], dtype=np.float32
    )
    episodes, labels = with_draws(
        episodes,
        labels,
        load_draws(stage / DRAWS_FILE) if draws is None else draws,
        same_action=same_action,
    )
    return episodes, labels, mode


def run_ablations(
    episodes: list[dict[str, Any]],
    labels: np.ndarray,
    config: RouterConfig,
    *,
    seed: int = 0,
    variants: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per variant: its name, the features it read, and the held-out report fields."""
    rows = []
    quiet = logging.getLogger("r2v_agent.training.fit_router")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the same warnings once per variant say nothing new
    try:
        for name, changes in (variants or ABLATIONS).items():
            variant = dataclasses.replace(config, **changes)
            _, report, heldout = fit_router(episodes, labels, variant, seed=seed)
            frontier = {
                f"residual@{share:g}": residual_failure(heldout["p"], heldout["y"], share)
                for share in FRONTIER_SHARES
            }
            rows.append(
                {"variant": name, "features": report["features"]}
                | {key: report[key] for key in COLUMNS}
                | frontier
                | {"test_failures": int(heldout["y"].sum())}
            )
    finally:
        quiet.setLevel(level)
    return rows


#: The held-out figures the repeated-split table reads (AUROC: higher is better; the rest lower).
REPEATED = {
    "test_auroc": "AUROC",
    "test_brier": "Brier",
    "residual@0.2": "residual failure, 20% escalated",
    "residual@0.4": "residual failure, 40% escalated",
}


def repeated_ablations(
    episodes: list[dict[str, Any]],
    labels: np.ndarray,
    config: RouterConfig,
    *,
    seeds: list[int],
    variants: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """:func:`run_ablations` once per seed -- a seed draws the train / calibration / test task
    split and the MLP's start -- so a few failing held-out steps of one split do not decide the
    ranking. One row per variant: for each :data:`REPEATED` figure its per-split values
    (``values``) and their differences from the first variant's on the same split (``deltas``,
    paired), the base rate's Brier per split, and the held-out failing steps summed over the
    splits. An AUROC is undefined on a split whose test steps share one label; such a split
    counts only for the other figures."""
    per_seed = [run_ablations(episodes, labels, config, seed=s, variants=variants) for s in seeds]
    reference = [split[0] for split in per_seed]
    rows = []
    for i, first in enumerate(per_seed[0]):
        mine = [split[i] for split in per_seed]
        rows.append(
            {
                "variant": first["variant"],
                "features": first["features"],
                "test_failures": sum(r["test_failures"] for r in mine),
                "base_rate_brier": np.array([r["test_brier_base_rate"] for r in mine]),
                "values": {k: np.array([r[k] for r in mine], dtype=float) for k in REPEATED},
                "deltas": {
                    k: np.array([r[k] - b[k] for r, b in zip(mine, reference, strict=True)])
                    for k in REPEATED
                },
            }
        )
    return rows


def draws_comparison(
    episodes: list[dict[str, Any]],
    labels: np.ndarray,
    draws: list[Any],
    config: RouterConfig,
    *,
    seeds: list[int],
    same_action: bool = True,
) -> dict[str, np.ndarray]:
    """Fitted on the recorded draw vs on it and ``draws`` (``same_action``: as in
    :func:`~r2v_agent.training.feature_draws.with_draws`), scored alike: per seed (a task
    split and the MLP's start), both routers' AUROC and Brier, and the entropy feature's AUROC,
    on the held-out test tasks' steps *as the extra draws sampled them* where a draw chose the
    logged action (so the step's label is its own; features neither router saw), and the share
    of those steps each one's tau escalates. ``episodes``/``labels``: the recorded draw only.
    Arrays are per seed."""
    from r2v_agent.router.features import FEATURE_NAMES
    from r2v_agent.training.feature_draws import with_draws
    from r2v_agent.training.fit_router import slm_steps, split_tasks

    both, both_labels = with_draws(episodes, labels, draws, same_action=same_action)
    labelled, labelled_labels = with_draws(episodes, labels, draws)
    fresh = labelled[len(episodes) :]
    fresh_labels = labelled_labels[len(labels) :]
    x = np.asarray(
        [[s["features"][n] for n in FEATURE_NAMES] for e in fresh for s in e["steps"]],
        dtype=np.float32,
    )
    tasks = np.asarray([e["env_seed"] for e in fresh for _ in e["steps"]])
    acted = slm_steps(fresh)
    recorded_tasks = np.asarray([e["env_seed"] for e in episodes for _ in e["steps"]])
    played = recorded_tasks[slm_steps(episodes)].tolist()
    out: dict[str, list[float]] = {}
    for seed in seeds:
        one, one_report, _ = fit_router(episodes, labels, config, seed=seed)
        many, many_report, _ = fit_router(both, both_labels, config, seed=seed)
        # The split both fits made: of the recorded steps' tasks (a task may have no fresh row).
        _, test = split_tasks(played, config.heldout_fraction, seed=seed)
        rows = acted & np.isin(tasks, list(test))
        y = fresh_labels[rows]
        figures = {
            "auroc_entropy": metrics.auroc(x[rows, FEATURE_NAMES.index("chosen_entropy_mean")], y)
        }
        for name, router, report in (("recorded", one, one_report), ("draws", many, many_report)):
            p = router.p_fail(x[rows])
            figures[f"auroc_{name}"] = metrics.auroc(p, y)
            figures[f"brier_{name}"] = metrics.brier(p, y)
            figures[f"escalated_{name}"] = float(np.mean(p > report["threshold"]))
        for key, value in figures.items():
            out.setdefault(key, []).append(value)
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def render_draws_comparison(figures: dict[str, np.ndarray], n_draws: int) -> str:
    """:func:`draws_comparison`'s figures as a Markdown table: mean [central 95 % of the
    splits], and fitted-on-draws minus fitted-on-the-recorded-draw, paired by split."""
    out = [
        "| figure (held-out tasks, fresh draws) | fitted on the recorded draw | fitted on "
        f"{n_draws} draws | draws minus recorded | splits where draws is better |",
        "|---|---|---|---|---|",
    ]
    for key, name, higher in (
        ("auroc", "AUROC", True),
        ("brier", "Brier", False),
        ("escalated", "share over tau", None),
    ):
        a, b = figures[f"{key}_recorded"], figures[f"{key}_draws"]
        ok = ~(np.isnan(a) | np.isnan(b))
        better = (
            ""
            if higher is None
            else f"{int(((b > a) if higher else (b < a))[ok].sum())} of {int(ok.sum())}"
        )
        out.append(f"| {name} | {_spread(a)} | {_spread(b)} | {_spread(b - a)} | {better} |")
    out.append(
        f"| AUROC of the entropy feature alone | {_spread(figures['auroc_entropy'])} | | | |"
    )
    return "\n".join(out) + "\n"


def _spread(values: np.ndarray) -> str:
    """Mean [2.5th, 97.5th percentile] over the splits where the figure is defined."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return "n/a"
    lo, hi = np.percentile(v, [2.5, 97.5])
    return f"{v.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def render_repeated_table(rows: list[dict[str, Any]]) -> str:
    """The repeated-split rows as a Markdown table: each figure's mean over the splits with the
    central 95 % of its split values, then the paired difference from the first variant, and
    in how many splits (of those with both labels held out) the AUROC fell below the first's."""
    reference = rows[0]["variant"]
    head = ["variant", "features", "held-out failing steps (all splits)"]
    for key, name in REPEATED.items():
        head += [name, f"{name} minus {reference}"]
        if key == "test_brier":
            head.append("Brier (base rate)")
    head.append(f"AUROC below {reference}")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["variant"], str(len(row["features"])), str(row["test_failures"])]
        for key in REPEATED:
            cells += [_spread(row["values"][key]), _spread(row["deltas"][key])]
            if key == "test_brier":  # the training steps' failure rate, predicted for every step
                cells.append(_spread(row["base_rate_brier"]))
        auroc = row["deltas"]["test_auroc"]
        defined = auroc[~np.isnan(auroc)]
        cells.append(f"{int((defined < 0).sum())} of {defined.size}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    shares = [f"residual@{s:g}" for s in FRONTIER_SHARES]
    head = ["variant", "features", *COLUMNS.values()]
    head += [f"residual failure, {100 * s:.0f}% escalated" for s in FRONTIER_SHARES]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["variant"], str(len(row["features"]))]
        for key in [*COLUMNS, *shares]:
            value = row[key]
            cells.append(str(value) if isinstance(value, bool) else f"{value:.3f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


#: Which router-stage rollouts a variant trains on: every one, or the SLM-only ones (no mixed
#: rollouts with escalations: the router of a run with ``router.mixed_escalation_rate: 0``).
ROLLOUTS = ("all", "slm")


def copy_agent(source: Path, out: Path, *, policy: Path | None = None) -> None:
    """Copy the saved agent folder ``source`` to ``out`` (a new folder), with ``policy`` (a
    policy folder) in place of its own if given. Only the policy's files -- large and never
    rewritten -- are hard-linked where the disk allows: a hard-linked config.json or router
    file would be rewritten in both folders when the copy is edited."""
    import os
    import shutil

    def link_weights(src: str, dst: str) -> None:
        if Path(src).parent.name == "policy":
            try:
                os.link(src, dst)
                return
            except OSError:  # another file system
                pass
        shutil.copy2(src, dst)

    def skip_policy(folder: str, names: list[str]) -> list[str]:
        return ["policy"] if policy is not None and Path(folder) == source else []

    shutil.copytree(source, out, copy_function=link_weights, ignore=skip_policy)
    if policy is not None:
        shutil.copytree(policy, out / "policy", copy_function=link_weights)


def _episodes_where(
    episodes: list[dict[str, Any]], labels: np.ndarray, keep: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The episodes ``keep`` accepts, with their steps' labels (one label a step, in order)."""
    mask = np.concatenate([[keep(e)] * len(e["steps"]) for e in episodes]).astype(bool)
    return [e for e in episodes if keep(e)], labels[mask]


def save_variant_agent(
    run_dir: str | Path,
    config: RouterConfig,
    out: str | Path,
    *,
    changes: dict[str, Any] | None = None,
    rollouts: str = "all",
    tasks: int | None = None,
    seed: int = 0,
    draws: list[Any] | None = None,
    same_action: bool = True,
) -> dict[str, Any]:
    """Fit one variant on the run's router-stage rollouts and save the run's agent with it as
    a new agent folder ``out`` (the policy's files are hard-linked where the disk allows), to
    be evaluated like any agent (``benchmarks/run.py --agent out``). ``tasks``: fit on the
    stage's first N tasks only (by task index), the router a smaller stage would have had.
    ``draws``, ``same_action``: extra feature draws to fit on (:func:`load_router_stage`).
    Returns the fit's report."""
    import json

    from r2v_agent.errors import ConfigError
    from r2v_agent.router.saving import save_router

    if rollouts not in ROLLOUTS:
        raise ConfigError(f"rollouts must be one of {ROLLOUTS}, got {rollouts!r}")
    source = Path(run_dir) / "router" / "agent"
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{str(out)!r} exists: choose a new folder for the variant's agent")
    episodes, labels, _ = load_router_stage(run_dir, draws=draws, same_action=same_action)
    if rollouts == "slm":
        episodes, labels = _episodes_where(episodes, labels, lambda e: e["agent"] == "slm")
    if tasks is not None:
        played = sorted({e["env_seed"] for e in episodes})
        if not 0 < tasks <= len(played):
            raise ConfigError(f"tasks must be in 1..{len(played)} (the stage's tasks), got {tasks}")
        first = set(played[:tasks])
        episodes, labels = _episodes_where(episodes, labels, lambda e: e["env_seed"] in first)
    variant = dataclasses.replace(config, **(changes or {}))
    router, report, _ = fit_router(episodes, labels, variant, seed=seed)

    copy_agent(source, out)
    (out / "router.safetensors").unlink(missing_ok=True)  # the variant writes its own
    spec = json.loads((out / "config.json").read_text())
    spec["router"] = save_router(router, out)
    spec["threshold"] = float(report["threshold"])
    from r2v_agent.training.feature_draws import DRAWS_FILE, load_draws

    stage_draws = load_draws(Path(run_dir) / "router" / DRAWS_FILE) if draws is None else draws
    n_draws = 1 + len(stage_draws)
    spec["router_note"] = (
        f"router_ablation variant: {changes or 'as configured'}, {rollouts} rollouts"
        + (
            f", {n_draws} feature draws a state"
            + ("" if same_action else " (any action, the logged label)")
            if n_draws > 1
            else ""
        )
        + (f", the stage's first {tasks} tasks" if tasks is not None else "")
    )
    (out / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
    return report
