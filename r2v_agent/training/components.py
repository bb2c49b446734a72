"""What the training stages build from a config and the stages before them: the SLM (for
training and as a sampler), the prompt format, the collected episodes, the learned verifier and
a :class:`~r2v_agent.RoutedAgent` over a stage's policy (what ``from_pretrained`` builds from a
saved agent, built here from a run folder that has no saved agent yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r2v_agent.config import PipelineConfig
from r2v_agent.trajectories import read_episodes

__all__ = [
    "load_model",
    "family",
    "prompt_format_of",
    "episodes",
    "sampler",
    "verifier",
    "agent",
    "solo_agent",
    "play_training_games",
]


def load_model(source: str, seed: int) -> tuple[Any, Any]:
    from r2v_agent.policy.models import load_model_and_tokenizer

    return load_model_and_tokenizer(source, seed=seed)


def family(config: PipelineConfig) -> str:
    from r2v_agent.policy.prompts import format_for

    return format_for(config.env.id).family


def prompt_format_of(config: PipelineConfig) -> Any:
    from r2v_agent.training.datasets import prompt_format

    return prompt_format(config.env.id, config.policy.history_chars, config.policy.action_log)


def episodes(config: PipelineConfig) -> list[dict[str, Any]]:
    return list(read_episodes(config.run_dir / "collect" / "trajectories.jsonl"))


def sampler(config: PipelineConfig, source: str, *, keep_base: bool = False) -> Any:
    from r2v_agent.policy.sampler import TransformersPolicy

    model, tokenizer = load_model(source, config.seed)
    return TransformersPolicy(
        model,
        tokenizer,
        k=config.policy.k,
        temperature=config.policy.temperature,
        seed=config.seed,
        quantize=config.policy.quantize,
        keep_base=keep_base or config.policy.quantize is None,
        entropy_top_k=config.policy.entropy_top_k,
    )


def verifier(config: PipelineConfig) -> Any:
    from r2v_agent.verifier.learned import LearnedVerifier

    return LearnedVerifier.load(config.run_dir / "verifier" / "verifier.safetensors")


def agent(
    config: PipelineConfig,
    source: str,
    router: Any,
    *,
    teacher: Any = None,
    keep_base: bool = False,
    threshold: float = 1.0,
    backend: str = "transformers",
) -> Any:
    """A routed agent over the policy in ``source``: on ``backend`` 'transformers' the
    :func:`sampler`, on 'llamacpp' the same weights as a BF16 GGUF (what CPU evaluations run)."""
    from r2v_agent.agent import RoutedAgent

    if backend == "transformers":
        policy = sampler(config, source, keep_base=keep_base)
    else:
        policy = _backend_policy(
            config, source, backend=backend, seed=config.seed, keep_base=keep_base
        )
    return RoutedAgent(
        policy,
        router,
        teacher,
        threshold=threshold,
        family=family(config),
        max_steps=config.env.max_steps,
        policy_source=source,
        verifier=verifier(config),
        history_chars=config.policy.history_chars,
        action_log=config.policy.action_log,
    )


def solo_agent(config: PipelineConfig, source: str | Path, *, backend: str, seed: int) -> Any:
    """The policy in ``source`` alone, as an SLM-only evaluation plays it: K samples a step on
    ``backend``, the rule verifier picks, the router never escalates."""
    from r2v_agent.agent import RoutedAgent
    from r2v_agent.router.baselines import NeverEscalate

    return RoutedAgent(
        _backend_policy(config, source, backend=backend, seed=seed),
        NeverEscalate(),
        None,
        threshold=1.0,
        family=family(config),
        max_steps=config.env.max_steps,
        history_chars=config.policy.history_chars,
        action_log=config.policy.action_log,
    )


def _backend_policy(
    config: PipelineConfig, source: str | Path, *, backend: str, seed: int, keep_base: bool = False
) -> Any:
    """The policy in ``source`` on ``backend`` (``keep_base``: with its full-precision model, so
    an agent over it can be saved)."""
    from r2v_agent.policy.build import build_policy

    model, tokenizer = load_model(str(source), seed)
    return build_policy(
        backend,
        model,
        tokenizer,
        source=source,
        k=config.policy.k,
        temperature=config.policy.temperature,
        seed=seed,
        quantize=config.policy.quantize if backend == "transformers" else None,
        keep_base=keep_base,
        entropy_top_k=config.policy.entropy_top_k,
    )


def play_training_games(
    config: PipelineConfig, agent: Any, tasks: list[int], *, agent_name: str, desc: str
) -> list[dict[str, Any]]:
    """Episodes of ``agent`` on training ``tasks`` x the training perturbation seeds 1..N."""
    from r2v_agent.rollout import play_tasks

    return play_tasks(
        agent,
        env_id=config.env.id,
        env_kwargs=config.env.kwargs,
        split="train",
        tasks=tasks,
        perturbation=config.env.perturbation,
        perturbation_seeds=list(range(1, config.env.perturbation_seeds + 1)),
        max_steps=config.env.max_steps,
        agent_name=agent_name,
        desc=desc,
    )
