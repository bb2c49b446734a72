"""Grade the 164 canonical HumanEval+ solutions with our env and with EvalPlus, side by side.

    python benchmarks/humaneval_grading.py [--workers 2] [--evalplus-parallel 2]

Both graders read the same samples file and EvalPlus's cached expected outputs (computed once
beforehand, outside the timings). Prints both wall times, their ratio and the verdict agreement.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
from tqdm import tqdm

import r2v_envs  # noqa: F401
from r2v_envs.humaneval.data import load_humaneval

FIND_ZERO_TASK = "HumanEval/32"
# Checked in EvalPlus 0.3.1's source (evalplus/eval/__init__.py, the special oracles): for
# find_zero it asserts |poly(x)| <= atol and then `continue`s past `details[i] = True`, so no
# input of that task is ever recorded as passed. Deterministic, not a timeout.
FIND_ZERO_NOTE = (
    "EvalPlus 0.3.1's find_zero oracle skips recording a pass for every input (a `continue` "
    "before `details[i] = True`), so it fails every find_zero solution, the canonical one "
    "included; this is deterministic, not a timeout. Our grader applies the same |poly(x)| <= "
    "atol oracle and records the result."
)


def ours(samples: list[dict], workers: int) -> dict[str, bool]:
    # Each sandboxed run is a subprocess, so threads give real parallelism here.
    envs = [gym.make("R2V/HumanEvalPlus-v0").unwrapped for _ in range(workers)]

    def grade(item: tuple[int, dict]) -> tuple[str, bool]:
        index, sample = item
        env = envs[index % workers]
        env.reset(options={"task_id": sample["task_id"]})
        env.step(f"```python\n{sample['solution']}\n```")
        *_, info = env.step("submit")
        return sample["task_id"], bool(info["success"])

    # Round-robin chunks so each env is used by one thread at a time.
    chunks = [[(i, s) for i, s in enumerate(samples) if i % workers == w] for w in range(workers)]
    verdicts: dict[str, bool] = {}
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(samples), desc="r2v env") as bar:

        def run_chunk(chunk: list[tuple[int, dict]]) -> None:
            for item in chunk:
                task_id, ok = grade(item)
                verdicts[task_id] = ok
                bar.update()

        list(pool.map(run_chunk, chunks))
    return verdicts


def evalplus_grade(samples_path: Path, parallel: int | None) -> dict[str, bool]:
    from evalplus.evaluate import evaluate

    with contextlib.redirect_stdout(io.StringIO()):
        evaluate("humaneval", samples=str(samples_path), parallel=parallel, i_just_wanna_run=True)
    results = json.loads(
        samples_path.with_name(samples_path.stem + "_eval_results.json").read_text()
    )
    verdicts = {}
    for task_id, rows in results["eval"].items():
        row = rows[0]
        verdicts[task_id] = row["base_status"] == "pass" and row["plus_status"] == "pass"
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="parallel graders of our env")
    parser.add_argument(
        "--evalplus-parallel",
        type=int,
        default=None,
        help="EvalPlus workers (default: EvalPlus's own default, cpu_count // 2)",
    )
    args = parser.parse_args()

    data = load_humaneval()
    assert data.kind == "plus", "needs the HumanEval+ data (see r2v_envs/humaneval/data.py)"
    data.expected("HumanEval/0")  # warm EvalPlus's ground-truth cache outside the timings
    samples = [
        {
            "task_id": t,
            "solution": data.problems[t]["prompt"] + data.problems[t]["canonical_solution"],
        }
        for t in data.task_ids
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "canonical.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        start = time.perf_counter()
        theirs = evalplus_grade(path, args.evalplus_parallel)
        t_evalplus = time.perf_counter() - start
        start = time.perf_counter()
        mine = ours(samples, args.workers)
        t_ours = time.perf_counter() - start

    agree = sum(mine[t] == theirs[t] for t in mine)
    ep_workers = args.evalplus_parallel or max(1, (os.cpu_count() or 2) // 2)
    print(f"{'grader':<28} {'workers':>7} {'passed':>8} {'wall s':>8}")
    print(
        f"{'EvalPlus evaluate()':<28} {ep_workers:>7} {sum(theirs.values()):>4}/{len(theirs):<3} {t_evalplus:>8.1f}"
    )
    print(
        f"{'R2V/HumanEvalPlus-v0 submit':<28} {args.workers:>7} {sum(mine.values()):>4}/{len(mine):<3} {t_ours:>8.1f}"
    )
    print(
        f"ratio ours / EvalPlus = {t_ours / t_evalplus:.2f}x  (target <= 1.2x); "
        f"verdicts agree on {agree}/{len(mine)} tasks"
    )
    for task_id in sorted(t for t in mine if mine[t] != theirs[t]):
        print(
            f"  disagree on {task_id}: ours={'pass' if mine[task_id] else 'fail'}, "
            f"EvalPlus={'pass' if theirs[task_id] else 'fail'}"
        )
        if task_id == FIND_ZERO_TASK and mine[task_id]:
            print(f"    {FIND_ZERO_NOTE}")
    # EvalPlus leaves a non-daemon watcher thread behind; make sure the table is out first.
    sys.stdout.flush()


if __name__ == "__main__":
    main()
