"""Per-step cost of R2V/TextWorld-v0 against raw ``textworld.gym``, and of perturbation wrappers.

Measured side by side in one run: every round plays the same command sequence on each variant,
in rotating order, and the figure reported is the median over rounds of the mean per-step time.

    python benchmarks/env_overhead.py --rounds 30 --steps 100

Variants
  raw         textworld.gym's own env (same game, same requested infos)
  r2v         gym.make("R2V/TextWorld-v0") (with Gymnasium's checker wrappers, as users get it)
  r2v+1..3    r2v under 1, 2, 3 wrappers of STACK (flaky_tool with p=0 pays its per-step
              bookkeeping but never skips the env call, so it is the worst case for overhead)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym

import perturbations
import r2v_envs  # noqa: F401  (registers the ids)
from r2v_envs.textworld.games import GameSpec, ensure_game

STACK = ["flaky_tool(p=0.0)", "truncate(max_chars=400,mode=middle)", "noisy(typo_rate=0.02)"]


def _commands(path: str) -> list[str]:
    import json
    from pathlib import Path

    game = json.loads(Path(path).with_suffix(".json").read_text())
    walkthrough = game["metadata"]["walkthrough"]
    # Walkthrough plus harmless looks, so episodes are long enough to measure steps, not resets.
    return ["look", "inventory", *walkthrough[:-1], "look", "inventory"]


def raw_runner(path: str) -> Callable[[list[str]], int]:
    import textworld
    import textworld.gym

    infos = textworld.EnvInfos(
        admissible_commands=True, max_score=True, won=True, lost=True, moves=True
    )
    env_id = textworld.gym.register_game(path, request_infos=infos, max_episode_steps=1000)
    env = textworld.gym.make(env_id)

    def run(commands: list[str]) -> int:
        env.reset()
        for command in commands:
            done = env.step(command)[2]
            if done:
                env.reset()
        return len(commands)

    return run


def r2v_runner(path: str, n_wrappers: int) -> Callable[[list[str]], int]:
    env = gym.make("R2V/TextWorld-v0", max_episode_steps=1000)
    if n_wrappers:
        env = perturbations.make_stack(env, "+".join(STACK[:n_wrappers]), seed=0)
    options = {"game_file": path}

    def run(commands: list[str]) -> int:
        env.reset(seed=0, options=options)
        for command in commands:
            _, _, terminated, truncated, _ = env.step(command)
            if terminated or truncated:
                env.reset(seed=0, options=options)
        return len(commands)

    return run


class Probe(gym.Wrapper):
    """Accumulates the wall time spent in ``step`` below this point of the stack."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seconds = 0.0
        self.steps = 0

    def step(self, action):  # type: ignore[override]
        start = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - start
        self.steps += 1
        return out


def probed_stack(path: str) -> tuple[Callable[[list[str]], int], list[Probe]]:
    """r2v under the full STACK with a Probe below and above every wrapper.

    Wrapper k's cost ratio is then (time below probe k) / (time below probe k-1), read in the
    same steps: no run-to-run noise enters the per-wrapper figure.
    """
    probes = [Probe(gym.make("R2V/TextWorld-v0", max_episode_steps=1000))]
    env: gym.Env = probes[0]
    for index, part in enumerate(STACK):
        env = perturbations.make_stack(env, part, seed=index)
        probes.append(Probe(env))
        env = probes[-1]
    options = {"game_file": path}

    def run(commands: list[str]) -> int:
        env.reset(seed=0, options=options)
        for command in commands:
            _, _, terminated, truncated, _ = env.step(command)
            if terminated or truncated:
                env.reset(seed=0, options=options)
        return len(commands)

    return run, probes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100, help="steps per variant per round")
    parser.add_argument("--task-id", default="cooking/d2/s1")
    args = parser.parse_args()

    path = str(ensure_game(GameSpec.from_task_id(args.task_id)))
    base = _commands(path)
    commands = (base * (args.steps // len(base) + 1))[: args.steps]
    variants = {"raw": raw_runner(path), "r2v": r2v_runner(path, 0)}
    for k in range(1, len(STACK) + 1):
        variants[f"r2v+{k}"] = r2v_runner(path, k)
    for run in variants.values():  # warm-up: load games, fill caches
        run(commands[:5])

    per_step: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            n = variants[name](commands)
            per_step[name].append((time.perf_counter() - start) / n)

    med = {name: statistics.median(times) for name, times in per_step.items()}
    print(f"game {args.task_id}: {args.rounds} rounds x {args.steps} steps per variant")
    print(f"{'variant':<10} {'ms/step':>9} {'steps/s':>9} {'vs raw':>8} {'vs previous':>12}")
    previous = None
    for name in names:
        ratio_prev = f"{med[name] / med[previous]:.3f}x" if previous and name != "r2v" else ""
        print(
            f"{name:<10} {med[name] * 1e3:>9.3f} {1 / med[name]:>9.1f} "
            f"{med[name] / med['raw']:>7.3f}x {ratio_prev:>12}"
        )
        previous = name
    print()
    print(f"r2v / raw (side by side)      = {med['r2v'] / med['raw']:.3f}x  (target <= 1.15x)")
    print(f"3-wrapper stack / r2v         = {med[f'r2v+{len(STACK)}'] / med['r2v']:.3f}x")

    run, probes = probed_stack(path)
    run(commands[:5])
    for probe in probes:
        probe.seconds, probe.steps = 0.0, 0
    for _ in range(args.rounds):
        run(commands)
    print()
    print(
        "per-wrapper cost, timed inside one stack (time below wrapper / time below the one under it):"
    )
    for k in range(1, len(probes)):
        ratio = probes[k].seconds / probes[k - 1].seconds
        extra_us = (probes[k].seconds - probes[k - 1].seconds) / probes[k].steps * 1e6
        print(f"  {STACK[k - 1]:<38} {ratio:.4f}x  (+{extra_us:.1f} us/step)  (target <= 1.05x)")


if __name__ == "__main__":
    main()
