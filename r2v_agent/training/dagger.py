"""DAgger rounds of the BC stage: the policy plays, the expert labels the states it reaches.

Behavioural cloning sees only the states the teacher visits; a policy that strays (a wrong
door, a repeated ``take``/``put``) meets states no example covers and loops there. Each round
here plays the current BC policy alone (K samples a step, the rule verifier picks, as an
SLM-only evaluation does) on the training games under the training perturbation seeds, labels
every step with the env's expert action from the state the policy actually reached, adds those
examples to the pool and fine-tunes again (Ross et al., 2011). The expert is the env's own
plan (``info["expert_action"]``), so labels cost nothing; the prompt of a relabelled step is
built from the policy's own history, as it will be at run time.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import StageError
from r2v_agent.groundtruth import same_action
from r2v_agent.training import components

__all__ = ["play_policy", "run_rounds"]


def play_policy(
    config: PipelineConfig, policy_dir: Path, *, round_index: int
) -> list[dict[str, Any]]:
    """Episodes of the BC policy in ``policy_dir`` alone on the round's training games."""
    seed = config.seed + round_index
    agent = components.solo_agent(config, policy_dir, backend=config.bc.dagger_backend, seed=seed)
    tasks = list(range(config.env.train_tasks))
    if config.bc.dagger_tasks is not None and config.bc.dagger_tasks < len(tasks):
        tasks = sorted(random.Random(seed).sample(tasks, config.bc.dagger_tasks))
    return components.play_training_games(
        config, agent, tasks, agent_name="bc-policy", desc=f"dagger round {round_index}"
    )


def run_rounds(
    config: PipelineConfig,
    model: Any,
    tokenizer: Any,
    expert_examples: list[Any],
    out: Path,
) -> list[dict[str, Any]]:
    """``config.bc.dagger_rounds`` rounds on top of a trained, saved BC policy (``out/policy``,
    which each round overwrites); each round's episodes are kept in ``out/dagger-{round}.jsonl``.
    Returns one statistics row per round."""
    from r2v_agent.training.bc import build_examples, save_policy, train_bc
    from r2v_agent.training.datasets import step_views
    from r2v_agent.trajectories import TrajectoryWriter

    fmt = components.prompt_format_of(config)
    pool = list(expert_examples)
    rounds = []
    for index in range(1, config.bc.dagger_rounds + 1):
        episodes = play_policy(config, out / "policy", round_index=index)
        with TrajectoryWriter(out / f"dagger-{index}.jsonl") as writer:
            for episode in episodes:
                writer.write(episode)
        steps = [s for e in episodes for s in e["steps"]]
        labelled = [s for s in steps if s.get("expert_action")]
        if not labelled:
            raise StageError(
                "bc: DAgger needs the env's expert action at every state "
                f"(info['expert_action']); {config.env.id} gave none"
            )
        views = list(step_views(episodes, fmt))
        new = build_examples(
            views, tokenizer, max_tokens=config.bc.max_tokens, label="expert_action"
        )
        pool += new
        model, stats = train_bc(model, tokenizer, pool, config.bc, seed=config.seed + index)
        save_policy(model, tokenizer, out / "policy")
        rounds.append(
            {
                "round": index,
                "episodes": len(episodes),
                "policy_success": sum(bool(e["success"]) for e in episodes) / len(episodes),
                "steps": len(steps),
                # how often the policy's own action was not the expert's: what DAgger adds
                "off_expert_steps": sum(
                    not same_action(s["action"], s["expert_action"]) for s in labelled
                )
                / len(labelled),
                "new_examples": len(new),
                "pool": len(pool),
                **{k: stats[k] for k in ("examples", "loss_last_epoch", "seconds")},
            }
        )
    return rounds
