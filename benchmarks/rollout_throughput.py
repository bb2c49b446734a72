"""Episodes per hour of a seeded TextWorld evaluation, per SLM backend, side by side.

    python benchmarks/rollout_throughput.py [--tasks 4] [--max-steps 10] [--workers 1,2]

The embedded SmolLM2 plays the same held-out TextWorld games (SLM-only: every step is an SLM
step, the part a backend changes) through ``r2v eval``'s own runner, once per backend and worker
count, in one process run. Prints episodes per hour, seconds per step and the ratio to the
transformers backend with one worker.

transformers and llamacpp load one model copy per worker process; ``openai`` is one vLLM server
(float32, prefix caching on, started from ``.venv-vllm``) whose clients are the workers
(``--server-workers``): many episodes, one engine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from r2v_agent.evaluation.run import EvalSettings, run_eval
from r2v_agent.policy.models import source_dir
from r2v_agent.policy.vllm_server import VLLMServer, find_vllm_python
from r2v_agent.trajectories import read_episodes

MODEL = "smollm2-135m"


def one_run(
    out: Path, backend: str, workers: int, args: argparse.Namespace, url: str | None = None
):
    settings = EvalSettings(
        agent_dir=MODEL,
        env_id="R2V/TextWorld-v0",
        env_kwargs={"difficulty": args.difficulty},
        out=str(out),
        methods=["slm"],
        tasks=list(range(args.tasks)),
        perturbation="flaky_tool(p=0.2)+truncate(max_chars=500)",
        perturbation_seeds=[100],
        max_steps=args.max_steps,
        workers=workers,
        backend=backend,
        slm_url=url,
    )
    start = time.perf_counter()
    run_eval(settings)
    seconds = time.perf_counter() - start
    records = list(read_episodes(out))
    steps = sum(len(r["steps"]) for r in records)
    return len(records), steps, seconds, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--difficulty", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--backends", default="transformers,llamacpp,openai")
    parser.add_argument(
        "--server-workers", default="1,2,4", help="worker processes as clients of one server"
    )
    args = parser.parse_args()

    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            for backend in [b for b in backends if b not in ("openai", "vllm")]:
                out = Path(tmp) / f"{backend}-{workers}.jsonl"
                episodes, steps, seconds, records = one_run(out, backend, workers, args)
                wins = sum(r["success"] for r in records)
                rows.append((backend, workers, episodes, steps, seconds, wins))
        if "openai" in backends and find_vllm_python() is None:
            print("openai: skipped, no Python with vLLM (make vllm)")
        elif "openai" in backends:
            with VLLMServer(source_dir(MODEL), dtype="float32") as server:
                for workers in [int(w) for w in args.server_workers.split(",")]:
                    out = Path(tmp) / f"openai-{workers}.jsonl"
                    episodes, steps, seconds, records = one_run(
                        out, "openai", workers, args, server.url
                    )
                    wins = sum(r["success"] for r in records)
                    rows.append(("openai (vLLM)", workers, episodes, steps, seconds, wins))
    base = next((r for r in rows if r[0] == "transformers" and r[1] == 1), None)
    print(
        f"SmolLM2-135M, SLM-only, {args.tasks} TextWorld games (difficulty {args.difficulty}), "
        f"max {args.max_steps} steps, K=5"
    )
    print(f"{'backend':<13} {'workers':>7} {'episodes':>8} {'steps':>6} {'wins':>5} "
          f"{'s/step':>7} {'episodes/h':>10} {'ratio':>6}")  # fmt: skip
    for backend, workers, episodes, steps, seconds, wins in rows:
        rate = episodes / seconds * 3600
        ratio = rate / (base[2] / base[4] * 3600) if base else float("nan")
        print(
            f"{backend:<13} {workers:>7} {episodes:>8} {steps:>6} {wins:>5} "
            f"{seconds / steps:>7.2f} {rate:>10.0f} {ratio:>5.2f}x"
        )


if __name__ == "__main__":
    main()
