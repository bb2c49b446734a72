"""The leaderboard against a golden file, and its plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from r2v_agent.errors import ConfigError
from r2v_agent.evaluation.frontier import FrontierPoint
from r2v_agent.evaluation.leaderboard import (
    build_rows,
    render_csv,
    render_markdown,
    router_label_of,
    write_leaderboard,
)
from r2v_agent.trajectories import SCHEMA_VERSION, TrajectoryWriter

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "leaderboard_golden.md"


def _episode(
    method: str,
    point: float | None,
    seed: int,
    task: int,
    rng: np.random.Generator,
    success_p: float,
    share: float,
) -> dict[str, Any]:
    n = 4
    steps = []
    for _ in range(n):
        teacher = rng.random() < share
        progress = bool(teacher or rng.random() < 0.6)
        steps.append(
            {
                "observation": "o", "action": "a", "actor": "teacher" if teacher else "slm",
                "candidates": [{"action": "a"}], "verifier_scores": [0.5], "features": {},
                "p_fail": round(float(np.clip((0.2 if progress else 0.8) + rng.normal(0, 0.1), 0, 1)), 3),
                "reward": 0.0, "tool_error": False, "progress": progress, "state_index": None,
                "admissible_actions": None, "expert_action": None,
            }
        )  # fmt: skip
    calls = sum(s["actor"] == "teacher" for s in steps)
    return {
        "schema_version": SCHEMA_VERSION, "episode_key": f"{method}/{seed}/{task}",
        "env_id": "R2V/TextWorld-v0", "task_id": f"t{task}", "env_seed": task,
        "perturbation": "flaky_tool(p=0.2)", "perturbation_seed": seed, "agent": method,
        "steps": steps, "success": bool(rng.random() < success_p), "return": 0.0,
        "escalations": calls, "cost": {"calls": calls, "usd": 0.001 * calls},
        "extra": {"method": method.split("@")[0], "point": point, "env_kwargs": {"difficulty": 3}},
    }  # fmt: skip


def synthetic_records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    methods = [("slm", None, 0.3, 0.0), ("llm", None, 0.95, 1.0), ("r2v", None, 0.85, 0.4)]
    methods += [(f"entropy@{t}", t, 0.3 + 0.6 * (1 - t), 1 - t) for t in (0.2, 0.5, 0.8)]
    return [
        _episode(m, p, seed, task, rng, s, share)
        for m, p, s, share in methods
        for seed in (100, 101, 102)
        for task in range(10)
    ]


def test_leaderboard_matches_golden_file() -> None:
    text = render_markdown(build_rows(synthetic_records()))
    if os.environ.get("R2V_UPDATE_GOLDEN"):
        # Never compare against the file just written: rewriting is a separate, explicit step.
        GOLDEN.write_text(text)
        pytest.skip("rewrote the golden file; rerun without R2V_UPDATE_GOLDEN to compare")
    assert text == GOLDEN.read_text(), "rerun with R2V_UPDATE_GOLDEN=1 after an intended change"


def test_rows_by_hand() -> None:
    rows = {r.method: r for r in build_rows(synthetic_records())}
    llm = rows["llm"]
    assert llm.llm_share == 1.0 and llm.episodes == 30
    assert rows["slm"].llm_share == 0.0 and rows["slm"].brier is None
    assert rows["r2v"].brier is not None and 0 <= rows["r2v"].ece <= 1
    # every router's frontier runs from SLM-only (share 0) to LLM-only (share 1): R2V's own
    # point alone gives the area under (0, slm) - (r2v) - (1, llm)
    slm, r2v = rows["slm"], rows["r2v"]
    by_hand = (
        r2v.llm_share * (slm.success + r2v.success) / 2
        + (1 - r2v.llm_share) * (r2v.success + llm.success) / 2
    )
    assert r2v.auc == pytest.approx(by_hand) and rows["entropy@0.5"].auc is not None
    assert slm.auc is None and llm.auc is None
    assert llm.ci_low <= llm.success <= llm.ci_high
    csv_text = render_csv(list(rows.values()))
    assert csv_text.splitlines()[0].startswith("env,method,episodes,games,success")
    assert llm.games == 10


def test_router_calibration_uses_the_trained_label_on_slm_steps(tmp_path: Path) -> None:
    records = synthetic_records()
    r2v = [r for r in records if r["agent"] == "r2v"]
    slm_steps = sum(1 for r in r2v for s in r["steps"] if s["actor"] == "slm")
    teacher_steps = sum(1 for r in r2v for s in r["steps"] if s["actor"] == "teacher")
    assert slm_steps and teacher_steps  # the data has both
    row = next(r for r in build_rows(records) if r.method == "r2v")
    assert len(row.p_fail) == slm_steps  # teacher steps are not the SLM's failures to score
    # a router trained on counterfactual labels is not scored with the progress label
    unscored = next(
        r for r in build_rows(records, router_label="counterfactual") if r.method == "r2v"
    )
    assert unscored.brier is None and unscored.ece is None
    with pytest.raises(ConfigError, match="router_label"):
        build_rows(records, router_label="hindsight")
    # write_leaderboard reads the label from the stages.json kept beside the results
    path = tmp_path / "e.jsonl"
    with TrajectoryWriter(path) as writer:
        for record in records:
            writer.write(record)
    stages = {"router": {"hash": "x", "stats": {"label": "counterfactual"}}}
    (tmp_path / "stages.json").write_text(json.dumps(stages))
    assert router_label_of(path) == "counterfactual"
    pytest.importorskip("matplotlib")
    text = write_leaderboard([path], tmp_path / "out")
    assert "trained on counterfactual labels" in text


def test_write_leaderboard_makes_table_csv_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "e.jsonl"
    with TrajectoryWriter(path) as writer:
        for record in synthetic_records():
            writer.write(record)
    write_leaderboard([path], tmp_path / "out")
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "frontier.png",
        "frontier_cost.png",
        "reliability.png",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 200, name
    assert (tmp_path / "out" / "frontier_cost.png").read_bytes()[:4] == b"\x89PNG"


def test_the_bill_line_pairs_dollars_per_episode() -> None:
    from r2v_agent.evaluation.leaderboard import headline

    records = synthetic_records()
    rows = {r.method: r for r in build_rows(records)}
    text = "\n".join(headline(list(rows.values())))
    line = next(x for x in text.splitlines() if "cost per episode on those episodes" in x)
    # by hand: the synthetic records cost $0.001 a teacher call
    nearest = line.split(" vs ")[1].split(" $")[0]
    keys = set(rows["r2v"].outcomes) & set(rows[nearest].outcomes)

    def mean_calls(method: str) -> float:
        picked = [
            r["escalations"]
            for r in records
            if r["agent"] == method and (r["perturbation_seed"], r["env_seed"]) in keys
        ]
        return sum(picked) / len(picked)

    a, b = 0.001 * mean_calls("r2v"), 0.001 * mean_calls(nearest)
    assert f"R2V ${a:.5f} vs {nearest} ${b:.5f} ({a / b:.2f}x)" in line
    assert f"difference ${a - b:+.5f}" in line


def _leaderboard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "leaderboard.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def test_leaderboard_names_bad_result_files(tmp_path: Path) -> None:
    """Each used to end in a traceback: FileNotFoundError; matplotlib's ValueError after a
    header-only table was written; "... at at column N" for a torn line that ends in a newline."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    torn = tmp_path / "torn.jsonl"
    whole = json.dumps(synthetic_records()[0])
    torn.write_text(whole + "\n" + whole[:150] + "\n")
    cases = {
        str(tmp_path / "missing.jsonl"): "missing.jsonl' does not exist",
        str(empty): "empty.jsonl' holds no episode records",
        str(torn): "torn.jsonl:2: not a whole JSON record",
    }
    for path, message in cases.items():
        out = tmp_path / f"out-{Path(path).stem}"
        run = _leaderboard_cli(path, "--out", str(out))
        assert run.returncode == 2, run.stderr
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert " at at " not in run.stderr
        assert not out.exists()  # nothing half-written


