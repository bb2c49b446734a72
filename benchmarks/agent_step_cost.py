"""Where an agent step's time goes, with the embedded SmolLM2 on a TextWorld prompt.

    python benchmarks/agent_step_cost.py [--repeats 7]

Measured side by side in one run:
  (a) K=5 candidates in one batched call vs 5 sequential single samples;
  (b) the share of a RoutedAgent step spent in features + router, and in the verifier;
  (c) peak RSS of the process with the agent loaded;
  (d) wall time of one step (K=5);
  (e) the SLM sample of one step (K=5, 16 new tokens) on every installed backend, interleaved
      repeats on the same prompt, no prefix reuse (``--backends`` to choose);
  (f) llama.cpp over an episode's growing prompt (the expert's moves, 10 steps): prompt tokens
      computed per step and seconds per step, with and without prefix reuse.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import gymnasium as gym
import torch

import r2v_envs  # noqa: F401
from r2v_agent import RoutedAgent
from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import BACKENDS
from r2v_agent.policy.prompts import FORMATS, Turn
from r2v_agent.router.features import compute_features
from r2v_agent.verifier.rules import RuleVerifier


def compare_backends(model: str, backends: list[str], messages: list, repeats: int) -> None:
    """(e): each backend's K=5 sample of the same prompt, repeats interleaved across backends so
    machine noise falls on all of them alike."""
    policies = {}
    for backend in backends:
        try:
            policies[backend] = RoutedAgent.from_pretrained(model, k=5, backend=backend).policy
        except ConfigError as exc:  # an optional engine that is not installed
            print(f"(e) {backend:<13} skipped: {exc}")
    for policy in policies.values():  # a cold prompt every time, as transformers has; (f)
        if hasattr(policy, "prefix_cache"):  # measures what reuse saves over an episode
            policy.prefix_cache = False
    times: dict[str, list[float]] = {b: [] for b in policies}
    tokens: dict[str, list[int]] = {b: [] for b in policies}
    for policy in policies.values():  # warm-up
        policy.sample(messages, max_new_tokens=16)
    for _ in range(repeats):
        for backend, policy in policies.items():
            result = policy.sample(messages, max_new_tokens=16)
            times[backend].append(result.seconds)
            tokens[backend].append(result.new_tokens)
    med = statistics.median
    base = med(times["transformers"]) if "transformers" in times else None
    for backend in policies:
        ratio = f"   {base / med(times[backend]):.2f}x transformers" if base else ""
        print(
            f"(e) {backend:<13} K=5 sample {med(times[backend]):6.3f} s "
            f"(~{med(tokens[backend]):.0f} new tokens){ratio}"
        )


def prefix_reuse(model: str, repeats: int) -> None:
    """(f): the same episode prompts through llama.cpp with and without prefix reuse."""
    try:
        policy = RoutedAgent.from_pretrained(model, k=5, backend="llamacpp").policy
    except ConfigError as exc:
        print(f"(f) skipped: {exc}")
        return
    env = gym.make("R2V/TextWorld-Cooking-v0", expert_hints=True)
    other, _ = env.reset(seed=1)  # what the cache holds when an episode starts: another game
    previous = FORMATS["textworld"].messages([Turn(other)])
    obs, info = env.reset(seed=0)
    turns, prompts = [Turn(obs)], []
    for _ in range(10):  # the prompts an agent meets in one episode
        prompts.append(FORMATS["textworld"].messages(turns))
        action = info["expert_action"] or "look"
        obs, _, terminated, truncated, info = env.step(action)
        turns[-1] = Turn(turns[-1].observation, action)
        turns.append(Turn(obs))
        if terminated or truncated:
            break
    results = {}
    for reuse in (False, True, False, True)[: 2 * max(1, min(repeats, 2))]:
        policy.prefix_cache = reuse
        policy.sample(previous, max_new_tokens=1)
        runs = [policy.sample(m, max_new_tokens=16) for m in prompts]
        results.setdefault(reuse, []).append(runs)
    med = statistics.median
    for reuse, episodes in results.items():
        computed = [r.computed_prompt_tokens for runs in episodes for r in runs]
        total = [r.prompt_tokens for runs in episodes for r in runs]
        secs = [r.seconds for runs in episodes for r in runs]
        print(
            f"(f) prefix reuse {'on ' if reuse else 'off'}  {len(prompts)} steps: prompt tokens "
            f"computed per step {statistics.mean(computed):6.1f} of {statistics.mean(total):6.1f}"
            f", median {med(secs):.3f} s a step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="backends compared in (e), comma-separated (default: all)",
    )
    args = parser.parse_args()

    agent = RoutedAgent.from_pretrained(args.model, k=5, threshold=1.0)
    env = gym.make("R2V/TextWorld-Cooking-v0", expert_hints=True)
    obs, info = env.reset(seed=0)
    fmt = FORMATS["textworld"]
    messages = fmt.messages([Turn(obs)])
    policy = agent.policy
    prompt_tokens = int(policy.encode(messages).shape[1])
    for _ in range(2):  # warm-up
        policy.sample(messages, max_new_tokens=16)

    batched, sequential, new_tokens = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = policy.sample(messages, k=5, max_new_tokens=16)
        batched.append(time.perf_counter() - start)
        new_tokens.append(result.new_tokens)
        start = time.perf_counter()
        for _ in range(5):
            policy.sample(messages, k=1, max_new_tokens=16)
        sequential.append(time.perf_counter() - start)

    # (b) one full step, timing each part on the same candidates.
    verifier = RuleVerifier("textworld")
    step_times, verify_times, route_times = [], [], []
    for seed in range(args.repeats):
        agent.reset(seed=seed)
        start = time.perf_counter()
        agent.act(obs, info)
        step_times.append(time.perf_counter() - start)
        d = agent.last_decision
        actions = [c["action"] for c in d.candidates]
        start = time.perf_counter()
        scores = verifier.score(obs, actions, info)
        verify_times.append(time.perf_counter() - start)
        sample = policy.sample(messages, max_new_tokens=16)
        start = time.perf_counter()
        f = compute_features(
            sample.candidates,
            0,
            scores,
            step=0,
            max_steps=50,
            tool_error=False,
            observation=obs,
            escalations_so_far=0,
        )
        agent.router(f)
        route_times.append(time.perf_counter() - start)

    med = statistics.median
    step = med(step_times)
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"model {args.model}, prompt {prompt_tokens} tokens, ~{med(new_tokens):.0f} new tokens, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} repeats (medians)"
    )
    print(f"(a) K=5 batched            {med(batched):6.3f} s")
    print(
        f"    5 sequential samples   {med(sequential):6.3f} s   speed-up "
        f"{med(sequential) / med(batched):.2f}x (target >= 2.5x)"
    )
    print(
        f"(b) features + router      {med(route_times) * 1e3:6.2f} ms = "
        f"{100 * med(route_times) / step:.2f}% of a step (target <= 1%)"
    )
    print(
        f"    verifier (rules)       {med(verify_times) * 1e3:6.2f} ms = "
        f"{100 * med(verify_times) / step:.2f}% of a step (target <= 15%)"
    )
    print(f"(c) peak RSS               {rss_gib:6.2f} GiB (target <= 2 GiB)")
    print(f"(d) one agent step (K=5)   {step:6.3f} s (target <= 1.0 s)")
    del agent, policy  # free the transformers copy before loading the others
    compare_backends(args.model, args.backends.split(","), messages, args.repeats)
    prefix_reuse(args.model, args.repeats)


if __name__ == "__main__":
    main()
