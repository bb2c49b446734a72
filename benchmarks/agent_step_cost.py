"""Where an agent step's time goes, with the embedded SmolLM2 on a TextWorld prompt.

    python benchmarks/agent_step_cost.py [--repeats 7]

Measured side by side in one run:
  (a) K=5 candidates in one batched call vs 5 sequential single samples;
  (b) the share of a RoutedAgent step spent in features + router, and in the verifier;
  (c) peak RSS of the process with the agent loaded;
  (d) wall time of one step (K=5);
  (e) the SLM sample of one step (K=5, 16 new tokens) on every backend, on the same prompt with
      no prefix reuse (``--backends`` to choose): transformers and llamacpp with repeats
      interleaved; vllm (in-process vLLM, float32 and bfloat16) in ``.venv-vllm``'s Python, as it
      cannot be imported next to our transformers; then openai against a vLLM server from
      ``.venv-vllm`` on loopback (float32), started only then (an idle server takes CPU time);
  (f) llama.cpp and the vLLM server over an episode's growing prompt (the expert's moves, 10
      steps): prompt tokens computed per step and seconds per step, with and without prefix
      reuse.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import gymnasium as gym
import torch

import r2v_envs  # noqa: F401
from r2v_agent import RoutedAgent
from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import BACKENDS
from r2v_agent.policy.models import source_dir
from r2v_agent.policy.prompts import FORMATS, Turn
from r2v_agent.policy.vllm_server import VLLMServer, find_vllm_python
from r2v_agent.router.features import compute_features
from r2v_agent.verifier.rules import RuleVerifier


class ColdPrompts:
    """A server-side prefix cache cannot be switched off per request: with ``cold`` on, each
    call's prompt starts with a new tag, so nothing of it is cached (a fresh prompt)."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.cold, self.calls = policy, True, 0

    def sample(self, messages: list, **kwargs: Any) -> Any:
        if self.cold:
            self.calls += 1
            head = {**messages[0], "content": f"[{self.calls}] " + messages[0]["content"]}
            messages = [head, *messages[1:]]
        return self.policy.sample(messages, **kwargs)


def _time_policies(policies: dict[str, Any], messages: list, repeats: int) -> dict[str, tuple]:
    """Median seconds and new tokens of a K=5 sample per policy, repeats interleaved."""
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
    return {b: (med(times[b]), med(tokens[b])) for b in policies}


def vllm_in_process(model: str, repeats: int) -> dict[str, tuple]:
    """(e) for the vllm backend, run in an environment that has vLLM (``--vllm-worker``)."""
    messages = json.loads(sys.stdin.readline())
    results = {}
    for dtype in ("float32", "bfloat16"):
        agent = RoutedAgent.from_pretrained(
            model, k=5, backend="vllm", backend_options={"dtype": dtype}
        )
        policy = agent.policy
        # vLLM caches prefixes: vary the prompt's start so each sample is cold, like the others
        timed = [
            [{**messages[0], "content": f"[{i}] " + messages[0]["content"]}, *messages[1:]]
            for i in range(repeats + 1)
        ]
        policy.sample(timed[0], max_new_tokens=16)
        runs = [policy.sample(m, max_new_tokens=16) for m in timed[1:]]
        results[f"vllm ({dtype})"] = (
            statistics.median(r.seconds for r in runs),
            statistics.median(r.new_tokens for r in runs),
        )
        policy.close()
    return results


def load_policy(model: str, backend: str, server: VLLMServer | None) -> Any:
    """The backend's policy of ``model``, or ``None`` (said why) when it is not available."""
    try:
        if backend == "openai":
            if server is None:
                raise ConfigError("no vLLM server (make vllm)")
            options = {"url": server.url}
            return RoutedAgent.from_pretrained(
                model, k=5, backend=backend, backend_options=options
            ).policy
        return RoutedAgent.from_pretrained(model, k=5, backend=backend).policy
    except ConfigError as exc:  # an optional engine that is not installed
        print(f"    {backend:<13} skipped: {exc}")
        return None


