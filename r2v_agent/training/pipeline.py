"""``r2v pipeline``: collect -> BC -> verifier -> DPO -> router -> report, resumable.

Each stage writes into a temporary folder next to its final one and renames it into place only
when it has finished (``<run>/<stage>/stage.json`` is written last). A stage whose folder holds a
``stage.json`` with the same config hash (:meth:`PipelineConfig.stage_hash`) is skipped, so an
interrupted pipeline resumes at the stage it was in, and a changed setting reruns the stages it
affects and those after them.

The trained agent is ``<run>/router/agent`` (``RoutedAgent.from_pretrained`` loads it); the
report is ``<run>/report/report.md`` (and ``report_path`` if set).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError, StageError
from r2v_agent.training.config import STAGES, PipelineConfig
from r2v_agent.training.trajectories import TrajectoryWriter, read_episodes

__all__ = ["run_pipeline", "run_stage", "stage_done", "agent_dir", "load_model"]

logger = logging.getLogger(__name__)


def agent_dir(config: PipelineConfig) -> Path:
    return config.run_dir / "router" / "agent"


def stage_done(config: PipelineConfig, stage: str) -> bool:
    marker = config.run_dir / stage / "stage.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("hash") == config.stage_hash(stage)
    except (OSError, json.JSONDecodeError):
        return False


def run_stage(config: PipelineConfig, stage: str, *, force: bool = False) -> dict[str, Any]:
    """Run one stage (its inputs must exist); skipped when done for this config unless ``force``."""
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    final = config.run_dir / stage
    if stage_done(config, stage) and not force:
        logger.info("stage %s: up to date, skipped", stage)
        return dict(json.loads((final / "stage.json").read_text())["stats"])
    for upstream in STAGES[: STAGES.index(stage)]:
        if not stage_done(config, upstream):
            raise StageError(
                f"stage {stage!r} needs stage {upstream!r} to be done for this config first "
                f"(run `r2v pipeline --config ...`, or that stage)"
            )
    config.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in config.run_dir.glob(f".{stage}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{stage}.tmp-", dir=config.run_dir))
    start = time.perf_counter()
    try:
        stats = _RUNNERS[stage](config, work)
        stats["seconds"] = round(time.perf_counter() - start, 1)
        marker = {
            "stage": stage,
            "hash": config.stage_hash(stage),
            "stats": stats,
            "config": config.to_dict(),
        }
        (work / "stage.json").write_text(json.dumps(marker, indent=2, default=_jsonable))
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    # Later stages built on the old output are stale now.
    for later in STAGES[STAGES.index(stage) + 1 :]:
        marker_path = config.run_dir / later / "stage.json"
        if marker_path.exists() and not stage_done(config, later):
            logger.info("stage %s: outdated by %s", later, stage)
    return stats


def run_pipeline(
    config: PipelineConfig,
    *,
    force: bool = False,
    rerun_from: str | None = None,
    until: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every stage, skipping the up-to-date ones; ``force`` reruns all of them and
    ``rerun_from`` reruns that stage and every one after it (after a code change, say); given
    both, ``rerun_from`` decides where forcing starts. ``until`` stops after that stage (the
    demo skips the report, whose held-out evaluation ``r2v eval`` does at a larger scale)."""
    for name, value in (("rerun_from", rerun_from), ("until", until)):
        if value is not None and value not in STAGES:
            raise ConfigError(f"{name}: unknown stage {value!r}; stages are {STAGES}")
    first_forced = STAGES.index(rerun_from) if rerun_from else (0 if force else len(STAGES))
    last = STAGES.index(until) if until else len(STAGES) - 1
    results = {}
    for i, stage in enumerate(STAGES[: last + 1]):
        forced = i >= first_forced
        skip = stage_done(config, stage) and not forced
        print(f"== {stage} ({'skip: up to date' if skip else 'run'})")
        results[stage] = run_stage(config, stage, force=forced)
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------------------------- helpers
def load_model(source: str, seed: int) -> tuple[Any, Any]:
    from r2v_agent.policy.models import load_model_and_tokenizer

    return load_model_and_tokenizer(source, seed=seed)


def _family(config: PipelineConfig) -> str:
    from r2v_agent.policy.prompts import format_for

    return format_for(config.env.id).family


