"""The smoke pipeline end to end on CPU, killed mid-stage and resumed; the result loads."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from r2v_agent.trajectories import read_episodes

pytest.importorskip("trl")
pytest.importorskip("textworld")

ROOT = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "benchmarks" / "configs" / "smoke.yaml").read_text())
    data["output_dir"] = str(tmp_path / "run")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _r2v(*args: str) -> list[str]:
    return [sys.executable, "-m", "r2v_agent.cli", *args]


def _run_r2v(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``r2v ARGS`` to completion, its output captured."""
    return subprocess.run(_r2v(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(900)  # ~70 s on an idle 2-core machine; bounded for a loaded one
def test_smoke_pipeline_survives_sigkill_and_loads(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run = tmp_path / "run"
    # Kill the first run with SIGKILL while the bc stage is writing.
    proc = subprocess.Popen(
        _r2v("pipeline", "--config", str(config)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list(run.glob(".bc.tmp-*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the pipeline ended before the bc stage started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "collect" / "stage.json").is_file()
    assert not (run / "bc").exists()  # a killed stage leaves no final folder
    collect_marker = (run / "collect" / "stage.json").stat().st_mtime_ns

    done = _run_r2v("pipeline", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== collect (skip: up to date)" in done.stdout
    assert (run / "collect" / "stage.json").stat().st_mtime_ns == collect_marker
    assert not list(run.glob(".*.tmp-*"))
    for stage in ("collect", "bc", "verifier", "dpo", "router", "report"):
        assert (run / stage / "stage.json").is_file(), stage

    bc = json.loads((run / "bc" / "stage.json").read_text())["stats"]
    assert bc["loss_last_epoch"] < bc["loss_first_epoch"]  # BC learned something
    dpo = json.loads((run / "dpo" / "stage.json").read_text())["stats"]
    assert dpo["pairs"] > 0 and dpo["optimiser_steps"] > 0
    # At the first step the policy is its own reference: every log-ratio is 0, the loss ln 2.
    assert dpo["dpo_loss_first"] == pytest.approx(math.log(2), abs=1e-4)
    assert dpo["js_after"] != dpo["js_before"]  # the steps changed the policy
    # Clean and perturbed views differ, so the policy's distributions do too; JS <= ln 2.
    assert 0.0 < dpo["js_before"] <= math.log(2)
    router = json.loads((run / "router" / "stage.json").read_text())["stats"]
    assert router["test_steps"] > 0
    # tau is not degenerate: on the logged SLM steps the saved router escalates some, not all
    # (a tau on tied, saturated scores once escalated none of them).
    from r2v_agent import RoutedAgent
    from r2v_agent.router.features import FEATURE_NAMES

    saved = RoutedAgent.from_pretrained(run / "router" / "agent")
    logged = [
        [step["features"][f] for f in FEATURE_NAMES]
        for episode in read_episodes(run / "router" / "rollouts.jsonl")
        for step in episode["steps"]
    ]
    p_fail = saved.router.p_fail(np.asarray(logged, dtype=np.float32))
    assert saved.threshold == pytest.approx(router["threshold"])
    share = float((p_fail > saved.threshold).mean())
    from r2v_agent.groundtruth import load_step_labels

    _, saved_labels = load_step_labels(run / "router" / "labels.json")
    if len({label for steps in saved_labels.values() for label in steps}) == 1:
        assert router["one_label"]  # nothing to rank, and the stage says so
    if router["one_label"]:  # the tiny random SLM fails every step
        assert router["failure_rate_train"] in (0.0, 1.0)
    else:
        # The budget caps tau's share of the calibration steps. Some logged steps escalate, not
        # all -- unless the top level of near-equal scores alone holds more than the budget.
        assert router["calibration_escalation_share"] <= router["budget"], router
        over_budget = router["calibration_largest_level"]["share"] > router["budget"]
        none_fit = router["calibration_escalation_share"] == 0.0 and over_budget
        assert 0.0 < share < 1.0 or (share == 0.0 and none_fit), (share, router)
    # The router learns on training-split tasks that BC and DPO never saw (fresh_tasks).
    collected = {e["env_seed"] for e in read_episodes(run / "collect" / "trajectories.jsonl")}
    routed = {e["env_seed"] for e in read_episodes(run / "router" / "rollouts.jsonl")}
    assert routed and not routed & collected
    report = (run / "report" / "report.md").read_text()
    assert "| bc+dpo |" in report and "JS clean vs perturbed" in report

    # A third run changes nothing.
    again = _run_r2v("pipeline", "--config", str(config))
    assert again.returncode == 0 and again.stdout.count("skip: up to date") == 6

    # --until stops after that stage.
    partial = _run_r2v("pipeline", "--config", str(config), "--until", "dpo")
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert partial.stdout.count("skip: up to date") == 4 and "== router" not in partial.stdout

    # --from reruns that stage and the ones after it, whatever the hashes say.
    report_marker = (run / "report" / "stage.json").stat().st_mtime_ns
    rerun = _run_r2v("pipeline", "--config", str(config), "--from", "report")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("skip: up to date") == 5 and "== report (run)" in rerun.stdout
    assert (run / "report" / "stage.json").stat().st_mtime_ns != report_marker

    # Counterfactual labels: only the router stage (and the report) rerun.
    data = yaml.safe_load(config.read_text())
    data["router"]["label"] = "counterfactual"
    data["router"]["mixed_escalation_rate"] = 0.3  # and mixed trajectories
    data["router"]["label_workers"] = 2  # played by two worker processes
    config.write_text(yaml.safe_dump(data))
    cf = _run_r2v("train", "router", "--config", str(config))
    assert cf.returncode == 0, cf.stderr[-3000:]
    stats = json.loads((run / "router" / "stage.json").read_text())["stats"]
    assert stats["label"] == "counterfactual"
    assert stats["mixed_episodes"] > 0 and stats["teacher_steps_left_out"] > 0
    mode, saved = load_step_labels(run / "router" / "labels.json")
    rollouts = list(read_episodes(run / "router" / "rollouts.jsonl"))
    assert mode == "counterfactual" and len(saved) == len(rollouts)
    assert all(len(saved[e["episode_key"]]) == len(e["steps"]) for e in rollouts)
    # The workers' labels are the ones one process playing every rollout in order gives.
    from r2v_agent.config import PipelineConfig
    from r2v_agent.training.fit_router import counterfactual_runner, fixed_policy_agent

    loaded = PipelineConfig.from_yaml(config)
    serial = counterfactual_runner(loaded, fixed_policy_agent(loaded))
    failed = [e for e in rollouts if not e["success"]]
    assert failed, "no failed router episode: the labels were not exercised"
    for episode in failed:
        expected = [int(serial(episode, t)) for t in range(len(episode["steps"]))]
        assert saved[episode["episode_key"]] == expected, episode["episode_key"]
    assert "counterfactual labels (2 workers)" in cf.stderr
    assert "router: counterfactual labels:" not in cf.stderr  # the pool's bar only, not a second
    assert (run / "dpo" / "stage.json").stat().st_mtime_ns < (
        run / "router" / "stage.json"
    ).stat().st_mtime_ns

    # The trained agent loads and plays.
    import gymnasium as gym

    import r2v_envs  # noqa: F401
    from r2v_agent.verifier.learned import LearnedVerifier

    agent = RoutedAgent.from_pretrained(run / "router" / "agent")
    assert isinstance(agent.verifier, LearnedVerifier) and agent.verifier.trained
    assert agent.threshold == pytest.approx(stats["threshold"])  # the latest router stage
    env = gym.make("R2V/TextWorld-v0", difficulty=1, expert_hints=True, max_episode_steps=3)
    obs, info = env.reset(seed=5)
    agent.reset(seed=5)
    action = agent.act(obs, info)
    assert isinstance(action, str) and agent.last_decision is not None
    assert len(agent.last_decision.candidates) == 4

    # The ablation script retrains the router stage's variants on its rollouts and labels.
    table = run / "ablations.md"
    done = subprocess.run(
        [sys.executable, "benchmarks/router_ablations.py", "--config", str(config)]
        + ["--out", str(table)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [ln for ln in table.read_text().splitlines() if ln.startswith("| ")][1:]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == [
        "all 15",
        "entropy only",
        "verifier only",
        "all - verifier",
        "all - entropy",
        "all - step position",
        "all, no CVaR term",
    ]
    assert "counterfactual labels" in table.read_text()

    # One variant saved as an agent of its own (to be evaluated like any agent): trained on the
    # SLM-only rollouts, reading the entropy features only. The run's agent stays as it was.
    agent_dir = run / "router" / "agent"
    before = {p.name: p.read_bytes() for p in agent_dir.iterdir() if p.is_file()}
    variant = tmp_path / "variants" / "entropy-slm"
    save = [sys.executable, "benchmarks/router_ablations.py", "--config", str(config)]
    save += ["--save-agent", str(variant), "--variant", "entropy only", "--rollouts", "slm"]
    saved_variant = subprocess.run(save, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert saved_variant.returncode == 0, saved_variant.stdout[-2000:] + saved_variant.stderr
    assert {p.name: p.read_bytes() for p in agent_dir.iterdir() if p.is_file()} == before
    spec = json.loads((variant / "config.json").read_text())
    assert spec["router"]["features"] == ["chosen_entropy_mean", "chosen_entropy_max"]
    assert "slm rollouts" in spec["router_note"]
    other = RoutedAgent.from_pretrained(variant)
    obs, info = env.reset(seed=6)
    other.reset(seed=6)
    assert isinstance(other.act(obs, info), str) and other.last_decision is not None
    again = subprocess.run(save, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stdout

    # A variant fitted on the stage's first tasks only: the router a smaller stage would have had.
    from r2v_agent.config import PipelineConfig
    from r2v_agent.errors import ConfigError
    from r2v_agent.training.router_ablation import load_router_stage, save_variant_agent

    router_config = PipelineConfig.from_yaml(config).router
    played = sorted({e["env_seed"] for e in load_router_stage(run)[0]})
    assert len(played) > 3  # the fit holds out tasks: it needs 3 at least
    fewer = save_variant_agent(run, router_config, tmp_path / "variants" / "fewer", tasks=3)
    full_stage = json.loads((run / "router" / "stage.json").read_text())["stats"]
    assert 0 < fewer["steps"] < full_stage["steps"]
    spec = json.loads((tmp_path / "variants" / "fewer" / "config.json").read_text())
    assert "first 3 tasks" in spec["router_note"]
    with pytest.raises(ConfigError, match="tasks must be in"):
        save_variant_agent(run, router_config, tmp_path / "variants" / "x", tasks=len(played) + 1)

    # The router stage on the llamacpp backend (the one CPU evaluations run), fitted on two
    # feature draws a state: a new stage hash, rollouts and labels played by that backend in
    # the stage and in its label workers alike, and a second draw of every SLM-acted step.
    from r2v_agent.policy.llamacpp import LlamaCppPolicy
    from r2v_agent.training.feature_draws import load_draws

    pytest.importorskip("llama_cpp")
    old_hash = json.loads((run / "router" / "stage.json").read_text())["hash"]
    data["router"]["backend"] = "llamacpp"
    data["router"]["feature_draws"] = 2
    config.write_text(yaml.safe_dump(data))
    on_llamacpp = _run_r2v("train", "router", "--config", str(config))
    assert on_llamacpp.returncode == 0, on_llamacpp.stderr[-3000:]
    stage = json.loads((run / "router" / "stage.json").read_text())
    assert stage["hash"] != old_hash and stage["stats"]["feature_draws"] == 2
    drawn = load_draws(run / "router" / "feature_draws.jsonl")
    logged = list(read_episodes(run / "router" / "rollouts.jsonl"))
    acted = [s for e in logged for s in e["steps"] if s["actor"] != "teacher"]
    assert len(drawn) == 1 and set(drawn[0]) == {e["episode_key"] for e in logged}
    # fitted on every logged SLM step, and on each redrawn one that chose the logged action
    same = [
        row is not None and row["action"] == step["action"]
        for e in logged
        for step, row in zip(e["steps"], drawn[0][e["episode_key"]], strict=True)
    ]
    assert stage["stats"]["steps"] == len(acted) + sum(same)
    # A reused draws file must hold the count asked for, not silently another.
    recount = [sys.executable, "benchmarks/router_ablations.py", "--config", str(config)]
    recount += ["--draws", str(run / "router" / "feature_draws.jsonl"), "--redraw", "2"]
    refused = subprocess.run(recount, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "holds 1 extra draw(s) a state" in refused.stdout, (
        refused.stdout
    )
    loaded = PipelineConfig.from_yaml(config)
    fixed = fixed_policy_agent(loaded)
    assert isinstance(fixed.policy, LlamaCppPolicy)
    serial = counterfactual_runner(loaded, fixed)
    _, saved = load_step_labels(run / "router" / "labels.json")
    rollouts = list(read_episodes(run / "router" / "rollouts.jsonl"))
    failed = [e for e in rollouts if not e["success"]]
    assert failed, "no failed router episode: the labels were not exercised"
    for episode in failed:
        expected = [int(serial(episode, t)) for t in range(len(episode["steps"]))]
        assert saved[episode["episode_key"]] == expected, episode["episode_key"]
    played_on = RoutedAgent.from_pretrained(run / "router" / "agent", backend="llamacpp")
    obs, info = env.reset(seed=7)
    played_on.reset(seed=7)
    assert isinstance(played_on.act(obs, info), str)

    # The backend-shift script replays the stage's states: the position features it recomputes
    # from the logged history are the ones the stage recorded.
    shift = tmp_path / "shift.md"
    done = subprocess.run(
        [sys.executable, "benchmarks/backend_feature_shift.py", "--config", str(config)]
        + ["--episodes", "4", "--out", str(shift)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = shift.read_text()
    assert "recorded ones (0: the replay reproduces the stage's states): none." in text
    summary = json.loads(shift.with_suffix(".json").read_text())["summary"]
    assert set(summary) == {"stage", "resampled", "llamacpp"}
    assert all(0.0 <= entry["share_over_tau"] <= 1.0 for entry in summary.values())


def test_single_stage_needs_its_inputs(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = _run_r2v("train", "dpo", "--config", str(config), timeout=120)
    assert done.returncode == 2
    assert "needs stage 'collect'" in done.stderr


def test_bad_config_is_a_clear_cli_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("bc: {epochs: -1}\n")
    done = _run_r2v("pipeline", "--config", str(path), timeout=120)
    assert done.returncode == 2
    assert "bc.epochs" in done.stderr and "Traceback" not in done.stderr
