from __future__ import annotations

import itertools

import numpy as np
import pytest

import perturbations
from perturbations import (
    Distractor,
    FlakyTool,
    NoisyObservation,
    StaleObservation,
    TruncateObservation,
)
from perturbations.truncate import truncate_text
from tests.conftest import CounterEnv

ALL_SPECS = {
    "flaky_tool": "flaky_tool(p=0.5)",
    "truncate": "truncate(max_chars=60,mode=middle)",
    "noisy": "noisy(typo_rate=0.1,drop_line_rate=0.3)",
    "distractor": "distractor(p=0.7)",
    "stale": "stale(p=0.5)",
}
ACTIONS = ["inc", "look", "inc", "wait", "look", "inc", "look", "look"]


def _trace(spec: str, env_seed: int, pert_seed: int, actions=ACTIONS) -> list:
    env = perturbations.make_stack(CounterEnv(target=3, max_episode_steps=20), spec, seed=pert_seed)
    obs, info = env.reset(seed=env_seed)
    out = [(obs, info["perturbations"])]
    for action in actions:
        obs, reward, term, trunc, info = env.step(action)
        out.append((obs, reward, term, trunc, info["tool_error"], info["perturbations"]))
        if term or trunc:
            break
    return out


def test_registry_names_every_builtin() -> None:
    assert set(ALL_SPECS) <= set(perturbations.PERTURBATIONS)


@pytest.mark.parametrize("name", sorted(ALL_SPECS))
def test_each_perturbation_is_deterministic_and_seed_sensitive(name: str) -> None:
    spec = ALL_SPECS[name]
    assert _trace(spec, 1, 7) == _trace(spec, 1, 7)
    # Random perturbations change with the seed; truncation is a pure function of the text.
    variants = {repr(_trace(spec, 1, z)) for z in range(6)}
    assert (len(variants) == 1) if name == "truncate" else (len(variants) > 1)
    events = [e for step in _trace(spec, 1, 7) for e in step[-1]]
    assert events and all(e["type"] == name for e in events)


def test_full_stack_reproduces_with_same_env_and_perturbation_seed() -> None:
    spec = "+".join(ALL_SPECS.values())
    assert _trace(spec, 3, 11) == _trace(spec, 3, 11)
    assert _trace(spec, 3, 11) != _trace(spec, 4, 11)
    # reset() without a seed continues the stream rather than replaying it
    env = perturbations.make_stack(CounterEnv(), spec, seed=5)
    first = env.reset(seed=0)[0]
    later = [env.reset()[0] for _ in range(5)]
    assert any(o != first for o in later)


@pytest.mark.parametrize("order", list(itertools.permutations(ALL_SPECS))[::17])
def test_wrappers_compose_in_any_order(order: tuple[str, ...]) -> None:
    spec = "+".join(ALL_SPECS[name] for name in order)
    env = perturbations.make_stack(CounterEnv(target=3, max_episode_steps=30), spec, seed=2)
    assert perturbations.stack_spec(env).count("+") == len(order) - 1
    obs, info = env.reset(seed=0)
    steps = 0
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step("inc")
        steps += 1
        done = term or trunc
        assert isinstance(obs, str) and env.observation_space.contains(obs)
    assert info["success"] or trunc
    assert steps <= 30


def test_flaky_tool_never_reaches_the_env_and_spends_the_step_budget() -> None:
    base = CounterEnv(target=3, max_episode_steps=5)
    env = FlakyTool(base, p=1.0, seed=0)
    obs, info = env.reset(seed=0)
    for i in range(5):
        obs, reward, term, trunc, info = env.step("inc")
        assert obs.startswith("Error:") and info["tool_error"] and reward == 0.0
        assert info["perturbations"] == [{"type": "flaky_tool", "step": i + 1, "action": "inc"}]
    assert base.count == 0 and info["score"] == 0.0  # state unchanged
    assert trunc and not term and info["elapsed_steps"] == 5
    never = FlakyTool(CounterEnv(), p=0.0, seed=0)
    never.reset(seed=0)
    assert not never.step("inc")[4]["tool_error"]


def test_flaky_tool_rate_matches_p() -> None:
    env = FlakyTool(CounterEnv(target=10_000, max_episode_steps=100_000), p=0.2, seed=1)
    env.reset(seed=0)
    failures = sum(env.step("look")[4]["tool_error"] for _ in range(4000))
    assert 0.17 < failures / 4000 < 0.23


@pytest.mark.parametrize("mode", ["head", "tail", "middle"])
def test_truncate_respects_budget_and_marks_the_cut(mode: str) -> None:
    text = "".join(f"line {i}: " + "abcdefghij" * 3 + "\n" for i in range(40))
    for budget in (25, 60, 200, 1000):
        out, removed = truncate_text(text, budget, mode)
        assert len(out) <= budget
        assert f"[... {removed} chars cut ...]" in out
        assert len(out) == len(text) - removed + len(f"[... {removed} chars cut ...]")
    out, _ = truncate_text(text, 200, mode)
    if mode == "head":
        assert out.startswith("line 0:")
    elif mode == "tail":
        assert out.rstrip().endswith("abcdefghij")
        assert "line 39" in out
    else:
        assert out.startswith("line 0:") and "line 39" in out
    assert truncate_text("short", 10, mode) == ("short", 0)
    tiny, _ = truncate_text(text, 5, mode)
    assert len(tiny) == 5


