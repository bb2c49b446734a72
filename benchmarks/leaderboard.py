"""Result files -> leaderboard.md, leaderboard.csv, frontier.png, frontier_cost.png and reliability.png.

    python benchmarks/leaderboard.py benchmarks/results/textworld-cpu/episodes.jsonl \\
        --out benchmarks/results/textworld-cpu

The columns and the statistics are documented in r2v_agent/evaluation/leaderboard.py.
"""

from __future__ import annotations

import argparse
import sys

from r2v_agent.errors import R2VAgentError
from r2v_agent.evaluation.leaderboard import write_leaderboard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", help="episode JSONL files from benchmarks/run.py")
    parser.add_argument("--out", required=True, help="folder for the table and plots")
    args = parser.parse_args(argv)
    try:
        print(write_leaderboard(args.results, args.out))
    except (R2VAgentError, OSError) as exc:
        print(f"leaderboard: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"written: {args.out}/leaderboard.md, leaderboard.csv, frontier(_cost).png, reliability.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