def _fmt(config: PipelineConfig) -> Any:
    from r2v_agent.training.datasets import prompt_format

    return prompt_format(config.env.id, config.policy.history_chars)


def _episodes(config: PipelineConfig) -> list[dict[str, Any]]:
    return list(read_episodes(config.run_dir / "collect" / "trajectories.jsonl"))


def _sampler(config: PipelineConfig, source: str, *, keep_base: bool = False) -> Any:
    from r2v_agent.policy.sampler import TransformersPolicy

    model, tokenizer = load_model(source, config.seed)
    return TransformersPolicy(
        model,
        tokenizer,
        k=config.policy.k,
        temperature=config.policy.temperature,
        seed=config.seed,
        quantize=config.policy.quantize,
        keep_base=keep_base or config.policy.quantize is None,
        entropy_top_k=config.policy.entropy_top_k,
    )


def _verifier(config: PipelineConfig) -> Any:
    from r2v_agent.verifier.learned import LearnedVerifier

    return LearnedVerifier.load(config.run_dir / "verifier" / "verifier.safetensors")


def _agent(
    config: PipelineConfig,
    source: str,
    router: Any,
    *,
    teacher: Any = None,
    keep_base: bool = False,
    threshold: float = 1.0,
) -> Any:
    from r2v_agent.agent import RoutedAgent

    return RoutedAgent(
        _sampler(config, source, keep_base=keep_base),
        router,
        teacher,
        threshold=threshold,
        family=_family(config),
        max_steps=config.env.max_steps,
        policy_source=source,
        verifier=_verifier(config),
        history_chars=config.policy.history_chars,
    )