def test_truncate_logs_only_when_cutting() -> None:
    env = TruncateObservation(CounterEnv(), max_chars=10_000, seed=0)
    assert env.reset(seed=0)[1]["perturbations"] == []
    env = TruncateObservation(CounterEnv(), max_chars=40, mode="head", seed=0)
    obs, info = env.reset(seed=0)
    assert len(obs) <= 40 and info["perturbations"][0]["type"] == "truncate"


def test_noisy_observation_rates() -> None:
    clean = CounterEnv().reset(seed=0)[0]
    env = NoisyObservation(CounterEnv(), typo_rate=0.0, drop_line_rate=0.0, seed=0)
    assert env.reset(seed=0)[0] == clean
    env = NoisyObservation(CounterEnv(), typo_rate=0.2, seed=0)
    noisy, info = env.reset(seed=0)
    assert noisy != clean and info["perturbations"][0]["typos"] > 5
    env = NoisyObservation(CounterEnv(), drop_line_rate=1.0, seed=0)
    obs, info = env.reset(seed=0)
    assert len(obs.split("\n")) == 1 and info["perturbations"][0]["dropped_lines"] == 4


def test_distractor_inserts_logged_lines_of_the_requested_kind() -> None:
    env = Distractor(CounterEnv(), p=1.0, kind="injection", position="end", seed=0)
    obs, info = env.reset(seed=0)
    event = info["perturbations"][0]
    assert event["kind"] == "injection" and obs.endswith(event["text"])
    assert event["text"] in perturbations.distractor.INJECTIONS
    env = Distractor(CounterEnv(), p=0.0, seed=0)
    assert env.reset(seed=0)[1]["perturbations"] == []


def test_stale_observation_repeats_the_previous_one() -> None:
    env = StaleObservation(CounterEnv(target=9, max_episode_steps=20), p=1.0, seed=0)
    first, _ = env.reset(seed=0)
    obs, _, _, _, info = env.step("inc")
    assert obs == first and info["perturbations"] == [{"type": "stale", "step": 1}]
    assert info["score"] == 1.0  # the action did run


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("flaky(p=0.2)", "unknown perturbation 'flaky'"),
        ("flaky_tool(q=0.2)", "no argument 'q'"),
        ("flaky_tool(p=1.5)", "p must be a number in [0, 1]"),
        ("truncate(mode=sideways)", "mode must be one of"),
        ("truncate(max_chars=0)", "max_chars must be an integer >= 1"),
        ("flaky_tool(0.2)", "must be named"),
        ("flaky_tool(p=0.1)+", "cannot parse"),
        ("flaky_tool(p=__import__('os'))", "not a literal"),
        ("flaky_tool(p=0.1)*2", "is not a perturbation"),
        ("noisy(typo_rate=0.1, typo_rate=0.2)", "given twice"),
    ],
)
def test_bad_specs_name_the_bad_part(spec: str, fragment: str) -> None:
    with pytest.raises(perturbations.PerturbationSpecError) as excinfo:
        perturbations.make_stack(CounterEnv(), spec, seed=0)
    assert fragment in str(excinfo.value)


def test_spec_round_trip_and_empty_spec() -> None:
    spec = "flaky_tool(p=0.2)+truncate(max_chars=400,mode=middle)"
    env = perturbations.make_stack(CounterEnv(), spec, seed=1)
    again = perturbations.make_stack(CounterEnv(), perturbations.stack_spec(env), seed=1)
    assert perturbations.stack_spec(again) == perturbations.stack_spec(env)
    assert perturbations.parse_spec("none") == [] and perturbations.parse_spec("") == []
    assert isinstance(perturbations.make_stack(CounterEnv(), "", seed=0), CounterEnv)


def test_user_perturbations_join_the_spec_language() -> None:
    @perturbations.register_perturbation()
    class Shout(perturbations.Perturbation):
        name = "shout_test"

        def perturb_observation(self, observation, info, *, at_reset):
            self.record(info)
            return observation.upper()

    try:
        env = perturbations.make_stack(CounterEnv(), "shout_test", seed=0)
        obs, info = env.reset(seed=0)
        assert obs.isupper() and info["perturbations"][0]["type"] == "shout_test"
    finally:
        perturbations.PERTURBATIONS.pop("shout_test")


def test_wrappers_do_not_mutate_inner_info() -> None:
    inner = CounterEnv()
    env = Distractor(inner, p=1.0, seed=0)
    _, info = env.reset(seed=0)
    assert info["perturbations"] and np.all([isinstance(e, dict) for e in info["perturbations"]])
