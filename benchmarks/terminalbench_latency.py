"""Per-command latency of the TerminalBench backends against a bare ``subprocess.run``.

    python benchmarks/terminalbench_latency.py [--repeats 50] [--docker-host unix:///...]

Commands run interleaved (bare, local, docker, bare, ...) so the three are measured side by side.
Docker is measured when a daemon is reachable: ``--docker-host`` / ``$DOCKER_HOST``, or, as root
with ``dockerd`` installed, a private daemon this script starts (``--start-dockerd``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from r2v_envs.terminalbench.backends.local import LocalBackend
from r2v_envs.terminalbench.tasks import load_tasks

COMMANDS = [
    "true",
    "echo hello",
    "ls -la /app",
    "cat /etc/os-release | wc -l",
    "python3 -c 'print(1)'",
]


# The same PATH as the local sandbox's shell, so both run the same programs.
BARE_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}


def bare(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, capture_output=True, cwd="/tmp", env=BARE_ENV)
    return time.perf_counter() - start


def through(backend, command: str) -> float:
    start = time.perf_counter()
    backend.exec(command, timeout=30)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--task-id", default="count-errors")
    parser.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST"))
    parser.add_argument(
        "--start-dockerd",
        action="store_true",
        help="start a private dockerd (root) when no --docker-host is given",
    )
    args = parser.parse_args()

    task = load_tasks()[args.task_id]
    with contextlib.ExitStack() as stack:
        backends = {"local": stack.enter_context(LocalBackend())}
        host = args.docker_host
        if host is None and args.start_dockerd:
            from r2v_envs.terminalbench.backends.dockerd import ensure_base_image, private_dockerd

            host = stack.enter_context(private_dockerd(Path("/tmp/r2v-bench-dockerd")))
            ensure_base_image(host)
        if host is not None:
            from r2v_envs.terminalbench.backends.docker import DockerBackend

            backends["docker"] = stack.enter_context(DockerBackend(docker_host=host))
        for backend in backends.values():
            backend.start(task)
            for command in COMMANDS:  # warm-up
                backend.exec(command)

        rows: dict[str, dict[str, list[float]]] = {c: {"bare": []} for c in COMMANDS}
        for _ in range(args.repeats):
            for command in COMMANDS:
                rows[command]["bare"].append(bare(command))
                for name, backend in backends.items():
                    rows[command].setdefault(name, []).append(through(backend, command))

    names = ["bare", *backends]
    print(f"median latency per command, ms ({args.repeats} repeats, interleaved)")
    print(
        f"{'command':<30}"
        + "".join(f"{n:>10}" for n in names)
        + "".join(f"{n + '/bare':>14}" for n in names[1:])
    )
    overall: dict[str, list[float]] = {n: [] for n in names}
    for command, timings in rows.items():
        med = {n: statistics.median(timings[n]) for n in names}
        for n in names:
            overall[n].extend(timings[n])
        print(
            f"{command:<30}"
            + "".join(f"{med[n] * 1e3:>10.2f}" for n in names)
            + "".join(f"{med[n] / med['bare']:>13.2f}x" for n in names[1:])
        )
    med_all = {n: statistics.median(overall[n]) for n in names}
    print(
        f"{'all commands':<30}"
        + "".join(f"{med_all[n] * 1e3:>10.2f}" for n in names)
        + "".join(f"{med_all[n] / med_all['bare']:>13.2f}x" for n in names[1:])
    )
    print("targets: local <= 3x bare, docker <= 10x bare")


if __name__ == "__main__":
    main()
