"""Bad arguments are refused with their name, never coerced (1.9 -> 1, True -> 1)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import perturbations
from perturbations import PerturbationSeedError, PerturbationSpecError
from tests.conftest import CounterEnv

# (spec, the argument the error must name)
BAD_SPECS = [
    ("truncate(max_chars=1.9)", "max_chars must be an integer"),
    ("truncate(max_chars=True)", "max_chars must be an integer"),
    ("truncate(max_chars='400')", "max_chars must be an integer"),
    ("truncate(max_chars=0)", "max_chars must be an integer >= 1"),
    ("flaky_tool(p=True)", "p must be a number in [0, 1]"),
    ("flaky_tool(p='0.2')", "p must be a number in [0, 1]"),
    ("flaky_tool(p=1.5)", "p must be a number in [0, 1]"),
    ("noisy(typo_rate=-0.1)", "typo_rate must be a number in [0, 1]"),
    ("noisy(drop_line_rate=None)", "drop_line_rate must be a number in [0, 1]"),
    ("stale(p=2)", "p must be a number in [0, 1]"),
    ("distractor(p=False)", "p must be a number in [0, 1]"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_arguments_name_the_argument(spec: str, message: str) -> None:
    with pytest.raises(PerturbationSpecError) as caught:
        perturbations.make_stack(CounterEnv(), spec, seed=0)
    assert message in str(caught.value)
    assert spec.split("(")[0] in str(caught.value)


def test_integral_values_are_kept() -> None:
    env = perturbations.make_stack(CounterEnv(), "truncate(max_chars=40)+flaky_tool(p=1)", seed=0)
    assert env.env.max_chars == 40 and env.p == 1.0


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_a_bad_seed_is_a_seed_error_not_a_spec_error(seed: object) -> None:
    with pytest.raises(PerturbationSeedError, match="perturbation seed must be an integer >= 0"):
        perturbations.make_stack(CounterEnv(), "flaky_tool(p=0.1)", seed=seed)  # type: ignore[arg-type]
    with pytest.raises(PerturbationSeedError):
        perturbations.FlakyTool(CounterEnv(), p=0.1, seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [None, 3, ["flaky_tool(p=0.1)"]])
def test_a_spec_of_the_wrong_type_is_named(spec: object) -> None:
    with pytest.raises(PerturbationSpecError, match="a perturbation spec is a str"):
        perturbations.make_stack(CounterEnv(), spec, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env_id", "kwargs", "message"),
    [
        ("R2V/TextWorld-v0", {"difficulty": 2.7}, "difficulty must be an integer"),
        ("R2V/TextWorld-v0", {"difficulty": True}, "difficulty must be an integer"),
        ("R2V/HumanEvalPlus-v0", {"n_visible": -1}, "n_visible must be an integer >= 1"),
        ("R2V/HumanEvalPlus-v0", {"n_visible": 2.5}, "n_visible must be an integer >= 1"),
        ("R2V/TextWorld-v0", {"max_episode_steps": 2.5}, "max_episode_steps must be an integer"),
    ],
)
def test_env_integer_arguments_are_not_rounded(env_id: str, kwargs: dict, message: str) -> None:
    spec = gym.spec(env_id)
    with pytest.raises(ValueError, match=message):
        # The env class itself: gym.make keeps max_episode_steps for its TimeLimit.
        gym.envs.registration.load_env_creator(spec.entry_point)(**{**spec.kwargs, **kwargs})
