"""make_env keeps every env family's train and test tasks apart."""

from __future__ import annotations

import pytest

from r2v_agent.rollout import make_env


def test_terminalbench_split_reaches_the_env() -> None:
    from r2v_envs.terminalbench.tasks import split_of

    train = make_env("R2V/TerminalBench-v0", split="train", max_steps=5)
    test = make_env("R2V/TerminalBench-v0", split="test", max_steps=5)
    try:
        train_ids, test_ids = train.unwrapped.task_ids, test.unwrapped.task_ids
        assert train_ids and test_ids and not set(train_ids) & set(test_ids)
        assert all(split_of(t) == "test" for t in test_ids)
    finally:
        train.close()
        test.close()


def test_humaneval_split_reaches_the_env() -> None:
    pytest.importorskip("evalplus")
    train = make_env("R2V/HumanEval-v0", split="train", max_steps=5)
    test = make_env("R2V/HumanEval-v0", split="test", max_steps=5)
    try:
        assert not set(train.unwrapped.task_ids) & set(test.unwrapped.task_ids)
    finally:
        train.close()
        test.close()
