"""What the router's features buy, on a pipeline run's own router-stage rollouts.

    python benchmarks/router_ablations.py --config benchmarks/configs/textworld-cpu-fresh.yaml \
        [--out benchmarks/results/NAME/ablations.md]

Trains the run's router configuration on feature subsets (entropy only, verifier only, all 15,
all minus the verifier / entropy / step-position groups) and without the CVaR term, on the same
steps, labels, seed and task split as the router stage (`r2v_agent/training/router_ablation.py`),
and prints held-out AUROC, Brier (and the base rate's), ECE, the share tau escalates, the
residual failure and whether the CVaR term binds. ``--splits N`` refits every variant on N
task splits and adds their means and paired differences from all 15 (one split's held-out
tasks may hold only a handful of failing steps). The frontier each variant yields needs
evaluation episodes per variant: ``--save-agent DIR`` fits one variant (``--variant``, and
``--rollouts slm`` for a router trained on the SLM-only rollouts alone, without the mixed ones)
and saves the run's agent with it, to be evaluated with ``benchmarks/run.py --agent DIR``:

    python benchmarks/router_ablations.py --config benchmarks/configs/textworld-main.yaml \
        --save-agent runs/textworld-main-variants/slm-only --rollouts slm

Feature draws (``router.feature_draws``) on a run whose stage recorded one: ``--redraw N
--draws FILE`` samples every SLM-acted state of the stage N more times (``--draw-backend``),
writes the draws to FILE (reused when it exists) and fits every variant on them too;
``--draws FILE`` alone reuses a file; ``--no-draws`` fits on the recorded draw only.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import ConfigError, R2VAgentError
from r2v_agent.training.fit_router import slm_steps
from r2v_agent.training.router_ablation import (
    ABLATIONS,
    ROLLOUTS,
    draws_comparison,
    load_router_stage,
    render_draws_comparison,
    render_repeated_table,
    render_table,
    repeated_ablations,
    run_ablations,
    save_variant_agent,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline config of a finished run")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    parser.add_argument(
        "--save-agent",
        default=None,
        help="instead of the table: save the run's agent with one variant",
    )
    parser.add_argument("--variant", default="all 15", choices=list(ABLATIONS))
    parser.add_argument(
        "--rollouts", default="all", choices=ROLLOUTS, help="router-stage rollouts to train on"
    )
    parser.add_argument(
        "--splits",
        type=int,
        default=0,
        help="also fit every variant on N task splits (seeds seed..seed+N-1; the first is the "
        "stage's own) and add a table of means and paired differences over them",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="with --save-agent: fit on the router stage's first N tasks only",
    )
    parser.add_argument("--draws", default=None, help="a file of extra feature draws to fit on")
    parser.add_argument(
        "--redraw",
        type=int,
        default=0,
        help="with --draws: sample N draws into it if missing (an existing file must hold N)",
    )
    parser.add_argument("--draw-backend", default="llamacpp", help="the SLM backend of --redraw")
    parser.add_argument(
        "--no-draws", action="store_true", help="fit on the recorded draw only (not the stage's)"
    )
    parser.add_argument(
        "--any-action",
        action="store_true",
        help="fit on every extra draw with the logged step's label, also where the draw chose "
        "another action (default: only draws that chose the logged action)",
    )
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig.from_yaml(args.config)
        draws = _draws(config, args)
        same_action = not args.any_action
        episodes, labels, mode = load_router_stage(
            config.run_dir, draws=draws, same_action=same_action
        )
    except (R2VAgentError, OSError) as exc:
        print(f"router_ablations: error: {exc} (has the pipeline's router stage run?)")
        return 2
    if mode != config.router.label:
        print(
            f"router_ablations: error: labels are {mode!r}, the config says {config.router.label!r}"
        )
        return 2
    if args.save_agent:
        try:
            report = save_variant_agent(
                config.run_dir,
                config.router,
                args.save_agent,
                changes=ABLATIONS[args.variant],
                rollouts=args.rollouts,
                tasks=args.tasks,
                seed=config.seed,
                draws=draws,
                same_action=same_action,
            )
        except R2VAgentError as exc:
            print(f"router_ablations: error: {exc}")
            return 2
        print(
            f"saved {args.save_agent}: {args.variant}, {args.rollouts} rollouts"
            + (f", first {args.tasks} tasks" if args.tasks else "")
            + f"; held-out AUROC "
            f"{report['test_auroc']:.3f}, Brier {report['test_brier']:.3f}, ECE "
            f"{report['test_ece']:.3f}, tau {report['threshold']:.3f} escalates "
            f"{report['test_escalation_share']:.3f}"
        )
        return 0
    rows = run_ablations(episodes, labels, config.router, seed=config.seed)
    table = render_table(rows)
    fitted = labels[slm_steps(episodes)]  # mixed rollouts' teacher steps are never fitted
    header = (
        f"Router ablations on {config.name}'s router stage: {len(fitted)} SLM-acted steps"
        + (
            f" ({len(draws) + 1} draws a state"
            + (", any action" if args.any_action else ", extra draws of the logged action")
            + ")"
            if draws
            else ""
        )
        + ", "
        f"{mode} labels (failure rate {fitted.mean():.3f}), seed {config.seed}\n\n"
    )
    text = header + table
    if args.splits > 0:
        seeds = [config.seed + i for i in range(args.splits)]
        repeated = repeated_ablations(episodes, labels, config.router, seeds=seeds)
        text += (
            f"\nOver {args.splits} task splits (seeds {seeds[0]}-{seeds[-1]}; each draws the "
            "train / calibration / test tasks and the MLP's start): mean [central 95 % of the "
            "splits], and the paired difference from all 15 on the same split.\n\n"
            + render_repeated_table(repeated)
        )
        if draws:  # the same router fitted on one draw a state vs on every draw, scored alike
            recorded, recorded_labels, _ = load_router_stage(config.run_dir, draws=[])
            figures = draws_comparison(
                recorded,
                recorded_labels,
                draws,
                config.router,
                seeds=seeds,
                same_action=same_action,
            )
            text += (
                f"\nOne draw a state vs {len(draws) + 1} (all 15 features; extra draws "
                + ("of any action" if args.any_action else "that chose the logged action")
                + f"), over the same {args.splits} task splits: both routers scored on the "
                "held-out tasks' steps as the extra draws sampled them, where a draw chose the "
                "logged action (features neither was fitted on, labels their own).\n\n"
                + render_draws_comparison(figures, len(draws) + 1)
            )
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def _draws(config: PipelineConfig, args: argparse.Namespace) -> list[Any] | None:
    """The extra feature draws to fit on: ``None`` for the stage's own, ``[]`` for none."""
    from r2v_agent.training.feature_draws import extra_draws, load_draws, save_draws
    from r2v_agent.training.fit_router import fixed_policy_agent
    from r2v_agent.training.router_ablation import load_router_stage as load

    if args.no_draws:
        return []
    if args.draws is None:
        return None
    path = Path(args.draws)
    if not path.is_file() and args.redraw > 0:
        on = copy.deepcopy(config)
        on.router.backend = args.draw_backend
        agent = fixed_policy_agent(on)
        episodes = load(config.run_dir, draws=[])[0]
        drawn = extra_draws(config, agent, episodes, args.redraw)
        save_draws(path, drawn)
    draws = load_draws(path)
    if not draws:
        raise FileNotFoundError(f"no feature draws in {path} (give --redraw N to sample them)")
    if args.redraw > 0 and len(draws) != args.redraw:
        # A reused file must hold what was asked for, or the fit silently uses another count.
        raise ConfigError(
            f"{path} holds {len(draws)} extra draw(s) a state, --redraw asked for {args.redraw}: "
            f"ask for {len(draws)}, or remove the file to sample {args.redraw}"
        )
    return draws


if __name__ == "__main__":
    sys.exit(main())
