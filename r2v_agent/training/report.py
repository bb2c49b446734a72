"""``r2v report``: the held-out evaluation of the pipeline's policies (base, BC, BC+DPO, R2V)
and the Markdown report of every stage."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2v_agent.config import STAGES, PipelineConfig
from r2v_agent.training import components
from r2v_agent.trajectories import TrajectoryWriter

__all__ = ["run", "render_report"]


def run(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent import metrics
    from r2v_agent.evaluation.run import EvalSettings, Job, evaluation_seeds, play_job
    from r2v_agent.router.baselines import NeverEscalate
    from r2v_agent.router.model import MLPRouter
    from r2v_agent.teacher.oracle import OracleTeacher

    n = config.eval.episodes or config.env.heldout_tasks
    tasks = list(range(min(n, config.env.heldout_tasks)))
    perturbed = config.eval.perturbed
    # r2v eval's path and seed rule: the same env, seeds and records as a benchmark run.
    settings = EvalSettings(
        agent_dir=str(config.agent_dir),
        env_id=config.env.id,
        out=str(out / "eval_episodes.jsonl"),
        methods=[],
        env_kwargs=config.env.kwargs,
        split="test",
        tasks=tasks,
        perturbation=config.env.perturbation if perturbed else None,
        perturbation_seeds=evaluation_seeds(config.eval.seeds, perturbed=perturbed),
        max_steps=config.env.max_steps,
        seed=config.seed,
    )
    results: dict[str, Any] = {}
    router = MLPRouter.load(config.agent_dir / "router.safetensors")
    tau = json.loads((config.agent_dir / "config.json").read_text())["threshold"]
    runs = [
        ("base", config.policy.base, NeverEscalate(), None, 1.0),
        ("bc", str(config.run_dir / "bc" / "policy"), NeverEscalate(), None, 1.0),
        ("bc+dpo", str(config.run_dir / "dpo" / "policy"), NeverEscalate(), None, 1.0),
        ("r2v", str(config.run_dir / "dpo" / "policy"), router, OracleTeacher(), tau),
    ]
    all_episodes = []
    for name, source, route, teacher, threshold in runs:
        agent = components.agent(config, source, route, teacher=teacher, threshold=threshold)
        jobs = [Job(name, t, z) for z in settings.perturbation_seeds for t in tasks]
        episodes = [
            play_job(job, agent, settings, extra={"method": name, "split": "test"})
            for job in tqdm(jobs, desc=f"report: {name}", unit="episode")
        ]
        successes = [float(e["success"]) for e in episodes]
        # Episodes of one game share its difficulty: the CI resamples games.
        mean, low, high = metrics.cluster_bootstrap_ci(
            successes, [e["env_seed"] for e in episodes], seed=config.seed
        )
        steps = sum(len(e["steps"]) for e in episodes)
        results[name] = {
            "episodes": len(episodes),
            "success": mean,
            "ci_low": low,
            "ci_high": high,
            "llm_share": sum(e["escalations"] for e in episodes) / max(1, steps),
            "steps": steps,
        }
        all_episodes += episodes
    with TrajectoryWriter(out / "eval_episodes.jsonl") as writer:
        for episode in all_episodes:
            writer.write(episode)
    stages = {
        s: json.loads((config.run_dir / s / "stage.json").read_text())["stats"] for s in STAGES[:-1]
    }
    text = render_report(config, stages, results)
    (out / "report.md").write_text(text)
    if config.report_path:
        target = config.resolve(config.report_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return {"heldout": results}


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_report(
    config: PipelineConfig, stages: dict[str, dict[str, Any]], heldout: dict[str, Any]
) -> str:
    c, b, v, d, r = (stages[s] for s in ("collect", "bc", "verifier", "dpo", "router"))
    lines = [
        f"# R2V pipeline report: {config.name}",
        "",
        f"Env `{config.env.id}` {json.dumps(config.env.kwargs)}, perturbation `{config.env.perturbation}` "
        f"x {config.env.perturbation_seeds} seeds, {config.env.train_tasks} training tasks, "
        f"{config.env.heldout_tasks} held-out tasks, max {config.env.max_steps} steps. "
        f"Base SLM `{config.policy.base}`, K={config.policy.k}.",
        "",
        "## Held-out tasks (never seen in training; perturbation seeds 100.., as `r2v eval`)",
        "",
        "| policy | episodes | success | 95% CI | LLM-call share |",
        "|---|---|---|---|---|",
    ]
    for name, row in heldout.items():
        lines.append(
            f"| {name} | {row['episodes']} | {_f(row['success'])} | [{_f(row['ci_low'])}, {_f(row['ci_high'])}] | {_f(row['llm_share'])} |"
        )
    lines += [
        "",
        "## Stages",
        "",
        "| stage | figure | value |",
        "|---|---|---|",
        f"| collect | teacher success clean / perturbed | {_f(c['teacher_clean_success'])} / {_f(c['teacher_perturbed_success'])} |",
        f"| collect | episodes / steps | {c['episodes']} / {c['steps']} |",
        f"| bc | examples x epochs | {b['examples']} x {b['epochs']} |",
        f"| bc | action loss first -> last epoch | {_f(b['loss_first_epoch'])} -> {_f(b['loss_last_epoch'])} |",
        f"| verifier | held-out AUROC (target >= 0.8) | {_f(v.get('heldout_auroc'))} |",
        f"| verifier | held-out Brier / ECE | {_f(v.get('heldout_brier'))} / {_f(v.get('heldout_ece'))} |",
        f"| verifier | rule prior's held-out AUROC | {_f(v.get('rule_prior_auroc'))} |",
        f"| verifier | labelled actions (positive rate) | {v['labelled_actions']} ({_f(v['positive_rate'])}) |",
        f"| dpo | pairs / consistency pairs | {d['pairs']} / {d['consistency_pairs']} |",
        f"| dpo | DPO loss first -> last | {_f(d['dpo_loss_first'])} -> {_f(d['dpo_loss_last'])} |",
        f"| dpo | reward margin first -> last | {_f(d['reward_margin_first'])} -> {_f(d['reward_margin_last'])} |",
        f"| dpo | JS clean vs perturbed, before -> after DPO | {_f(d['js_before'], 4)} -> {_f(d['js_after'], 4)} |",
        f"| router | steps train / calibration / test | {r['train_steps']} / {r['calibration_steps']} / {r['test_steps']} |",
        f"| router | failure rate (test) | {_f(r['failure_rate_test'])} |",
        f"| router | test Brier (base-rate predictor) | {_f(r['test_brier'])} ({_f(r['test_brier_base_rate'])}) |",
        f"| router | test ECE (target <= 0.05), uncalibrated | {_f(r['test_ece'])}, {_f(r['test_ece_uncalibrated'])} |",
        f"| router | test AUROC | {_f(r['test_auroc'])} |",
        f"| router | CVaR term active (lambda, alpha) | {r['cvar_active']} ({r['cvar_weight']}, {r['cvar_alpha']}) |",
        f"| router | calibration / tau ({r['target']}) | {r['calibration']} / {_f(r['threshold'])} |",
        f"| router | test escalation share / residual failure at tau | {_f(r['test_escalation_share'])} / {_f(r['test_residual_failure'])} |",
        "",
        "### Router reliability (test steps)",
        "",
        "| bin | steps | mean p | observed failure |",
        "|---|---|---|---|",
    ]
    for bin_ in r["reliability_bins"]:
        lines.append(
            f"| [{bin_['lower']:.1f}, {bin_['upper']:.1f}) | {bin_['count']} | {bin_['mean_predicted']:.3f} | {bin_['observed_rate']:.3f} |"
        )
    seconds = {s: stages[s].get("seconds") for s in stages}
    lines += [
        "",
        "## Time per stage (s)",
        "",
        " | ".join(f"{k}: {_f(v, 0)}" for k, v in seconds.items()),
        "",
    ]
    return "\n".join(lines)
