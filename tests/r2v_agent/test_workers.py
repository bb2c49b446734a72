"""The worker pool under collect and evaluation runs: results as they finish, errors passed on,
and a dead worker is a clear error, never a hang."""

from __future__ import annotations

import math
import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r2v_agent.errors import WorkerError
from r2v_agent.workers import map_unordered

ROOT = Path(__file__).resolve().parents[2]


def test_every_item_comes_back_once() -> None:
    items = list(range(-7, 8))
    assert sorted(map_unordered(operator.neg, items, 2)) == sorted(-x for x in items)


def test_an_exception_in_a_job_is_raised_in_the_parent() -> None:
    with pytest.raises(ValueError, match="math domain error"):
        list(map_unordered(math.sqrt, [4.0, -1.0, 9.0], 2))


def test_a_worker_that_dies_is_an_error_not_a_hang() -> None:
    # os._exit ends the worker process itself, as the kernel's OOM killer would
    with pytest.raises(WorkerError, match="worker process died"):
        list(map_unordered(os._exit, [3], 2))


def test_a_script_on_stdin_fails_fast_with_what_to_do() -> None:
    """Spawned workers cannot re-import a ``__main__`` read from standard input; with
    multiprocessing's Pool that respawned workers forever (a silent hang)."""
    script = textwrap.dedent(
        """
        import operator
        from r2v_agent.workers import map_unordered
        if __name__ == "__main__":
            print(list(map_unordered(operator.neg, [1, 2, 3], 2)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-"],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode != 0
    assert "WorkerError" in done.stderr and "standard input" in done.stderr