def test_headline_matched_share_uses_slm_and_llm_as_sweep_ends() -> None:
    from r2v_agent.evaluation.leaderboard import headline

    rows = build_rows(synthetic_records())
    text = "\n".join(headline(rows))
    # R2V 0.833 lies between entropy@0.2 (0.700 at 0.817) and LLM-only (0.967 at 1.0).
    assert "entropy router needs LLM share 0.908 (interpolated: entropy@0.2 to llm, 18.3" in text
    # At R2V's share 0.367, between entropy@0.8 (0.367 at 0.125) and entropy@0.5 (0.533 at
    # 0.567): 0.367 + 0.167 * (0.367 - 0.125) / (0.567 - 0.125) = 0.458.
    assert "entropy router reaches success 0.458 (interpolated: entropy@0.8 to entropy@0.5" in text
    assert text.count("not a matched comparison") == 2  # both gaps are wider than 2 x 5 points
    # An R2V no better than SLM-only needs no LLM share at all.
    by_method = {r.method: r for r in rows}
    r2v, slm = by_method["r2v"].frontier, by_method["slm"].frontier
    assert r2v is not None and slm is not None
    by_method["r2v"].frontier = FrontierPoint(
        "r2v", {k: replace(e, success=slm.episodes[k].success) for k, e in r2v.episodes.items()}
    )
    assert "is no higher than SLM-only's" in "\n".join(headline(rows))


