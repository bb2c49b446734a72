"""Play TextWorld under a perturbation stack with a scripted expert and a random agent.

    python examples/textworld_demo.py [--episodes 3] [--spec SPEC] [--seed Z]

Prints one row per episode, then how often following ``info["expert_action"]`` wins after three
random detour actions (the expert re-plans from the current state, not from a fixed walkthrough).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import perturbations
import r2v_envs

DEFAULT_SPEC = "flaky_tool(p=0.2)+truncate(max_chars=400,mode=middle)+distractor(p=0.2)"


def expert_agent(obs: str, info: dict, rng: np.random.Generator) -> str:
    return info.get("expert_action") or "look"


def random_agent(obs: str, info: dict, rng: np.random.Generator) -> str:
    return str(rng.choice(info["admissible_actions"]))


def play(env: gym.Env, agent, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    steps = tool_errors = events = 0
    total = 0.0
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent(obs, info, rng))
        steps += 1
        total += float(reward)
        tool_errors += info["tool_error"]
        events += len(info["perturbations"])
        done = terminated or truncated
    return {
        "task": info["task_id"],
        "steps": steps,
        "success": info["success"],
        "score": f"{info['score']:.0f}/{info['max_score']:.0f}",
        "tool_errors": tool_errors,
        "events": events,
    }


def expert_after_detours(env_id: str, games: int = 20, detours: int = 3) -> tuple[int, int, int]:
    env = gym.make(env_id, expert_hints=True)
    wins = lost_in_detour = 0
    for seed in range(games):
        rng = np.random.default_rng(seed)
        _, info = env.reset(seed=seed)
        done = False
        for _ in range(detours):
            _, _, terminated, truncated, info = env.step(
                str(rng.choice(info["admissible_actions"]))
            )
            done = terminated or truncated
            if done:
                lost_in_detour += 1
                break
        while not done:
            _, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
        wins += info["success"]
    env.close()
    return wins, lost_in_detour, games


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=3, help="episodes per env and agent")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="perturbation stack")
    parser.add_argument("--seed", type=int, default=0, help="perturbation seed")
    parser.add_argument("--detour-games", type=int, default=20)
    args = parser.parse_args()

    print(f"perturbations: {args.spec}  (perturbation seed {args.seed})")
    header = f"{'env':<32} {'agent':<7} {'task':<26} {'steps':>5} {'won':>4} {'score':>6} {'tool err':>8} {'events':>6}"
    rows = []
    jobs = [(e, a) for e in r2v_envs.TEXTWORLD_IDS for a in ("expert", "random")]
    for env_id, agent_name in tqdm(jobs, desc="playing", unit="env x agent"):
        env = perturbations.make_stack(
            gym.make(env_id, expert_hints=True), args.spec, seed=args.seed
        )
        agent = expert_agent if agent_name == "expert" else random_agent
        for seed in range(args.episodes):
            rows.append((env_id, agent_name, play(env, agent, seed)))
        env.close()
    print(header)
    print("-" * len(header))
    for env_id, agent_name, r in rows:
        print(
            f"{env_id:<32} {agent_name:<7} {r['task']:<26} {r['steps']:>5} {'yes' if r['success'] else 'no':>4} "
            f"{r['score']:>6} {r['tool_errors']:>8} {r['events']:>6}"
        )
    for agent_name in ("expert", "random"):
        won = [r["success"] for _, a, r in rows if a == agent_name]
        print(f"{agent_name}: {sum(won)}/{len(won)} episodes won under perturbations")

    print(
        f"\nexpert after 3 random detours ({args.detour_games} games per suite, no perturbations):"
    )
    results = {
        env_id: expert_after_detours(env_id, args.detour_games)
        for env_id in tqdm(r2v_envs.TEXTWORLD_IDS, desc="detours", unit="suite")
    }
    for env_id, (wins, lost, games) in results.items():
        playable = games - lost
        print(
            f"  {env_id:<32} won {wins}/{games}; of the {playable} games the detour left winnable, "
            f"won {wins}/{playable} ({100 * wins / max(playable, 1):.0f}%)"
        )


if __name__ == "__main__":
    main()