# ---------------------------------------------------------------------------------- stages
def _collect(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.training.collect import collect

    return collect(config, out)


def _bc(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.training.bc import build_examples, save_policy, train_bc
    from r2v_agent.training.datasets import step_views

    model, tokenizer = load_model(config.policy.base, config.seed)
    views = list(step_views(_episodes(config), _fmt(config)))
    examples = build_examples(views, tokenizer, max_tokens=config.bc.max_tokens)
    model, stats = train_bc(model, tokenizer, examples, config.bc, seed=config.seed)
    save_policy(model, tokenizer, out / "policy")
    return stats


def _verifier_stage(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.agent import MAX_NEW_TOKENS
    from r2v_agent.training.datasets import step_views
    from r2v_agent.training.verifier import ProgressProbe, sample_states, save_samples, train_head
    from r2v_agent.verifier.learned import LearnedVerifier

    episodes = _episodes(config)
    fmt = _fmt(config)
    views = list(step_views(episodes, fmt))
    clean_actions = {
        e["env_seed"]: [s["action"] for s in e["steps"]]
        for e in episodes
        if e["perturbation"] is None
    }
    policy = _sampler(config, str(config.run_dir / "bc" / "policy"))
    probe = (
        ProgressProbe(config.env.id, config.env.kwargs, config.env.max_steps)
        if fmt.family == "textworld"
        else None
    )
    try:
        samples = sample_states(
            views,
            policy,
            fmt,
            n_states=config.verifier.states,
            clean_actions=clean_actions,
            probe=probe,
            max_new_tokens=MAX_NEW_TOKENS[fmt.family],
            seed=config.seed,
        )
    finally:
        if probe is not None:
            probe.close()
    save_samples(samples, out / "samples.jsonl")
    verifier = LearnedVerifier(fmt.family, encoder=config.verifier.encoder)
    report = train_head(
        verifier,
        samples,
        epochs=config.verifier.epochs,
        learning_rate=config.verifier.learning_rate,
        heldout_fraction=config.verifier.heldout_fraction,
        seed=config.seed,
    )
    verifier.save(out / "verifier.safetensors")
    report["bc_sample_success_rate"] = sum(sum(s["labels"]) for s in samples) / max(
        1, sum(len(s["labels"]) for s in samples)
    )
    return report


def _dpo(config: PipelineConfig, out: Path) -> dict[str, Any]:
    import copy

    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig

    from r2v_agent.training.bc import freeze_below, save_policy
    from r2v_agent.training.datasets import step_views
    from r2v_agent.training.dpo import (
        consistency_dpo_trainer,
        consistency_js,
        consistency_pairs,
        preference_pairs,
    )
    from r2v_agent.training.verifier import load_samples

    cfg = config.dpo
    model, tokenizer = load_model(str(config.run_dir / "bc" / "policy"), config.seed)
    verifier = _verifier(config)
    samples = load_samples(config.run_dir / "verifier" / "samples.jsonl")
    pairs = preference_pairs(samples, verifier, tokenizer, margin=cfg.margin, limit=cfg.states)
    if not pairs:
        raise StageError(
            f"dpo: no candidate pair differs by the margin {cfg.margin} in verifier score over "
            f"{min(cfg.states, len(samples))} states; lower dpo.margin or sample more states"
        )
    views = list(step_views(_episodes(config), _fmt(config)))
    consistency = consistency_pairs(views, limit=cfg.consistency_pairs, seed=config.seed)
    js_before = consistency_js(model, tokenizer, consistency)
    reference = copy.deepcopy(model).eval()
    freeze_below(model, config.bc.train_layers)
    args = TRLDPOConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=config.seed,
        max_length=1024,
    )
    trainer = consistency_dpo_trainer()(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        consistency=consistency,
        mu=cfg.mu,
    )
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    model = trainer.model.eval()
    js_after = consistency_js(model, tokenizer, consistency)
    save_policy(model, tokenizer, out / "policy")
    shutil.rmtree(out / "trl", ignore_errors=True)

    def mean_of(key: str, rows: list[dict[str, Any]]) -> float:
        values = [float(r[key]) for r in rows if key in r]
        return sum(values) / len(values) if values else math.nan

    head, tail = logs[: max(1, len(logs) // 4)], logs[-max(1, len(logs) // 4) :]
    return {
        "pairs": len(pairs),
        "consistency_pairs": len(consistency),
        "optimiser_steps": len(logs),
        "mu": cfg.mu,
        "beta": cfg.beta,
        "js_before": js_before,
        "js_after": js_after,
        "dpo_loss_first": mean_of("loss", head),
        "dpo_loss_last": mean_of("loss", tail),
        "reward_margin_first": mean_of("rewards/margins", head),
        "reward_margin_last": mean_of("rewards/margins", tail),
        "reward_accuracy_last": mean_of("rewards/accuracies", tail),
        "js_term_first": mean_of("consistency/js", head),
        "js_term_last": mean_of("consistency/js", tail),
    }


def _counterfactual(config: PipelineConfig, agent: Any) -> Callable[[dict[str, Any], int], bool]:
    """Replay an episode to step t, let the teacher act there, then the SLM to the end."""
    from r2v_agent.training.episodes import make_env

    envs: dict[Any, Any] = {}  # one env per perturbation seed: starting a game is the slow part

    def run(episode: dict[str, Any], t: int) -> bool:
        z = episode["perturbation_seed"]
        if z not in envs:
            envs[z] = make_env(
                config.env.id,
                kwargs=config.env.kwargs,
                split="train",
                max_steps=config.env.max_steps,
                perturbation=episode["perturbation"],
                perturbation_seed=z,
            )
        env = envs[z]
        observation, info = env.reset(seed=episode["env_seed"])
        agent.reset(seed=config.seed)
        for step in episode["steps"][:t]:
            agent.record(observation, step["action"])
            observation, _, terminated, truncated, info = env.step(step["action"])
            if terminated or truncated:
                return False
        teacher_action = info.get("expert_action") or episode["steps"][t]["action"]
        agent.record(observation, teacher_action)
        observation, _, terminated, truncated, info = env.step(teacher_action)
        while not (terminated or truncated):
            observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
        return bool(info.get("success"))

    return run


def _router(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.router.baselines import NeverEscalate
    from r2v_agent.teacher.oracle import OracleTeacher
    from r2v_agent.training.router import (
        LABELS_FILE,
        fit_router,
        rollout,
        save_step_labels,
        step_labels,
    )

    policy_dir = str(config.run_dir / "dpo" / "policy")
    agent = _agent(config, policy_dir, NeverEscalate(), keep_base=True)
    if config.router.fresh_tasks:  # unseen by BC and DPO: the failures deployment will meet
        first = config.env.train_tasks
        tasks = list(range(first, first + (config.router.tasks or config.env.train_tasks)))
    else:
        n = min(config.router.tasks or config.env.train_tasks, config.env.train_tasks)
        tasks = list(range(n))
    seeds: list[int | None] = list(range(1, config.env.perturbation_seeds + 1))

    def play(name: str, desc: str) -> list[dict[str, Any]]:
        return rollout(
            agent,
            env_id=config.env.id,
            env_kwargs=config.env.kwargs,
            split="train",
            tasks=tasks,
            perturbation=config.env.perturbation,
            perturbation_seeds=seeds,
            max_steps=config.env.max_steps,
            agent_name=name,
            desc=desc,
        )

    episodes = play("slm", "router: SLM rollouts")
    rate = config.router.mixed_escalation_rate
    if rate > 0:  # mixed trajectories: the same tasks with seeded random escalations
        from r2v_agent.router.baselines import RandomRouter

        agent.router, agent.threshold = RandomRouter(rate, config.seed), 0.5
        agent.teacher = OracleTeacher()
        episodes += play("mixed", f"router: mixed rollouts ({rate:.0%} random escalations)")
        agent.router, agent.teacher = NeverEscalate(), None
    with TrajectoryWriter(out / "rollouts.jsonl") as writer:
        for episode in episodes:
            writer.write(episode)
    counterfactual = (
        _counterfactual(config, agent) if config.router.label == "counterfactual" else None
    )
    labels = step_labels(episodes, config.router.label, counterfactual)
    save_step_labels(out / LABELS_FILE, episodes, labels, config.router.label)
    router, report, heldout = fit_router(episodes, labels, config.router, seed=config.seed)
    agent.router = router
    agent.threshold = report["threshold"]
    agent.teacher = OracleTeacher()
    agent.save_pretrained(out / "agent")
    slm_only = [e for e in episodes if e["agent"] == "slm"]
    report["slm_rollout_success"] = sum(e["success"] for e in slm_only) / len(slm_only)
    report["mixed_escalation_rate"] = rate
    report["mixed_episodes"] = len(episodes) - len(slm_only)
    import numpy as np

    np.savez(out / "heldout_predictions.npz", p=heldout["p"], y=heldout["y"])
    return report


def _report(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent import metrics
    from r2v_agent.router.baselines import NeverEscalate
    from r2v_agent.router.model import MLPRouter
    from r2v_agent.teacher.oracle import OracleTeacher
    from r2v_agent.training.router import rollout

    n = config.eval.episodes or config.env.heldout_tasks
    tasks = list(range(min(n, config.env.heldout_tasks)))
    # Perturbation seed 1000 + i: never one of the training seeds (1..N).
    results: dict[str, Any] = {}
    router = MLPRouter.load(agent_dir(config) / "router.safetensors")
    tau = json.loads((agent_dir(config) / "config.json").read_text())["threshold"]
    runs = [
        ("base", config.policy.base, NeverEscalate(), None, 1.0),
        ("bc", str(config.run_dir / "bc" / "policy"), NeverEscalate(), None, 1.0),
        ("bc+dpo", str(config.run_dir / "dpo" / "policy"), NeverEscalate(), None, 1.0),
        ("r2v", str(config.run_dir / "dpo" / "policy"), router, OracleTeacher(), tau),
    ]
    all_episodes = []
    for name, source, route, teacher, threshold in runs:
        agent = _agent(config, source, route, teacher=teacher, threshold=threshold)
        episodes = []
        for task in tasks:
            episodes += rollout(
                agent,
                env_id=config.env.id,
                env_kwargs=config.env.kwargs,
                split="test",
                tasks=[task],
                perturbation=config.env.perturbation if config.eval.perturbed else None,
                perturbation_seeds=[1000 + task] if config.eval.perturbed else [None],
                max_steps=config.env.max_steps,
                agent_name=name,
                desc=f"report: {name}",
            )
        successes = [e["success"] for e in episodes]
        mean, low, high = metrics.bootstrap_ci([float(s) for s in successes], seed=config.seed)
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
        "## Held-out tasks (perturbed, one perturbation seed per task, never seen in training)",
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


_RUNNERS: dict[str, Callable[[PipelineConfig, Path], dict[str, Any]]] = {
    "collect": _collect,
    "bc": _bc,
    "verifier": _verifier_stage,
    "dpo": _dpo,
    "router": _router,
    "report": _report,
}
