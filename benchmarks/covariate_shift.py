"""The router's covariate shift, compared across routers: steps before vs after an episode's
first escalation, on the same held-out episodes.

    python benchmarks/covariate_shift.py \
        mixed=benchmarks/results/textworld-main/episodes.jsonl \
        slm-only=benchmarks/results/textworld-main/episodes-slmonly-router.jsonl \
        --method r2v --out benchmarks/results/textworld-main/covariate_shift.md

Each ``LABEL=FILE`` is an episode file of ``benchmarks/run.py``; ``--method`` picks the routed
method in each (R2V's own tau by default). Only the episodes (perturbation seed, game) that every
file played are used. A router trained on SLM-only rollouts never saw the states after an
escalation; its calibration (Brier, ECE against the progress label, on SLM-acted steps) and
escalation rate after the first escalation, next to a router trained with mixed rollouts, show
what that costs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2v_agent.errors import R2VAgentError
from r2v_agent.evaluation.leaderboard import covariate_shift, load_labelled_runs, render_shift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="LABEL=episodes.jsonl, one per router")
    parser.add_argument("--method", default="r2v", help="the method of each file to compare")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    try:
        runs, common = load_labelled_runs(args.runs, args.method)
    except R2VAgentError as exc:
        print(f"covariate_shift: error: {exc}", file=sys.stderr)
        return 2
    lines = [
        f"Covariate shift of `{args.method}` on the {len(common)} episodes every file played "
        f"({len({k[1] for k in common})} games): steps before and after the episode's first "
        "escalation; router Brier/ECE on SLM-acted steps against the progress label.",
        "",
    ]
    for label, episodes in runs.items():
        kept = [episodes[k] for k in common]
        success = sum(bool(r["success"]) for r in kept) / len(kept)
        steps = sum(len(r["steps"]) for r in kept)
        share = sum(r["escalations"] for r in kept) / max(1, steps)
        lines += [
            f"**{label}** (success {success:.3f}, LLM share {share:.3f}):",
            "",
            render_shift(covariate_shift(kept)),
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
