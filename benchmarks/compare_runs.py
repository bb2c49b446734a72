"""One method across several episode files (agents or settings), paired on the episodes they share.

    python benchmarks/compare_runs.py \
        "DPO + learned verifier=benchmarks/results/textworld-main/episodes.jsonl" \
        "BC + rule verifier=benchmarks/results/textworld-main/stages/bc-rule.jsonl" \
        --method slm --out benchmarks/results/textworld-main/stages.md

Each ``LABEL=FILE`` is an episode file of ``benchmarks/run.py``. Only the episodes (perturbation
seed, game) that every file played for ``--method`` are used. Per label: success with a 95% CI
resampling games, LLM share, and the difference from the first label with its CI over games
and a sign-flip randomisation p-value per game (``metrics.paired_cluster_test``).

``--covariate-shift`` adds, per label, the routed method's steps before and after the episode's
first escalation (escalation rate; router Brier/ECE on SLM-acted steps against the progress
label, left out for an R2V router trained on counterfactual labels, which episodes do not carry:
``--router-label``, by default what the ``stages.json`` beside the first file that has one
records). A router trained on SLM-only rollouts never saw the states after an escalation; next
to a router trained with mixed rollouts, on the same held-out episodes, this shows what that
costs:

    python benchmarks/compare_runs.py \
        mixed=benchmarks/results/textworld-main/episodes.jsonl \
        slm-only=benchmarks/results/textworld-main/variants/router-slm-only.jsonl \
        --method r2v --covariate-shift
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2v_agent import metrics
from r2v_agent.errors import R2VAgentError
from r2v_agent.evaluation.leaderboard import (
    ROUTER_LABELS,
    covariate_shift,
    default_router_label,
    load_labelled_runs,
    render_shift,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="LABEL=episodes.jsonl; the first is the reference")
    parser.add_argument("--method", default="slm", help="the method of each file to compare")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    parser.add_argument(
        "--covariate-shift",
        action="store_true",
        help="add each run's steps before / after the first escalation (routed methods)",
    )
    parser.add_argument(
        "--router-label",
        choices=ROUTER_LABELS,
        default=None,
        help="the label R2V's routers were trained on (default: the stages.json beside the "
        "first file that has one, else progress)",
    )
    args = parser.parse_args(argv)
    try:
        runs, keys = load_labelled_runs(args.runs, args.method)
    except R2VAgentError as exc:
        print(f"compare_runs: error: {exc}", file=sys.stderr)
        return 2
    games = [str(k[1]) for k in keys]
    reference = next(iter(runs))
    head = ["run", "success", "95% CI (games)", "LLM share", f"minus {reference} [95% CI], p"]
    lines = [
        f"`{args.method}` on the {len(keys)} episodes every file played ({len(set(games))} "
        "games); CIs resample games, p: sign-flip randomisation over games.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    first = [float(runs[reference][k]["success"]) for k in keys]
    for label, episodes in runs.items():
        success = [float(episodes[k]["success"]) for k in keys]
        mean, low, high = metrics.cluster_bootstrap_ci(success, games)
        steps = sum(len(episodes[k]["steps"]) for k in keys)
        share = sum(episodes[k]["escalations"] for k in keys) / max(1, steps)
        if label == reference:
            versus = "-"
        else:
            test = metrics.paired_cluster_test(success, first, games)
            versus = (
                f"{test.difference:+.3f} [{test.ci_low:+.3f}, {test.ci_high:+.3f}], "
                f"p = {test.p_value:.3g}"
            )
        cells = [label, f"{mean:.3f}", f"[{low:.3f}, {high:.3f}]", f"{share:.3f}", versus]
        lines.append("| " + " | ".join(cells) + " |")
    if args.covariate_shift:
        paths = [spec.partition("=")[2] for spec in args.runs]
        router_label = args.router_label or default_router_label(paths)
        lines += [
            "",
            "Covariate shift: steps before and after the episode's first escalation; router "
            "Brier/ECE on SLM-acted steps against the progress label"
            + (
                "."
                if router_label == "progress"
                else f" (none for R2V: its router predicts the {router_label} label, which "
                "episodes do not carry)."
            ),
        ]
        for label, episodes in runs.items():
            shift = covariate_shift(list(episodes[k] for k in keys), router_label=router_label)
            lines += ["", f"**{label}**:", "", render_shift(shift)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