def test_matched_points_name_where_they_come_from() -> None:
    from r2v_agent.evaluation.frontier import share_at_success as _share_at_success
    from r2v_agent.evaluation.frontier import success_at_share as _success_at_share

    curve = [(0.0, 0.2, "slm"), (0.3, 0.6, "entropy@0.5"), (1.0, 1.0, "llm")]
    assert _share_at_success(curve, 0.6) == (0.3, "measured: entropy@0.5")
    share, where = _share_at_success(curve, 0.8)  # halfway from 0.6 to 1.0: share 0.65
    assert share == pytest.approx(0.65) and where.startswith(
        "interpolated: entropy@0.5 to llm, 70.0"
    )
    assert "not a matched comparison" in where  # 35 share points from the nearest measured one
    # Measured points 40 share points apart, but the value lies 2 from one of them: matched.
    far = [(0.0, 0.2, "slm"), (0.3, 0.6, "entropy@0.5"), (0.7, 1.0, "entropy@0.1")]
    share, where = _share_at_success(far, 0.615)  # 0.3 + 0.4 * 0.015 / 0.4 = 0.315
    assert share == pytest.approx(0.315)
    assert (
        where
        == "interpolated: entropy@0.5 to entropy@0.1, 40.0 share points apart, 1.5 from entropy@0.5"
    )
    success, where = _success_at_share(far, 0.66)  # 4 share points below entropy@0.1
    assert success == pytest.approx(0.96) and where.endswith("4.0 from entropy@0.1")
    success, where = _success_at_share(far, 0.4)  # 10 from entropy@0.5: not matched
    assert "10.0 from entropy@0.5 -- not a matched comparison" in where
    assert _share_at_success(curve, 1.01) is None
    assert _success_at_share(curve, 0.3) == (0.6, "measured: entropy@0.5")
    success, where = _success_at_share(curve, 0.15)  # halfway from 0.2 to 0.6
    assert success == pytest.approx(0.4) and where.startswith("interpolated: slm to entropy@0.5")
    # two measured points 8 share points apart: each within 5 of a point between them
    close = [(0.30, 0.6, "entropy@0.5"), (0.38, 0.7, "entropy@0.4")]
    assert _success_at_share(close, 0.33)[1] == (
        "interpolated: entropy@0.5 to entropy@0.4, 8.0 share points apart, 3.0 from entropy@0.5"
    )
    assert _success_at_share(curve[1:], 0.1) is None  # below the sweep: no guess


