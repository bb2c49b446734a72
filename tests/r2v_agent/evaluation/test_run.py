"""benchmarks/run.py: resumable after SIGKILL, parallel, on Ray; the methods behave."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from r2v_agent.errors import ConfigError
from r2v_agent.evaluation.methods import parse_method
from r2v_agent.evaluation.run import EvalSettings, plan_jobs, run_eval
from r2v_agent.trajectories import read_episodes

pytest.importorskip("textworld")

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("entropy", "needs a threshold"),
        ("entropy@1.5", r"in \[0, 1\]"),
        ("slm@0.3", "takes no value"),
        ("gpt", "expected one of"),
        ("r2v@match", "only random takes @match"),
    ],
)
def test_bad_method_specs_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_method(text)
    assert str(parse_method("entropy@0.30")) == "entropy@0.3"


def _cmd(agent: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable, "benchmarks/run.py", "--agent", str(agent), "--env", "R2V/TextWorld-v0",
        "--env-kwargs", '{"difficulty": 1}', "--tasks", "4", "--seeds", "100,101",
        "--perturbation", "flaky_tool(p=0.3)", "--max-steps", "4",
        "--methods", "slm,llm,r2v,random@match", "--sweep", "entropy", "--points", "0.3",
        "--out", str(out), "--workers", str(workers),
    ]  # fmt: skip


def test_sigkill_and_resume_gives_each_episode_once(tiny_agent_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "episodes.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _cmd(tiny_agent_dir, out, 2),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = [r["episode_key"] for r in read_episodes(out)]
    assert 6 <= len(first) < 40
    done = subprocess.run(
        _cmd(tiny_agent_dir, out, 2), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(first)} already in" in done.stdout
    records = list(read_episodes(out))
    keys = [r["episode_key"] for r in records]
    counts = collections.Counter(keys)
    assert not [k for k, n in counts.items() if n > 1], "duplicated episodes"
    methods = ["slm", "llm", "r2v", "random@match", "entropy@0.3"]
    expected = {f"{m}/{z}/{t}" for m in methods for z in (100, 101) for t in range(4)}
    assert set(keys) == expected
    assert keys[: len(first)] == first  # nothing written before the kill was lost or rewritten
    by = collections.defaultdict(list)
    for r in records:
        by[r["agent"]].append(r)
    # LLM-only: the teacher every step; SLM-only: never.
    assert all(r["escalations"] == len(r["steps"]) for r in by["llm"])
    assert all(r["escalations"] == 0 for r in by["slm"])
    # The step limit holds for every method, a flaky tool's failed calls included; the expert
    # wins unless failed calls used up its budget.
    assert max(len(r["steps"]) for r in records) == 4
    for r in by["llm"]:
        assert r["success"] or (len(r["steps"]) == 4 and any(s["tool_error"] for s in r["steps"]))
    assert sum(r["success"] for r in by["llm"]) >= len(by["llm"]) // 2
    assert all(s["features"] is not None for r in by["slm"] for s in r["steps"])
    # random@match ran at R2V's measured escalation share
    share = sum(r["escalations"] for r in by["r2v"]) / sum(len(r["steps"]) for r in by["r2v"])
    assert by["random@match"][0]["extra"]["point"] == pytest.approx(share)
    assert all(r["code_version"] for r in records)


def test_hindsight_oracle_escalates_only_when_the_slm_would_fail(
    tiny_agent_dir: Path, tmp_path: Path
) -> None:
    settings = EvalSettings(
        agent_dir=str(tiny_agent_dir),
        env_id="R2V/TextWorld-v0",
        env_kwargs={"difficulty": 1},
        out=str(tmp_path / "o.jsonl"),
        methods=["oracle"],
        tasks=[0, 1, 2],
        max_steps=4,
    )
    records = list(read_episodes(run_eval(settings)))
    assert all(r["success"] for r in records)  # every failing step was rescued
    for r in records:
        for step in r["steps"]:
            chosen = step["candidates"][0]["action"] if step["candidates"] else None
            assert step["actor"] in ("slm", "teacher")
            if step["actor"] == "slm":
                assert step["progress"], (
                    f"the oracle let a non-progress SLM step through: {chosen!r}"
                )


def test_ray_executor_on_a_local_instance(tiny_agent_dir: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = EvalSettings(
            agent_dir=str(tiny_agent_dir),
            env_id="R2V/TextWorld-v0",
            env_kwargs={"difficulty": 1},
            out=str(tmp_path / "ray.jsonl"),
            methods=["slm", "llm"],
            tasks=[0, 1, 2],
            max_steps=3,
            executor="ray",
        )
        assert len(plan_jobs(settings)) == 6
        keys = sorted(r["episode_key"] for r in read_episodes(run_eval(settings)))
        assert keys == sorted(f"{m}/None/{t}" for m in ("slm", "llm") for t in range(3))
        # Resuming a finished run plays nothing more.
        run_eval(settings)
        assert len(list(read_episodes(settings.out))) == 6
    finally:
        ray.shutdown()


def test_settings_are_saved_for_reproduction(tiny_agent_dir: Path, tmp_path: Path) -> None:
    """Through ``r2v eval`` (it used to accept no options at all); the settings and every
    record name the agent relative to the results file, never by this machine's path."""
    out = tmp_path / "results" / "e.jsonl"
    from r2v_agent.cli import main

    assert (
        main(
            [
                "eval",
                "--agent",
                str(tiny_agent_dir),
                "--env",
                "R2V/TextWorld-v0",
                "--env-kwargs",
                '{"difficulty": 1}',
                "--tasks",
                "1",
                "--methods",
                "llm",
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    saved = json.loads(out.with_suffix(".settings.json").read_text())
    assert saved["methods"] == ["llm"] and saved["tasks"] == [0]
    assert saved["out"] == "e.jsonl"
    assert not Path(saved["agent_dir"]).is_absolute()
    assert (out.parent / saved["agent_dir"]).resolve() == tiny_agent_dir.resolve()
    (record,) = read_episodes(out)
    assert record["extra"]["agent_dir"] == saved["agent_dir"]
    # A second invocation on the same file (another method): the latest settings on top, every
    # invocation kept in order.
    again = ["eval", "--agent", str(tiny_agent_dir), "--env", "R2V/TextWorld-v0"]
    again += ["--env-kwargs", '{"difficulty": 1}', "--tasks", "1", "--methods", "slm"]
    assert main([*again, "--out", str(out), "--workers", "1"]) == 0
    saved = json.loads(out.with_suffix(".settings.json").read_text())
    assert saved["methods"] == ["slm"]
    assert [s["methods"] for s in saved["invocations"]] == [["llm"], ["slm"]]


def _slm_rollouts(agent_dir: Path, log: Path, **settings: Any) -> Path:
    """The tiny agent playing 2 TextWorld games alone, logged to ``log`` (a router-stage log)."""
    run_eval(
        EvalSettings(
            agent_dir=str(agent_dir),
            env_id="R2V/TextWorld-v0",
            env_kwargs={"difficulty": 1},
            out=str(log),
            methods=["slm"],
            tasks=[0, 1],
            **settings,
        )
    )
    return log


@pytest.mark.parametrize("router", ["entropy", "verifier", "r2v"])
def test_thresholds_for_shares_escalate_those_shares(
    router: str, tiny_agent_dir: Path, tmp_path: Path
) -> None:
    import numpy as np

    from r2v_agent.evaluation.run import _saved_router, thresholds_for_shares
    from r2v_agent.router.baselines import EntropyRouter, VerifierRouter
    from r2v_agent.router.features import FEATURE_NAMES

    log = _slm_rollouts(tiny_agent_dir, tmp_path / "rollouts.jsonl", max_steps=12)
    # The untrained tiny model's scores agree to 1e-6, finer than a method key's 6 decimals:
    # spread the logged entropy and verifier features so every step's score is distinct.
    records = list(read_episodes(log))
    i = 0
    for record in records:
        for step in record["steps"]:
            step["features"]["chosen_entropy_mean"] = 0.1 * i
            step["features"]["verifier_best"] = 1.0 - 0.03 * i
            i += 1
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    shares = [0.25, 0.5, 0.75]
    taus = thresholds_for_shares(router, shares, log, tiny_agent_dir)
    scorer = {
        "entropy": EntropyRouter(),
        "verifier": VerifierRouter(),
        "r2v": _saved_router(tiny_agent_dir),
    }[router]
    x = np.asarray(
        [[s["features"][f] for f in FEATURE_NAMES] for r in read_episodes(log) for s in r["steps"]],
        dtype=np.float32,
    )
    scores = scorer.p_fail(x)
    assert len(x) >= 4 and taus == sorted(taus)
    if router != "r2v":
        assert len(taus) == len(shares)
    if len(taus) == len(shares):  # distinct scores: each tau escalates about its share
        for tau, share in zip(taus, reversed(shares), strict=True):
            assert abs(float((scores > tau).mean()) - share) <= 2 / len(x) + 1e-6
    # The router stage's mixed rollouts (teacher escalations) do not move the thresholds.
    mixed = [dict(r, agent="mixed") for r in read_episodes(log)]
    for record in mixed:
        for step in record["steps"]:
            step["features"]["chosen_entropy_mean"] = 50.0
            step["features"]["verifier_best"] = 0.0
    with log.open("a") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in mixed))
    assert thresholds_for_shares(router, shares, log, tiny_agent_dir) == taus


def test_thresholds_for_shares_name_bad_input(tiny_agent_dir: Path, tmp_path: Path) -> None:
    from r2v_agent.evaluation.run import thresholds_for_shares

    with pytest.raises(ConfigError, match="not 'random'"):
        thresholds_for_shares("random", [0.5], tmp_path / "x.jsonl", tiny_agent_dir)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no logged steps"):
        thresholds_for_shares("entropy", [0.5], empty, tiny_agent_dir)


def test_routing_env_episodes_use_the_router_stage_labels(
    tiny_agent_dir: Path, tmp_path: Path
) -> None:
    import numpy as np

    from r2v_agent.evaluation.ppo import load_routing_episodes
    from r2v_agent.groundtruth import step_labels

    log = _slm_rollouts(
        tiny_agent_dir,
        tmp_path / "rollouts.jsonl",
        perturbation="flaky_tool(p=0.5)",
        perturbation_seeds=[3],
        max_steps=8,
    )
    records = list(read_episodes(log))
    assert any(s["tool_error"] for r in records for s in r["steps"])  # the rule's special case
    loaded = load_routing_episodes(log)
    assert len(loaded) == len(records)
    for (x, y), record in zip(loaded, records, strict=True):
        assert x.shape == (len(record["steps"]), 15)
        np.testing.assert_array_equal(y, step_labels([record], "progress"))

    # The router stage's saved labels (counterfactual ones, say) take precedence.
    from r2v_agent.groundtruth import LABELS_FILE, save_step_labels

    flipped = np.concatenate([1 - y for _, y in loaded])
    save_step_labels(log.parent / LABELS_FILE, records, flipped, "counterfactual")
    for (_, y), (_, y_before) in zip(load_routing_episodes(log), loaded, strict=True):
        np.testing.assert_array_equal(y, 1 - y_before)


def test_relative_to_results(tmp_path: Path) -> None:
    from r2v_agent.evaluation.run import relative_to_results

    agent = tmp_path / "runs" / "x" / "agent"
    agent.mkdir(parents=True)
    results = tmp_path / "benchmarks" / "results" / "x" / "episodes.jsonl"
    assert relative_to_results(agent, results) == "../../../runs/x/agent"
    assert relative_to_results("smollm2-135m", results) == "smollm2-135m"  # a preset name


def test_each_perturbed_replay_of_a_task_gets_its_own_random_stream() -> None:
    from r2v_agent.evaluation.run import Job, actor_seed
    from r2v_agent.router.baselines import RandomRouter

    jobs = [Job("random@match", task, z) for task in (0, 1) for z in (None, 100, 101)]
    seeds = [actor_seed(0, job) for job in jobs]
    assert len(set(seeds)) == len(jobs)  # was seed + task: both replays of a task drew alike
    assert seeds == [actor_seed(0, job) for job in jobs]  # and it is reproducible
    assert actor_seed(1, jobs[0]) != seeds[0]
    features = np.zeros((40, 15), dtype=np.float32)
    a, b = (
        RandomRouter(0.5, seed=actor_seed(0, Job("random", 0, z)))(features) for z in (100, 101)
    )
    assert not np.array_equal(a, b)


def test_shares_of_another_agent_of_a_run_use_the_runs_router_stage(
    tiny_agent_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` with ``--agent`` (a variant of the run's agent, saved elsewhere): the sweep's
    thresholds come from the run's router-stage log, as for the run's own agent."""
    from r2v_agent.cli import main

    log = _slm_rollouts(tiny_agent_dir, tmp_path / "run" / "router" / "rollouts.jsonl")
    config = tmp_path / "run.yaml"
    config.write_text(
        "name: variant-test\noutput_dir: run\nenv: {id: R2V/TextWorld-v0, kwargs: {difficulty: 1}, "
        "heldout_tasks: 1, max_steps: 3}\n"
    )
    args = ["eval", "--config", str(config), "--agent", str(tiny_agent_dir), "--seeds", "none"]
    args += ["--methods", "", "--sweep", "entropy", "--shares", "0.5", "--tasks", "1"]
    out = tmp_path / "e.jsonl"
    assert main([*args, "--out", str(out), "--workers", "1", "--threads", "1"]) == 0
    assert f"for shares [0.5] of {log}" in capsys.readouterr().out
    (record,) = read_episodes(out)
    assert record["agent"].startswith("entropy@")
    assert main([*args, "--out", str(out), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().out
