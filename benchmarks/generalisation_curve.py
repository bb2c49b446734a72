"""Held-out SLM-only success as a function of the number of BC training games (issue #16).

    python benchmarks/generalisation_curve.py --config benchmarks/configs/textworld-cpu-fresh.yaml \
        --games 40,160,480 --commands on --out benchmarks/results/generalisation-textworld

For each number of training games N, the config's collect and BC stages run with
``env.train_tasks = N`` (in their own run folder, so each point resumes by its stage hash), with
the *same* number of BC examples and epochs at every point: more games, not more training. The
BC policy then plays alone (K samples a step, the rule verifier picks, never escalates) on

* held-out games (the 'test' split, seeds 0..H-1) under the config's perturbation, and
* the first T training games it was cloned on (the memorisation check),

and the script prints and writes the curve: success with a 95 % CI that resamples games (the
episodes of one game share its difficulty). ``--commands on`` ends every TextWorld observation
with the game's admissible commands (``show_commands``), a stated setting of the benchmark.
Episodes go to ``curve.jsonl`` as they finish; a rerun skips the episodes already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import ConfigError, R2VAgentError
from r2v_agent.metrics import cluster_bootstrap_ci


def point_config(
    base: PipelineConfig,
    games: int,
    *,
    commands: bool,
    examples: int,
    epochs: int,
    perturbation_seeds: int,
    run_root: Path,
    k: int | None = None,
    action_log: bool = False,
    dagger: int = 0,
    lora: bool = False,
    learning_rate: float | None = None,
) -> tuple[PipelineConfig, str]:
    """The base config with N training games and the curve's fixed BC budget (and, if given,
    K samples a step instead of the base config's, the prompt's action log, DAgger rounds
    after BC, each of the same budget, LoRA adapters on every block instead of the top blocks'
    weights, and a BC learning rate), and the point's label (``{setting}/games-{N}``)."""
    kwargs = dict(base.env.kwargs)
    if is_textworld(base):
        kwargs["show_commands"] = commands
    elif commands:
        raise ConfigError(f"--commands on is a TextWorld setting; {base.env.id} has none")
    env = dataclasses.replace(
        base.env, train_tasks=games, kwargs=kwargs, perturbation_seeds=perturbation_seeds
    )
    if learning_rate is not None and not learning_rate > 0:
        raise ConfigError(f"--learning-rate must be > 0, got {learning_rate}")
    lr = base.bc.learning_rate if learning_rate is None else learning_rate
    bc = dataclasses.replace(
        base.bc,
        max_examples=examples,
        epochs=epochs,
        dagger_rounds=dagger,
        lora=lora or base.bc.lora,
        learning_rate=lr,
    )
    policy = dataclasses.replace(
        base.policy, k=base.policy.k if k is None else k, action_log=action_log
    )
    tag = setting_tag(
        commands,
        examples,
        epochs,
        k if k != base.policy.k else None,
        action_log,
        dagger,
        lora=bc.lora and not base.bc.lora,
        learning_rate=lr if lr != base.bc.learning_rate else None,
    )
    out = run_root / f"{base.name}-{tag}" / f"games-{games}"
    config = dataclasses.replace(base, env=env, bc=bc, policy=policy, output_dir=str(out.resolve()))
    return config, f"{tag}/games-{games}"


def is_textworld(config: PipelineConfig) -> bool:
    return "textworld" in config.env.id.lower()


#: The curve's BC budget; a point trained on another budget says so in its label.
DEFAULT_EXAMPLES, DEFAULT_EPOCHS = 640, 1


def setting_tag(
    commands: bool,
    examples: int,
    epochs: int,
    k: int | None = None,
    action_log: bool = False,
    dagger: int = 0,
    *,
    lora: bool = False,
    learning_rate: float | None = None,
) -> str:
    """``commands`` / ``plain``, plus ``+log`` when the prompt names the earlier actions,
    ``+dagger{R}`` for R DAgger rounds, ``+{N}ex`` / ``x{E}ep`` for a non-default BC budget,
    ``+K{k}`` for a non-default number of samples a step, ``+lora`` for LoRA adapters and
    ``+lr{x}`` for a learning rate other than the config's."""
    tag = "commands" if commands else "plain"
    if action_log:
        tag += "+log"
    if dagger:
        tag += f"+dagger{dagger}"
    if examples != DEFAULT_EXAMPLES:
        tag += f"+{examples}ex"
    if epochs != DEFAULT_EPOCHS:
        tag += f"x{epochs}ep"
    if k is not None:
        tag += f"+K{k}"
    if lora:
        tag += "+lora"
    if learning_rate is not None:
        tag += f"+lr{learning_rate:g}"
    return tag


