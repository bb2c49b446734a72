"""The trajectory schema: validation names line and field; appends survive a killed writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from r2v_agent.errors import TrajectoryError
from r2v_agent.trajectories import (
    SCHEMA_VERSION,
    TrajectoryWriter,
    episode_keys,
    read_episodes,
    validate_episode,
)


def episode(key: str = "e0", n_steps: int = 2) -> dict[str, Any]:
    step = {
        "observation": "You are in a room.",
        "action": "go north",
        "actor": "slm",
        "candidates": [{"action": "go north", "seq_logprob": -1.0, "entropy_mean": 0.5}],
        "verifier_scores": [0.8],
        "features": {"agreement": 1.0},
        "p_fail": 0.2,
        "reward": 0.0,
        "tool_error": False,
        "progress": True,
        "state_index": 0,
        "admissible_actions": ["go north"],
        "expert_action": None,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "episode_key": key,
        "env_id": "R2V/TextWorld-v0",
        "task_id": "custom/d1/s0",
        "env_seed": 0,
        "perturbation": None,
        "perturbation_seed": None,
        "agent": "test",
        "steps": [dict(step) for _ in range(n_steps)],
        "success": True,
        "return": 1.0,
        "escalations": 0,
        "cost": {"calls": 0},
    }


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(episode("a"))
        writer.write(episode("b", 3))
    records = list(read_episodes(path))
    assert [r["episode_key"] for r in records] == ["a", "b"]
    assert len(records[1]["steps"]) == 3
    assert episode_keys(path) == {"a", "b"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("success"), "missing field 'success'"),
        (lambda e: e.update(success="yes"), "field 'success' must be bool"),
        (lambda e: e.update(escalations=True), "field 'escalations' must be int"),
        (lambda e: e.update(schema_version=99), "schema_version"),
        (
            lambda e: e["steps"][1].update(reward="high"),
            r"steps\[1\]: field 'reward' must be int or float",
        ),
        (
            lambda e: e["steps"][0].update(actor="robot"),
            r"steps\[0\]: field 'actor' must be one of",
        ),
        (lambda e: e["steps"][0].update(verifier_scores=[0.1, 0.2]), "verifier_scores"),
        (lambda e: e["steps"][0]["candidates"].append({"text": "x"}), r"candidates\[1\]"),
    ],
)
def test_validation_names_line_and_field(tmp_path: Path, mutate: Any, message: str) -> None:
    good, bad = episode("ok"), episode("bad")
    mutate(bad)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(TrajectoryError, match=rf"t\.jsonl:2: .*{message}"):
        list(read_episodes(path))


def test_writer_refuses_an_invalid_episode(tmp_path: Path) -> None:
    bad = episode()
    bad["steps"][0]["tool_error"] = "no"
    with (
        TrajectoryWriter(tmp_path / "t.jsonl") as writer,
        pytest.raises(TrajectoryError, match="tool_error"),
    ):
        writer.write(bad)
    assert (tmp_path / "t.jsonl").read_text() == ""


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(episode()) + "\n{not json\n")
    with pytest.raises(TrajectoryError, match=r"t\.jsonl:2: not a whole JSON record"):
        list(read_episodes(path))
    with pytest.raises(TrajectoryError, match="must be a JSON object"):
        validate_episode([1, 2])


def test_torn_last_line_is_ignored_then_repaired(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    whole = json.dumps(episode("a")) + "\n"
    path.write_text(whole + json.dumps(episode("b"))[:50])  # a crash mid-line
    assert [r["episode_key"] for r in read_episodes(path)] == ["a"]
    with TrajectoryWriter(path) as writer:
        writer.write(episode("c"))
    assert [r["episode_key"] for r in read_episodes(path)] == ["a", "c"]


_WRITER = """
import sys
from tests.r2v_agent.test_trajectories import episode
from r2v_agent.trajectories import TrajectoryWriter
with TrajectoryWriter(sys.argv[1]) as w:
    i = 0
    while True:
        w.write(episode(f"e{i}", n_steps=200))  # ~60 kB a line
        i += 1
"""


def test_sigkill_never_yields_a_half_record(tmp_path: Path) -> None:
    """SIGKILL can cut a large write short (the kernel stops copying on a fatal signal); the
    torn tail has no newline, readers skip it and the next writer removes it."""
    path = tmp_path / "t.jsonl"
    root = Path(__file__).resolve().parents[2]
    for _attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=root)
        deadline = time.monotonic() + 60
        while (not path.exists() or path.stat().st_size < 400_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    records = list(read_episodes(path))  # validates every record it yields
    assert len(records) >= 6 and all(len(r["steps"]) == 200 for r in records)
    with TrajectoryWriter(path) as writer:
        writer.write(episode("after"))
    assert path.read_bytes().endswith(b"\n")
    keys = [r["episode_key"] for r in read_episodes(path)]
    assert keys[-1] == "after" and len(keys) == len(records) + 1
