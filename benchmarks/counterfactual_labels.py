"""Counterfactual labelling time, one process vs a worker pool, side by side on the same steps.

    python benchmarks/counterfactual_labels.py --config C [--episodes 4] [--workers 2]

The router stage's ``counterfactual`` label costs one rollout per step of a failed episode
(replay to the step, the teacher acts there, the SLM plays on). This takes the first
``--episodes`` failed episodes of the stage's logged rollouts (``runs/<name>/router``, which the
stage must have written) and labels every one of their steps twice in one run: in this process
with torch on every core (``router.label_workers: 1``), then with ``--workers`` processes of
cores / workers threads each. Prints seconds per rollout, the ratio, and whether the two label
sets and the stage's saved labels agree.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from r2v_agent.config import PipelineConfig
from r2v_agent.groundtruth import LABELS_FILE, load_step_labels
from r2v_agent.training.fit_router import (
    counterfactual_runner,
    fixed_policy_agent,
    parallel_counterfactual,
)
from r2v_agent.trajectories import read_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a pipeline config whose router ran")
    parser.add_argument("--episodes", type=int, default=4, help="failed episodes to label")
    parser.add_argument("--workers", type=int, default=2, help="processes of the pool")
    args = parser.parse_args()

    config = PipelineConfig.from_yaml(args.config)
    stage = config.run_dir / "router"
    episodes = [e for e in read_episodes(stage / "rollouts.jsonl") if not e["success"]]
    episodes = episodes[: args.episodes]
    steps = sum(len(e["steps"]) for e in episodes)
    if not steps:
        raise SystemExit(f"no failed episode in {stage / 'rollouts.jsonl'}")
    print(f"{len(episodes)} failed episodes, {steps} rollouts; {os.cpu_count()} cores")

    torch.set_num_threads(os.cpu_count() or 1)
    serial = counterfactual_runner(config, fixed_policy_agent(config))
    start = time.perf_counter()
    one = {e["episode_key"]: [serial(e, t) for t in range(len(e["steps"]))] for e in episodes}
    t_one = time.perf_counter() - start

    # The pool's time includes starting its processes and loading the policy in each.
    start = time.perf_counter()
    lookup = parallel_counterfactual(config, episodes, args.workers)
    pool = {e["episode_key"]: [lookup(e, t) for t in range(len(e["steps"]))] for e in episodes}
    t_pool = time.perf_counter() - start

    _, saved = load_step_labels(stage / LABELS_FILE)
    as_ints = {k: [int(v) for v in labels] for k, labels in one.items()}
    print()
    print("| labelling | wall s | s / rollout | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| 1 process, {os.cpu_count()} threads | {t_one:.1f} | {t_one / steps:.2f} | 1.00x |")
    print(
        f"| {args.workers} workers | {t_pool:.1f} | {t_pool / steps:.2f} | {t_one / t_pool:.2f}x |"
    )
    print()
    print(f"pool labels == one-process labels: {pool == one}")
    print(
        "one-process labels == the stage's labels.json: "
        f"{all(saved.get(k) == v for k, v in as_ints.items())}"
    )
    print(f"failing steps among them: {sum(sum(v) for v in as_ints.values())} of {steps}")


if __name__ == "__main__":
    main()