def test_covariate_shift_splits_steps_at_the_first_escalation(tmp_path: Path) -> None:
    from r2v_agent.evaluation.leaderboard import covariate_shift

    rng = np.random.default_rng(0)
    record = _episode("r2v", None, 100, 0, rng, 1.0, 0.0)
    record["success"] = True
    actors = ["slm", "slm", "teacher", "slm"]
    p_fail = [0.1, 0.3, 0.9, 0.6]
    progress = [True, True, True, False]  # the SLM's last step makes no progress: label 1
    for step, actor, p, ok in zip(record["steps"], actors, p_fail, progress, strict=True):
        step.update(actor=actor, p_fail=p, progress=ok)
    rows = {r.phase: r for r in covariate_shift([record])}
    before, after = rows["before"], rows["after"]
    # before: the two SLM steps and the escalation itself; after: one SLM step
    assert (before.steps, before.escalation_rate, before.slm_steps) == (3, 1 / 3, 2)
    assert (after.steps, after.escalation_rate, after.slm_steps) == (1, 0.0, 1)
    assert before.brier == pytest.approx((0.1**2 + 0.3**2) / 2)  # labels 0, 0
    assert after.brier == pytest.approx((0.6 - 1.0) ** 2)  # label 1
    # a router trained on counterfactual labels is not judged on progress: steps, no Brier
    (cf,) = [
        r for r in covariate_shift([record], router_label="counterfactual") if r.phase == "before"
    ]
    assert (cf.steps, cf.slm_steps, cf.brier, cf.ece) == (3, 2, None, None)
    with pytest.raises(ConfigError, match="router_label"):
        covariate_shift([record], router_label="reward")
    # methods without a router (slm, llm) have no such table
    assert covariate_shift([_episode("slm", None, 100, 0, rng, 0.5, 0.0)]) == []
    # write_leaderboard appends the table
    path = tmp_path / "e.jsonl"
    with TrajectoryWriter(path) as writer:
        for r in synthetic_records():
            writer.write(r)
    pytest.importorskip("matplotlib")
    assert "after 1st escalation" in write_leaderboard([path], tmp_path / "out")


