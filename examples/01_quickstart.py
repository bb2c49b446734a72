"""Quickstart: a perturbed TextWorld game played by the routed agent with the embedded SmolLM2.

    python examples/01_quickstart.py [--tau 0.5] [--seed 0]

Every step prints who acted (the SLM or the teacher), the router's p_fail against tau, and the
SLM's candidates with their verifier scores. A preset has no trained router: the entropy router
stands in (p_fail = 1 - exp(-mean token entropy), as the warning says) until `r2v pipeline`
trains one; the teacher is the env's expert (the offline stand-in for an LLM). `--backend
llamacpp` runs the SLM on llama.cpp (faster on CPU).
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import perturbations
import r2v_envs  # noqa: F401
from r2v_agent import RoutedAgent
from r2v_agent.teacher import OracleTeacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "llamacpp"])
    args = parser.parse_args()

    env = gym.make(
        "R2V/TextWorld-TreasureHunter-v0", difficulty=3, expert_hints=True, max_episode_steps=12
    )
    env = perturbations.make_stack(env, "flaky_tool(p=0.2)+truncate(max_chars=500)", seed=args.seed)
    agent = RoutedAgent.from_pretrained(
        args.model, teacher=OracleTeacher(), threshold=args.tau, backend=args.backend
    )

    obs, info = env.reset(seed=args.seed)
    agent.reset(seed=args.seed)
    print(obs, "\n")
    done = False
    while not done:
        action = agent.act(obs, info)
        d = agent.last_decision
        assert d is not None
        cands = ", ".join(
            f"{c['action']!r}:{s:.2f}"
            for c, s in zip(d.candidates, d.verifier_scores, strict=False)
        )
        print(
            f"step {d.step}: {d.actor:<7} -> {action!r:<28} p_fail={d.p_fail:.2f} "
            f"tau={d.threshold}  [{cands}]"
        )
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    s = agent.stats
    print(
        f"\nsuccess={info['success']}  steps={s.steps}  teacher calls={s.escalations} "
        f"(LLM share {s.llm_share:.0%})"
    )


if __name__ == "__main__":
    main()
