"""R2V environments: HumanEval+, TextWorld and TerminalBench as Gymnasium envs.

Importing this package registers the env ids (a cheap side effect: entry points are strings, so
no heavy dependency is imported until an env is made)::

    import gymnasium as gym
    import r2v_envs  # noqa: F401

    env = gym.make("R2V/TextWorld-v0", expert_hints=True)
"""

from __future__ import annotations

from gymnasium.envs.registration import WrapperSpec, register, registry

from r2v_envs.core import INFO_KEYS, StepOutcome, TextEnv, TextSpace

__all__ = [
    "INFO_KEYS",
    "StepOutcome",
    "TextEnv",
    "TextSpace",
    "ENV_IDS",
    "TEXTWORLD_IDS",
    "HUMANEVAL_IDS",
    "TERMINALBENCH_IDS",
    "__version__",
]

__version__ = "0.1.0"

_TEXTWORLD = "r2v_envs.textworld.env:TextWorldEnv"
_HUMANEVAL = "r2v_envs.humaneval.env:HumanEvalEnv"
_TERMINALBENCH = "r2v_envs.terminalbench.env:TerminalBenchEnv"

#: Every id this package registers, with its entry point and default kwargs.
_SPECS: dict[str, tuple[str, dict[str, object]]] = {
    "R2V/TextWorld-v0": (_TEXTWORLD, {"suite": "custom"}),
    "R2V/TextWorld-Cooking-v0": (_TEXTWORLD, {"suite": "cooking"}),
    "R2V/TextWorld-CoinCollector-v0": (_TEXTWORLD, {"suite": "coin_collector"}),
    "R2V/TextWorld-TreasureHunter-v0": (_TEXTWORLD, {"suite": "treasure_hunter"}),
    "R2V/HumanEvalPlus-v0": (_HUMANEVAL, {"plus": True}),
    "R2V/HumanEval-v0": (_HUMANEVAL, {"plus": False}),
    "R2V/TerminalBench-v0": (_TERMINALBENCH, {}),
}

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
TEXTWORLD_IDS: tuple[str, ...] = tuple(i for i, (e, _) in _SPECS.items() if e == _TEXTWORLD)
HUMANEVAL_IDS: tuple[str, ...] = tuple(i for i, (e, _) in _SPECS.items() if e == _HUMANEVAL)
TERMINALBENCH_IDS: tuple[str, ...] = tuple(i for i, (e, _) in _SPECS.items() if e == _TERMINALBENCH)

# gym.make(id, max_episode_steps=N) puts TimeLimit(N) around the env; StepBudget, applied just
# outside it, makes N the env's own limit, so steps that perturbations spend count against it too.
_STEP_BUDGET = WrapperSpec("StepBudget", "r2v_envs.core:StepBudget", kwargs={})

for _env_id, (_entry_point, _kwargs) in _SPECS.items():
    if _env_id not in registry:  # re-import (e.g. importlib.reload) must not raise
        register(
            id=_env_id,
            entry_point=_entry_point,
            kwargs=dict(_kwargs),
            additional_wrappers=(_STEP_BUDGET,),
        )