def train_point(config: PipelineConfig) -> dict[str, Any]:
    from r2v_agent.training.pipeline import run_stage

    run_stage(config, "collect")
    return run_stage(config, "bc")


def slm_actor(config: PipelineConfig, seed: int) -> Any:
    """The BC policy alone on llama.cpp: K candidates, the rule verifier picks, no escalation."""
    from r2v_agent.training.components import solo_agent

    return solo_agent(config, config.run_dir / "bc" / "policy", backend="llamacpp", seed=seed)


def evaluate_point(
    config: PipelineConfig,
    *,
    label: str,
    heldout: int,
    seeds: list[int],
    train_check: int,
    out: Path,
    done: set[str],
) -> None:
    from r2v_agent.rollout import make_env, play_episode
    from r2v_agent.trajectories import TrajectoryWriter

    plan = [("test", z, t) for z in seeds for t in range(heldout)]
    plan += [("train", seeds[0], t) for t in range(min(train_check, config.env.train_tasks))]
    todo = [(s, z, t) for s, z, t in plan if f"{label}/{s}/{z}/{t}" not in done]
    if not todo:
        return
    actor = slm_actor(config, config.seed)
    envs: dict[tuple[str, int], Any] = {}
    with TrajectoryWriter(out) as writer:
        for split, z, task in tqdm(todo, desc=label, unit="episode"):
            if (split, z) not in envs:
                envs[split, z] = make_env(
                    config.env.id,
                    kwargs=config.env.kwargs,
                    split=split,
                    max_steps=config.env.max_steps,
                    perturbation=config.env.perturbation,
                    perturbation_seed=z,
                )
            key = f"{label}/{split}/{z}/{task}"
            record = play_episode(
                envs[split, z],
                actor,
                env_id=config.env.id,
                env_seed=task,
                agent_name="slm",
                episode_key=key,
                perturbation=config.env.perturbation,
                perturbation_seed=z,
                actor_seed=task,
                extra={"point": label, "split": split, "env_kwargs": config.env.kwargs},
            )
            writer.write(record)
            done.add(key)


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (point, split): success, its game-clustered CI, episodes, games."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        extra = record["extra"]
        groups.setdefault((extra["point"], extra["split"]), []).append(record)
    rows = []
    for (point, split), group in sorted(groups.items(), key=lambda kv: _point_order(kv[0])):
        values = [float(r["success"]) for r in group]
        games = [r["env_seed"] for r in group]
        mean, low, high = cluster_bootstrap_ci(values, games)
        rows.append(
            {
                "point": point,
                "split": "held-out" if split == "test" else "training games",
                "episodes": len(group),
                "games": len(set(games)),
                "success": mean,
                "ci_low": low,
                "ci_high": high,
                "mean_steps": sum(len(r["steps"]) for r in group) / len(group),
            }
        )
    return rows


def _point_order(key: tuple[str, str]) -> tuple[str, int, str]:
    tag, _, games = key[0].partition("/")
    return tag, int(games.removeprefix("games-") or 0), key[1]


