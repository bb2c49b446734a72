"""Seeded task families: deterministic, valid Terminal-Bench folders; the oracle solves every
generated instance and doing nothing solves none; enough held-out instances for a benchmark."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

import r2v_envs  # noqa: F401
from r2v_envs.terminalbench.families import (
    MULTISTEP_FAMILIES,
    SUITES,
    family_of,
    main,
    parse_seeds,
    task_id,
    write_dataset,
)
from r2v_envs.terminalbench.tasks import load_tasks, split_of

from .conftest import needs_bwrap


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_same_seed_writes_the_same_bytes_and_seeds_differ(tmp_path: Path, suite: str) -> None:
    families = list(SUITES[suite])
    a = _snapshot(write_dataset(tmp_path / "a", [3, 4], families))
    b = _snapshot(write_dataset(tmp_path / "b", [3, 4], families))
    assert a == b and len(a) > 6 * 2 * 5
    for family in families:  # two seeds of one family: other values, other answers
        first = (tmp_path / "a" / task_id(family, 3) / "tests" / "test_outputs.py").read_bytes()
        second = (tmp_path / "a" / task_id(family, 4) / "tests" / "test_outputs.py").read_bytes()
        assert first != second, family


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_generated_folders_are_valid_tasks_and_enough_are_held_out(
    tmp_path: Path, suite: str
) -> None:
    # basic is the default suite: the committed runs' command line writes it unchanged.
    assert main([str(tmp_path), "--seeds", "0-39"] + (["--suite", suite] * (suite != "basic"))) == 0
    tasks = load_tasks(tmp_path)
    families = set(SUITES[suite])
    assert len(tasks) == 6 * 40 and {family_of(t) for t in tasks} == families
    held_out = [t for t in tasks if split_of(t) == "test"]
    assert len(held_out) >= 60, len(held_out)
    assert {family_of(t) for t in held_out} == families  # every family is held out
    # The first training tasks (a pipeline's reset seeds 0..n-1) take every family.
    train = sorted(t for t in tasks if split_of(t) == "train")
    assert {family_of(t) for t in train[:24]} == families
    assert parse_seeds("2-4") == [2, 3, 4] and parse_seeds("1,7") == [1, 7]
    with pytest.raises(ValueError, match="unknown task family"):
        write_dataset(tmp_path / "x", [0], ["no-such-family"])


@needs_bwrap
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_oracle_solves_every_instance_and_doing_nothing_none(tmp_path: Path, suite: str) -> None:
    root = write_dataset(tmp_path / "tasks", [0, 1], list(SUITES[suite]))
    env = gym.make(
        "R2V/TerminalBench-v0", dataset_path=str(root), expert_hints=True, command_timeout=10
    ).unwrapped
    try:
        solved, untouched = [], []
        for task_id, task in sorted(load_tasks(root).items()):
            # Every expert step does work: no shell-option line for the SLM to imitate.
            assert not any(c.split()[0] == "set" for c in task.solution_commands()), task_id
            _, info = env.reset(options={"task_id": task_id})
            done = False
            while not done:
                _, reward, terminated, truncated, info = env.step(info["expert_action"])
                done = terminated or truncated
            if info["success"] and reward == 1.0:
                solved.append(task_id)
            env.reset(options={"task_id": task_id})
            *_, info = env.step("submit")
            if info["success"]:
                untouched.append(task_id)
        assert len(solved) == 12, sorted(set(load_tasks(root)) - set(solved))
        assert untouched == []
    finally:
        env.close()


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9]+", text))


@needs_bwrap
def test_multistep_tasks_need_what_their_first_command_prints(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, range(3), list(MULTISTEP_FAMILIES))
    env = gym.make("R2V/TerminalBench-v0", dataset_path=str(root), command_timeout=10).unwrapped
    try:
        for name, task in sorted(load_tasks(root).items()):
            first, second = task.solution_commands()  # exactly two expert commands
            env.reset(options={"task_id": name})
            printed, *_ = env.step(first)
            # The second command uses a value (a file, column, port, path or number) that the
            # first one printed and the instruction does not name: it has to be read.
            needed = (_tokens(second) & _tokens(printed)) - _tokens(task.instruction)
            assert needed, (name, printed, second)
    finally:
        env.close()
