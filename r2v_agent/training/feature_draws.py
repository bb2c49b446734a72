"""Fresh draws of the router's features at logged states.

A step's features are computed from the K candidates the SLM happened to sample there, and its
label says whether the action the SLM took there (the chosen candidate of that draw) led to a
failure the teacher could have prevented. Sampling the same state again gives other candidates
and other features. A fresh draw that chooses the logged action shares the step's label: the
same action from the same state, only the other candidates (and so the features) differ. One
that chooses another action has no label (its outcome was never played), and by default is left
out. A router fitted on one draw per state can learn that draw's noise
(``benchmarks/backend_feature_shift.py``: on terminalbench-multistep the fitted router ranked its
own training steps with AUROC 0.89 on the recorded draw, 0.69 on a fresh one);
``router.feature_draws`` fits it on several.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from r2v_agent.errors import StageError
from r2v_agent.policy.prompts import Turn

__all__ = [
    "DRAWS_FILE",
    "redraw_features",
    "extra_draws",
    "with_draws",
    "save_draws",
    "load_draws",
]

#: The router stage's extra draws, beside its rollouts.
DRAWS_FILE = "feature_draws.jsonl"

#: Per episode key, one row per step: ``{"features": {...}, "action": the chosen candidate's
#: action}`` (``None`` where the teacher acted).
Draw = dict[str, list[dict[str, Any] | None]]


def redraw_features(
    agent: Any,
    episodes: list[dict[str, Any]],
    *,
    family: str,
    max_steps: int,
    seed: int,
    desc: str = "router: feature draws",
) -> Draw:
    """The features and chosen action of every SLM-acted step of ``episodes``, sampled again
    by ``agent`` (its policy and verifier) from the step's logged history; ``agent`` is
    reseeded with ``seed`` at each episode's start."""
    fmt = agent.format_of(family)
    total = sum(s.get("actor", "slm") != "teacher" for e in episodes for s in e["steps"])
    bar = tqdm(total=total, desc=desc, unit="step")
    draw: Draw = {}
    for episode in episodes:
        agent.reset(seed=seed)
        turns: list[Turn] = []
        escalations = 0
        rows: list[dict[str, Any] | None] = []
        for t, step in enumerate(episode["steps"]):
            if step.get("actor", "slm") == "teacher":
                escalations += 1
                rows.append(None)
            else:
                # The agent acted on the info of the step before: whether that action's tool
                # failed (reset's info has none).
                tool_error = bool(t and episode["steps"][t - 1].get("tool_error"))
                messages = fmt.messages([*turns, Turn(step["observation"])])
                assessed = agent.assess(
                    agent.sample_step(messages, family),
                    observation=step["observation"],
                    info={"max_episode_steps": max_steps, "tool_error": tool_error},
                    family=family,
                    step=t,
                    escalations_so_far=escalations,
                )
                chosen = assessed.actions[assessed.chosen]
                rows.append({"features": dict(assessed.features), "action": chosen})
                bar.update()
            turns.append(Turn(step["observation"], step["action"]))
        draw[episode["episode_key"]] = rows
    bar.close()
    return draw


def extra_draws(config: Any, agent: Any, episodes: list[dict[str, Any]], n: int) -> list[Draw]:
    """The ``n`` draws the router stage of ``config`` adds to the recorded one (seeds
    ``config.seed + 1`` on), played by ``agent`` (the stage's fixed policy)."""
    from r2v_agent.training import components

    return [
        redraw_features(
            agent,
            episodes,
            family=components.family(config),
            max_steps=config.env.max_steps,
            seed=config.seed + 1 + i,
            desc=f"router: feature draw {i + 2} of {n + 1}",
        )
        for i in range(n)
    ]


def with_draws(
    episodes: list[dict[str, Any]],
    labels: np.ndarray,
    draws: Iterable[Draw],
    *,
    same_action: bool = True,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``episodes`` followed by one copy per draw, and the labels to match. A copy holds the
    SLM-acted steps of the draw with the draw's features and the logged step's label; with
    ``same_action`` only the steps where the draw chose the logged action (the others have no
    label), else every one (the logged action's label for whatever the draw chose). A copy
    keeps its task and perturbation seed, so task splits keep every draw of a state on one
    side; it is never replayed, only fitted on."""
    labels = np.asarray(labels, dtype=np.float32)
    out, out_labels = list(episodes), [labels]
    starts = np.cumsum([0] + [len(e["steps"]) for e in episodes])
    for draw in draws:
        for i, episode in enumerate(episodes):
            rows = draw.get(episode["episode_key"])
            if rows is None or len(rows) != len(episode["steps"]):
                raise StageError(
                    f"router: the feature draw has no matching steps for {episode['episode_key']}"
                )
            keep = [
                (t, {**step, "features": row["features"]})
                for t, (step, row) in enumerate(zip(episode["steps"], rows, strict=True))
                if row is not None and (not same_action or row["action"] == step["action"])
            ]
            if not keep:
                continue
            twin = copy.copy(episode)
            twin["steps"] = [step for _, step in keep]
            out.append(twin)
            out_labels.append(labels[starts[i] + np.asarray([t for t, _ in keep])])
    return out, np.concatenate(out_labels)


def save_draws(path: Path, draws: list[Draw]) -> None:
    """One JSON line per draw."""
    with open(path, "w") as f:
        for draw in draws:
            f.write(json.dumps(draw) + "\n")


def load_draws(path: Path) -> list[Draw]:
    """The draws :func:`save_draws` wrote; none when the file does not exist."""
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