def test_covariate_shift_script_compares_routers_on_shared_episodes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    first, second = tmp_path / "mixed.jsonl", tmp_path / "slm_only.jsonl"
    with TrajectoryWriter(first) as writer:
        for task in range(3):
            writer.write(_episode("r2v", None, 100, task, rng, 1.0, 0.5))
    with TrajectoryWriter(second) as writer:
        for task in range(2):  # task 2 was not played: left out of both tables
            writer.write(_episode("r2v", None, 100, task, rng, 0.0, 0.5))
        writer.write(_episode("slm", None, 100, 0, rng, 0.0, 0.0))  # another method: ignored
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "compare_runs.py"
    out = tmp_path / "shift.md"
    run = subprocess.run(
        [sys.executable, str(script), f"mixed={first}", f"slm-only={second}", "--out", str(out)]
        + ["--method", "r2v", "--covariate-shift"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert "on the 2 episodes every file played (2 games)" in text
    assert "| mixed | 1.000 |" in text and "| slm-only | 0.000 |" in text
    assert "**mixed**:" in text and "**slm-only**:" in text
    assert text.count("before 1st escalation") == 2
    assert "none for R2V" not in text
    counterfactual = subprocess.run(
        [sys.executable, str(script), f"mixed={first}", f"slm-only={second}", "--method", "r2v"]
        + ["--covariate-shift", "--router-label", "counterfactual"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert counterfactual.returncode == 0, counterfactual.stderr
    assert "none for R2V: its router predicts the counterfactual label" in counterfactual.stdout
    shift_rows = [ln for ln in counterfactual.stdout.splitlines() if "1st escalation) |" in ln]
    assert shift_rows and all(ln.endswith("| - | - |") for ln in shift_rows)
    bad = subprocess.run(
        [sys.executable, str(script), "no-label-here"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "expected LABEL=FILE" in bad.stderr


def test_compare_runs_script_pairs_runs_by_episode(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    full, variant = tmp_path / "full.jsonl", tmp_path / "variant.jsonl"
    with TrajectoryWriter(full) as writer:
        for task in range(4):  # succeeds on every game
            writer.write(_episode("slm", None, 100, task, rng, 1.0, 0.0))
    with TrajectoryWriter(variant) as writer:
        for task in range(4):  # succeeds on games 0 and 1 only
            writer.write(_episode("slm", None, 100, task, rng, float(task < 2), 0.0))
        writer.write(_episode("slm", None, 101, 0, rng, 1.0, 0.0))  # not in the other file
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "compare_runs.py"
    run = subprocess.run(
        [sys.executable, str(script), f"full={full}", f"variant={variant}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "on the 4 episodes every file played (4 games)" in run.stdout
    # 0.5 - 1.0 on the shared episodes; the 4 game differences (0, 0, -1, -1) under sign flips:
    # |sum| >= 2 in 8 of 16 patterns
    assert "| variant | 0.500 |" in run.stdout and "-0.500 [" in run.stdout
    assert "p = 0.5" in run.stdout


def _fixed(method: str, point: float | None, task: int, success: bool, calls: int) -> dict:
    """A 4-step episode whose first ``calls`` steps the teacher acted on."""
    record = _episode(method, point, 100, task, np.random.default_rng(task), 0.0, 0.0)
    for i, step in enumerate(record["steps"]):
        step["actor"] = "teacher" if i < calls else "slm"
    record.update(success=success, escalations=calls)
    return record


def test_r2v_frontier_at_each_entropy_point_by_hand() -> None:
    from r2v_agent.evaluation.leaderboard import headline

    records = []
    for task in range(4):
        records += [
            _fixed("slm", None, task, False, 0),  # (share 0, success 0)
            _fixed("llm", None, task, True, 4),  # (1, 1)
            _fixed("entropy@0.5", 0.5, task, task < 2, 2),  # (0.5, 0.5)
            _fixed("r2v", None, task, task < 3, 1),  # (0.25, 0.75)
            _fixed("r2v@0.2", 0.2, task, True, 3),  # (0.75, 1.0)
        ]
    text = "\n".join(headline(build_rows(records)))
    # R2V's frontier (0, 0) - (0.25, 0.75) - (0.75, 1) - (1, 1) reaches 0.5 at 0.25 * 0.5 / 0.75
    assert (
        "at entropy@0.5's success 0.500 (LLM share 0.500) R2V's frontier needs LLM share 0.167 "
        "(interpolated: slm to r2v, 25.0 share points apart" in text
    )
    assert "0.33x the entropy router's" in text
    # the best R2V point at <= 50 % share is its own tau (0.75): 25 points below LLM-only
    assert "R2V's best such point r2v (share 0.250): LLM-only minus it +0.250" in text
    assert "-- not met." in text


def test_reverse_direction_with_resamples_the_r2v_frontier_never_reaches() -> None:
    """Without LLM-only as its end, R2V's frontier misses the entropy point's success in some
    draws of games: the ratio's CI is open above, not a crash."""
    from r2v_agent.evaluation.leaderboard import headline

    records = []
    for task in range(4):
        records += [
            _fixed("slm", None, task, False, 0),
            _fixed("entropy@0.5", 0.5, task, task in (0, 1), 2),  # 0.5 at share 0.5
            _fixed("r2v", None, task, task in (0, 2), 1),  # 0.5 at share 0.25
            _fixed("r2v@0.9", 0.9, task, False, 0),
        ]
    line = next(x for x in headline(build_rows(records)) if "at entropy@0.5's success" in x)
    assert "R2V's frontier needs LLM share 0.250 (measured: r2v)" in line
    assert "0.50x the entropy router's, CI [" in line and ", inf]" in line
