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


def test_copies_carry_the_draw_and_repeat_the_labels() -> None:
    episodes = [_episode("a", 1, ["slm", "teacher", "slm"]), _episode("b", 2, ["slm"])]
    labels = np.array([1, 0, 0, 1], dtype=np.float32)
    draw = {"a": [_features(1.0), None, _features(2.0)], "b": [_features(3.0)]}
    out, out_labels = with_draws(episodes, labels, [draw, draw])
    assert len(out) == 6 and out[:2] == episodes
    assert out_labels.tolist() == [1, 0, 0, 1] * 3
    twin = out[2]
    assert twin["episode_key"] == "a" and twin["env_seed"] == 1  # stays with its task's split
    assert [s["features"]["agreement"] for s in twin["steps"]] == [1.0, 0.0, 2.0]
    assert twin["steps"][1] is episodes[0]["steps"][1]  # the teacher's step is the logged one
    assert episodes[0]["steps"][0]["features"]["agreement"] == 0.0  # the originals unchanged


def test_a_draw_that_does_not_match_is_an_error() -> None:
    episodes = [_episode("a", 1, ["slm", "slm"])]
    with pytest.raises(StageError, match="no matching steps for a"):
        with_draws(episodes, np.zeros(2), [{"a": [_features(1.0)]}])
    with pytest.raises(StageError, match="no matching steps for a"):
        with_draws(episodes, np.zeros(2), [{"b": [_features(1.0), _features(1.0)]}])


def test_draws_round_trip(tmp_path: Path) -> None:
    draws = [{"a": [_features(0.5), None]}, {"a": [_features(0.25), None]}]
    save_draws(tmp_path / "d.jsonl", draws)
    assert load_draws(tmp_path / "d.jsonl") == draws
    assert load_draws(tmp_path / "missing.jsonl") == []


def test_the_task_split_depends_on_the_tasks_and_seed_only() -> None:
    calib, test = split_tasks([5, 3, 3, 9, 1, 7, 2, 8, 4, 6], 0.3, seed=4)
    assert (calib, test) == split_tasks(list(range(1, 10)), 0.3, seed=4)
    assert len(calib) == 1 and len(test) == 2 and not calib & test
    with pytest.raises(StageError, match="at least 3 tasks"):
        split_tasks([1, 2, 2], 0.3, seed=0)