def render(rows: list[dict[str, Any]], bc_stats: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| setting | training games | split | success | 95% CI (games) | episodes | games | "
        "mean steps | BC examples | BC loss (last epoch) |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        tag, _, games = row["point"].partition("/")
        stats = bc_stats.get(row["point"], {})
        loss = stats.get("loss_last_epoch")
        examples = stats.get("examples", "?")
        if stats.get("dagger"):  # the last round's training: a sample of expert + relabelled
            last = stats["dagger"][-1]
            loss = last["loss_last_epoch"]
            examples = f"{last['examples']} of {last['pool']} (DAgger)"
        lines.append(
            f"| {tag} | {games.removeprefix('games-')} | {row['split']} | {row['success']:.3f} | "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] | {row['episodes']} | {row['games']} | "
            f"{row['mean_steps']:.1f} | {examples} | "
            f"{'?' if loss is None else f'{loss:.3f}'} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["point"].partition("/")[0], row["split"]), []).append(row)
    # One colour a setting (its two splits share it: solid held-out, dashed training games).
    tags = sorted({tag for tag, _ in series})
    palette = plt.get_cmap("tab10" if len(tags) <= 10 else "tab20")
    colour = {tag: palette(i % palette.N) for i, tag in enumerate(tags)}
    ticks: set[int] = set()
    for i, ((tag, split), points) in enumerate(sorted(series.items())):
        xs = [int(p["point"].partition("/")[2].removeprefix("games-")) for p in points]
        ticks.update(xs)
        dodge = 1.0 + 0.015 * (i - (len(series) - 1) / 2)  # overlapping error bars apart
        ys = [p["success"] for p in points]
        err = [
            [p["success"] - p["ci_low"] for p in points],
            [p["ci_high"] - p["success"] for p in points],
        ]
        held_out = split == "held-out"
        ax.errorbar(
            [x * dodge for x in xs],
            ys,
            yerr=err,
            fmt="-o" if held_out else "--s",
            color=colour[tag],
            alpha=1.0 if held_out else 0.55,
            capsize=3,
            label=f"{tag}, {split}",
        )
    ax.axhspan(0.35, 0.70, color="green", alpha=0.08, label="target band (held-out)")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("BC training games (along a line: the same BC examples and epochs)")
    ax.set_ylabel("SLM-only success (perturbed)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the base pipeline config")
    parser.add_argument("--games", default="40,160,480", help="training-game counts, e.g. 40,160")
    parser.add_argument(
        "--commands",
        choices=("on", "off"),
        default=None,
        help="TextWorld: end observations with the admissible commands (default on); other envs: off",
    )
    parser.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="BC examples at every point"
    )
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="BC epochs at every point"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="samples a step (default: the config's policy.k)"
    )
    parser.add_argument(
        "--action-log",
        choices=("on", "off"),
        default="off",
        help="name the actions of the steps the history budget drops (policy.action_log)",
    )
    parser.add_argument(
        "--dagger", type=int, default=0, help="DAgger rounds after BC (bc.dagger_rounds)"
    )
    parser.add_argument(
        "--lora",
        action="store_true",
        help="BC trains LoRA adapters on every block (bc.lora) instead of the top blocks' weights",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="BC learning rate (default: config's)"
    )
    parser.add_argument(
        "--perturbation-seeds", type=int, default=2, help="perturbed replays per training game"
    )
    parser.add_argument("--heldout", type=int, default=20, help="held-out games")
    parser.add_argument("--seeds", default="1,2", help="perturbation seeds of the held-out games")
    parser.add_argument("--train-check", type=int, default=10, help="training games replayed")
    parser.add_argument("--run-root", default="runs/generalisation", help="stage folders")
    parser.add_argument("--out", required=True, help="results folder (curve.jsonl, .md, .png)")
    parser.add_argument("--train-only", action="store_true", help="train the points, play none")
    args = parser.parse_args(argv)

    from r2v_agent.trajectories import read_episodes

    try:
        base = PipelineConfig.from_yaml(args.config)
        games = sorted({int(g) for g in args.games.split(",")})
        seeds = [int(z) for z in args.seeds.split(",")]
        commands = args.commands == "on" if args.commands else is_textworld(base)
        # Every point's config up front: a bad option fails here, before any training.
        points = [
            point_config(
                base,
                n,
                commands=commands,
                examples=args.examples,
                epochs=args.epochs,
                perturbation_seeds=args.perturbation_seeds,
                run_root=Path(args.run_root),
                k=args.k,
                action_log=args.action_log == "on",
                dagger=args.dagger,
                lora=args.lora,
                learning_rate=args.learning_rate,
            )
            for n in games
        ]
    except (R2VAgentError, ValueError) as exc:
        print(f"generalisation_curve: error: {exc}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodes_path = out / "curve.jsonl"
    records = list(read_episodes(episodes_path)) if episodes_path.exists() else []
    done = {r["episode_key"] for r in records}
    bc_stats: dict[str, dict[str, Any]] = {}
    for config, label in points:
        print(f"== {label}: collect + BC in {config.run_dir}")
        bc_stats[label] = train_point(config)
        if not args.train_only:
            evaluate_point(
                config,
                label=label,
                heldout=args.heldout,
                seeds=seeds,
                train_check=args.train_check,
                out=episodes_path,
                done=done,
            )
    records = list(read_episodes(episodes_path)) if episodes_path.exists() else []
    stats_path = out / "bc_stats.json"
    saved = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    saved.update(bc_stats)
    stats_path.write_text(json.dumps(saved, indent=1, sort_keys=True))
    rows = summarise(records)
    table = render(rows, saved)
    print(table)
    (out / "curve.md").write_text(table)
    if rows:
        plot(rows, out / "curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
