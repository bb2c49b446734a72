"""What the router's 15 features buy: the same MLP, loss, calibration and tau rule trained on
feature subsets, and with and without the CVaR term, on the router stage's own rollouts.

Each variant is :func:`~r2v_agent.training.fit_router.fit_router` with one field of the
:class:`~r2v_agent.config.RouterConfig` changed, on the same steps, labels, seed and
train / calibration / test split (by task), so the held-out numbers differ only by the variant.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.config import RouterConfig
from r2v_agent.groundtruth import LABELS_FILE, load_step_labels
from r2v_agent.training.fit_router import fit_router
from r2v_agent.trajectories import read_episodes

__all__ = ["ABLATIONS", "run_ablations", "load_router_stage", "render_table"]

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


def load_router_stage(run_dir: str | Path) -> tuple[list[dict[str, Any]], np.ndarray, str]:
    """The router stage's rollouts and step labels (in step order) from a pipeline run."""
    stage = Path(run_dir) / "router"
    episodes = list(read_episodes(stage / "rollouts.jsonl"))
    mode, per_episode = load_step_labels(stage / LABELS_FILE)
    labels = np.asarray(
        [v for e in episodes for v in per_episode[e["episode_key"]]], dtype=np.float32
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
            _, report, _ = fit_router(episodes, labels, variant, seed=seed)
            rows.append(
                {"variant": name, "features": report["features"]}
                | {key: report[key] for key in COLUMNS}
            )
    finally:
        quiet.setLevel(level)
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    head = ["variant", "features", *COLUMNS.values()]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["variant"], str(len(row["features"]))]
        for key in COLUMNS:
            value = row[key]
            cells.append(str(value) if isinstance(value, bool) else f"{value:.3f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
