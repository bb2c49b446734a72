from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from r2v_envs.errors import TaskNotFoundError
from r2v_envs.terminalbench.tasks import (
    TaskFormatError,
    builtin_tasks_dir,
    load_task,
    load_tasks,
    split_commands,
    split_of,
)


def test_builtin_set_is_broad() -> None:
    tasks = load_tasks()
    assert len(tasks) >= 30
    categories = Counter(t.category for t in tasks.values())
    assert len(categories) >= 6 and min(categories.values()) >= 3
    assert set(Counter(t.difficulty for t in tasks.values())) == {"easy", "medium", "hard"}
    for task in tasks.values():
        assert task.instruction and task.solution_commands()
        assert not task.run_tests_needs_network  # the built-in set runs offline


def test_split_is_deterministic_and_covers_both() -> None:
    ids = list(load_tasks())
    splits = [split_of(t) for t in ids]
    assert splits == [split_of(t) for t in ids]
    assert 0 < splits.count("test") < len(ids)


def test_split_commands_keeps_multiline_constructs_whole() -> None:
    script = "#!/bin/bash\n# comment\necho a\nfor i in 1 2; do\n  echo $i\ndone\ncat <<'EOF'\nx\nEOF\necho b \\\n  c\n"
    assert split_commands(script) == [
        "echo a",
        "for i in 1 2; do\n  echo $i\ndone",
        "cat <<'EOF'\nx\nEOF",
        "echo b \\\n  c",
    ]


def _copy(tmp_path: Path, name: str = "create-hello-file") -> Path:
    target = tmp_path / name
    shutil.copytree(builtin_tasks_dir() / name, target)
    return target


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda p: (p / "solution.sh").unlink(), "missing solution.sh"),
        (lambda p: (p / "task.yaml").write_text("instruction: [unclosed"), "not valid YAML"),
        (lambda p: (p / "task.yaml").write_text("difficulty: easy\n"), "non-empty 'instruction'"),
        (
            lambda p: (p / "task.yaml").write_text("instruction: x\ndifficulty: extreme\n"),
            "difficulty 'extreme'",
        ),
        (
            lambda p: (p / "task.yaml").write_text("instruction: x\nmax_test_timeout_sec: -1\n"),
            "max_test_timeout_sec",
        ),
        (
            lambda p: (p / "task.yaml").write_text("instruction: x\ntags: web\n"),
            "'tags' must be a list",
        ),
        (lambda p: shutil.rmtree(p / "tests"), "tests/"),
        (lambda p: (p / "Dockerfile").write_text("RUN echo hi\n"), "must start with FROM"),
        (lambda p: (p / "solution.sh").write_text("if true; then\n  echo\n"), "unfinished command"),
    ],
)
def test_validation_names_the_problem(tmp_path: Path, mutate, fragment: str) -> None:
    task = _copy(tmp_path)
    mutate(task)
    with pytest.raises(TaskFormatError) as excinfo:
        load_task(task)
    assert fragment in str(excinfo.value) and "create-hello-file" in str(excinfo.value)


def test_external_folder_and_network_run_tests(tmp_path: Path) -> None:
    task = _copy(tmp_path)
    (task / "run-tests.sh").write_text(
        "#!/bin/bash\ncurl -LsSf https://astral.sh/uv/install.sh | sh\nuv pip install pytest\n"
        "uv run pytest $TEST_DIR/test_outputs.py -rA\n"
    )
    tasks = load_tasks(tmp_path)
    assert (
        list(tasks) == ["create-hello-file"] and tasks["create-hello-file"].run_tests_needs_network
    )
    with pytest.raises(TaskNotFoundError):
        load_tasks(tmp_path / "nowhere")