def compare_backends(
    model: str, backends: list[str], messages: list, repeats: int, server: VLLMServer | None
) -> dict[str, tuple]:
    """(e): each backend's K=5 sample of the same prompt, repeats interleaved across backends so
    machine noise falls on all of them alike; returns ``{backend: (seconds, new tokens)}``."""
    policies: dict[str, Any] = {}
    for backend in [b for b in backends if b != "vllm"]:
        policy = load_policy(model, backend, server)
        if policy is None:
            continue
        if hasattr(policy, "prefix_cache"):  # a cold prompt every time, as transformers has;
            policy.prefix_cache = False  # (f) measures what reuse saves over an episode
        policies[backend] = ColdPrompts(policy) if backend == "openai" else policy
    results = _time_policies(policies, messages, repeats)
    del policies
    if "vllm" in backends:
        python = find_vllm_python()
        if python is None:
            print("(e) vllm          skipped: no Python with vLLM (make vllm)")
        else:  # vLLM's pinned transformers lives in its own environment: measure it there
            command = [str(python), __file__, "--vllm-worker", "--model", model]
            command += ["--repeats", str(repeats)]
            done = subprocess.run(
                command, input=json.dumps(messages) + "\n", capture_output=True, text=True
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode or not lines:
                print(f"(e) vllm          failed: {done.stderr[-800:]}")
            else:
                results.update({k: tuple(v) for k, v in json.loads(lines[-1]).items()})
    return results


def print_backends(results: dict[str, tuple]) -> None:
    base = results.get("transformers", (None,))[0]
    for backend, (seconds, new_tokens) in results.items():
        ratio = f"   {base / seconds:.2f}x transformers" if base else ""
        print(
            f"(e) {backend:<15} K=5 sample {seconds:6.3f} s (~{new_tokens:.0f} new tokens){ratio}"
        )


def prefix_reuse(model: str, backends: list[str], repeats: int, server: VLLMServer | None) -> None:
    """(f): an episode's prompts through each backend that reuses prefixes, with and without."""
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
    med = statistics.median
    for backend in [b for b in ("llamacpp", "openai") if b in backends]:
        policy = load_policy(model, backend, server)
        if policy is None:
            continue
        if backend == "openai":
            policy = ColdPrompts(policy)
        results: dict[bool, list] = {}
        for reuse in (False, True, False, True)[: 2 * max(1, min(repeats, 2))]:
            if backend == "openai":
                policy.cold = not reuse
            else:
                policy.prefix_cache = reuse
            policy.sample(previous, max_new_tokens=1)
            results.setdefault(reuse, []).extend(
                policy.sample(m, max_new_tokens=16) for m in prompts
            )
        for reuse, runs in results.items():
            computed = [
                r.prompt_tokens if r.computed_prompt_tokens is None else r.computed_prompt_tokens
                for r in runs
            ]
            print(
                f"(f) {backend:<8} prefix reuse {'on ' if reuse else 'off'} {len(prompts)} steps: "
                f"prompt tokens computed per step {statistics.mean(computed):6.1f} of "
                f"{statistics.mean(r.prompt_tokens for r in runs):6.1f}, median "
                f"{med(r.seconds for r in runs):.3f} s a step"
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
    parser.add_argument("--vllm-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vllm_worker:  # (e)'s vllm part, in .venv-vllm: prompt on stdin, JSON on stdout
        print(json.dumps(vllm_in_process(args.model, args.repeats)), flush=True)
        return

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
    backends = args.backends.split(",")
    # The engines in this process first, with no vLLM server running: an idle server still takes
    # CPU time from a 2-core machine (measured: the transformers step 2.56 s beside it, 1.65 s
    # alone), so the server is started only for its own measurements.
    local = [b for b in backends if b != "openai"]
    results = compare_backends(args.model, local, messages, args.repeats, None)
    prefix_reuse(args.model, local, args.repeats, None)
    if "openai" in backends and find_vllm_python() is not None:
        # the openai backend's server: vLLM on loopback, float32 (the transformers numbers)
        with VLLMServer(source_dir(args.model) or args.model, dtype="float32") as server:
            results.update(compare_backends(args.model, ["openai"], messages, args.repeats, server))
            prefix_reuse(args.model, ["openai"], args.repeats, server)
    elif "openai" in backends:
        print("(e) openai skipped: no Python with vLLM (make vllm)")
    print_backends(results)


if __name__ == "__main__":
    main()
