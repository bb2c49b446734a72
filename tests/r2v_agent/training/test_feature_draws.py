"""Extra feature draws: copies of the logged episodes carrying a draw's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from r2v_agent.errors import StageError
from r2v_agent.router.features import FEATURE_NAMES
from r2v_agent.training.feature_draws import load_draws, save_draws, with_draws
from r2v_agent.training.fit_router import split_tasks


def _features(value: float) -> dict[str, float]:
    return {name: value for name in FEATURE_NAMES}


def _episode(key: str, task: int, actors: list[str]) -> dict:
    steps = [{"actor": a, "features": _features(0.0), "action": "x"} for a in actors]
    return {"episode_key": key, "env_seed": task, "perturbation_seed": 1, "steps": steps}


def _row(value: float, action: str = "x") -> dict:
    return {"features": _features(value), "action": action}


def test_copies_carry_the_draw_and_the_logged_labels() -> None:
    episodes = [_episode("a", 1, ["slm", "teacher", "slm"]), _episode("b", 2, ["slm"])]
    labels = np.array([1, 0, 0, 1], dtype=np.float32)
    draw = {"a": [_row(1.0), None, _row(2.0)], "b": [_row(3.0)]}
    out, out_labels = with_draws(episodes, labels, [draw, draw])
    assert len(out) == 6 and out[:2] == episodes
    # each copy: the SLM-acted steps only (the teacher's step is no training example)
    assert out_labels.tolist() == [1, 0, 0, 1] + [1, 0, 1] * 2
    twin = out[2]
    assert twin["episode_key"] == "a" and twin["env_seed"] == 1  # stays with its task's split
    assert [s["features"]["agreement"] for s in twin["steps"]] == [1.0, 2.0]
    assert [s["actor"] for s in twin["steps"]] == ["slm", "slm"]
    assert episodes[0]["steps"][0]["features"]["agreement"] == 0.0  # the originals unchanged


def test_a_draw_of_another_action_has_no_label_unless_asked() -> None:
    episodes = [_episode("a", 1, ["slm", "slm", "slm"])]
    labels = np.array([0, 1, 0], dtype=np.float32)
    draw = {"a": [_row(1.0, "y"), _row(2.0), _row(3.0, "z")]}
    out, out_labels = with_draws(episodes, labels, [draw])
    assert [s["features"]["agreement"] for s in out[1]["steps"]] == [2.0]
    assert out_labels.tolist() == [0, 1, 0, 1]
    every, every_labels = with_draws(episodes, labels, [draw], same_action=False)
    assert len(every[1]["steps"]) == 3 and every_labels.tolist() == [0, 1, 0] * 2
    none, none_labels = with_draws(episodes, labels, [{"a": [_row(1.0, "y")] * 3}])
    assert none == episodes and none_labels.tolist() == [0, 1, 0]  # no copy without a step


def test_a_draw_that_does_not_match_is_an_error() -> None:
    episodes = [_episode("a", 1, ["slm", "slm"])]
    with pytest.raises(StageError, match="no matching steps for a"):
        with_draws(episodes, np.zeros(2), [{"a": [_row(1.0)]}])
    with pytest.raises(StageError, match="no matching steps for a"):
        with_draws(episodes, np.zeros(2), [{"b": [_row(1.0), _row(1.0)]}])


def test_draws_round_trip(tmp_path: Path) -> None:
    draws = [{"a": [_row(0.5), None]}, {"a": [_row(0.25, "y"), None]}]
    save_draws(tmp_path / "d.jsonl", draws)
    assert load_draws(tmp_path / "d.jsonl") == draws
    assert load_draws(tmp_path / "missing.jsonl") == []


def test_the_task_split_depends_on_the_tasks_and_seed_only() -> None:
    calib, test = split_tasks([5, 3, 3, 9, 1, 7, 2, 8, 4, 6], 0.3, seed=4)
    assert (calib, test) == split_tasks(list(range(1, 10)), 0.3, seed=4)
    assert len(calib) == 1 and len(test) == 2 and not calib & test
    with pytest.raises(StageError, match="at least 3 tasks"):
        split_tasks([1, 2, 2], 0.3, seed=0)
