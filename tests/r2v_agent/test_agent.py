"""RoutedAgent with the tiny random model in plain Gymnasium loops on every env."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import pytest

import perturbations
import r2v_envs
from r2v_agent import RoutedAgent
from r2v_agent.errors import ConfigError
from r2v_agent.router.features import FEATURE_NAMES
from r2v_agent.teacher import OracleTeacher

SPEC = "flaky_tool(p=0.3)+truncate(max_chars=300,mode=middle)"


def _env_ids() -> list[str]:
    ids = list(r2v_envs.TEXTWORLD_IDS[:2]) + ["R2V/HumanEvalPlus-v0"]
    if shutil.which("bwrap"):
        ids.append("R2V/TerminalBench-v0")
    return ids


@pytest.fixture(scope="module")
def agent() -> RoutedAgent:
    return RoutedAgent.from_pretrained("tiny-random", teacher=OracleTeacher(), k=3)


def _episode(agent: RoutedAgent, env: gym.Env, seed: int, max_steps: int = 4) -> list[dict]:
    obs, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    decisions = []
    for _ in range(max_steps):
        action = agent.act(obs, info)
        decision = agent.decision_dict()
        decisions.append(decision)
        assert decision["action"] == action
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return decisions


@pytest.mark.parametrize("env_id", _env_ids())
@pytest.mark.parametrize("perturbed", [False, True])
def test_decisions_are_complete_and_tau_moves_escalation(
    agent, env_id: str, perturbed: bool
) -> None:
    env = gym.make(env_id, expert_hints=True, max_episode_steps=6)
    if perturbed:
        env = perturbations.make_stack(env, SPEC, seed=1)
    try:
        for tau, expected_actor in ((0.0, "teacher"), (1.0, "slm")):
            agent.threshold = tau
            for decision in _episode(agent, env, seed=3):
                assert len(decision["candidates"]) == 3
                assert set(decision["features"]) == set(FEATURE_NAMES)
                assert len(decision["verifier_scores"]) == 3
                assert all(0.0 <= s <= 1.0 for s in decision["verifier_scores"])
                assert 0.0 < decision["p_fail"] < 1.0 and decision["threshold"] == tau
                for cand in decision["candidates"]:
                    assert len(cand["token_logprobs"]) == len(cand["token_entropies"])
                if not decision["teacher_fallback"]:
                    assert decision["actor"] == expected_actor
                if decision["actor"] == "teacher":
                    assert decision["cost"]["calls"] == 1
    finally:
        env.close()


def test_stats_track_the_llm_share() -> None:
    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    env = gym.make("R2V/TextWorld-TreasureHunter-v0", expert_hints=True)
    agent.threshold = 0.0
    first = len(_episode(agent, env, seed=0, max_steps=3))
    agent.threshold = 1.0
    second = len(_episode(agent, env, seed=1, max_steps=3))
    assert agent.stats.steps == first + second
    assert agent.stats.escalations == first  # every step of the first episode, none after
    assert agent.stats.llm_share == pytest.approx(first / (first + second))
    assert agent.stats.cost.calls == first


@pytest.mark.parametrize("router", ["preset", "mlp", "random"])
def test_save_and_load_give_identical_decisions(tmp_path: Path, router: str) -> None:
    from r2v_agent.router.baselines import EntropyRouter, RandomRouter
    from r2v_agent.router.model import MLPRouter

    env = gym.make("R2V/TextWorld-v0", expert_hints=True)
    original = RoutedAgent.from_pretrained("tiny-random", k=3, threshold=0.45)
    assert isinstance(original.router, EntropyRouter)
    if router == "mlp":
        original.router, original.router_note = MLPRouter(seed=3), None
    elif router == "random":
        original.router, original.router_note = RandomRouter(0.5, seed=4), None
    before = _episode(original, env, seed=5)
    original.save_pretrained(tmp_path / "agent")
    assert (tmp_path / "agent" / "config.json").is_file()
    assert (tmp_path / "agent" / "router.safetensors").is_file() == (router == "mlp")
    loaded = RoutedAgent.from_pretrained(tmp_path / "agent")
    assert type(loaded.router) is type(original.router)
    assert loaded.threshold == 0.45 and isinstance(loaded.teacher, OracleTeacher)
    after = _episode(loaded, env, seed=5)
    for a, b in zip(before, after, strict=True):
        a.pop("slm_seconds"), b.pop("slm_seconds")
    assert before == after


def test_a_preset_says_its_router_is_a_stand_in(caplog: pytest.LogCaptureFixture) -> None:
    """A preset used to come with a randomly initialised MLP router: its p_fail was noise and
    nothing said so. Now the entropy router stands in, and the log and every decision say so."""
    import math

    from r2v_agent.agent import PRESET_THRESHOLD
    from r2v_agent.router.baselines import EntropyRouter

    with caplog.at_level("WARNING", logger="r2v_agent.agent"):
        agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    assert "no trained router" in caplog.text and "entropy" in caplog.text
    assert isinstance(agent.router, EntropyRouter) and agent.threshold == PRESET_THRESHOLD
    env = gym.make("R2V/TextWorld-v0", expert_hints=True)
    decision = _episode(agent, env, seed=0, max_steps=1)[0]
    env.close()
    assert decision["router"] == "EntropyRouter"
    assert "no trained router" in decision["router_note"] and "0.69 nats" in decision["router_note"]
    assert "1.20 nats" in RoutedAgent.from_pretrained("tiny-random", threshold=0.7).router_note
    entropy = decision["features"]["chosen_entropy_mean"]
    assert decision["p_fail"] == pytest.approx(1.0 - math.exp(-entropy), rel=1e-5)


def test_unsavable_router_is_refused(tmp_path: Path) -> None:
    from r2v_agent.router.baselines import Router

    class Custom(Router):
        def p_fail(self, features):  # pragma: no cover - never called
            raise AssertionError

    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    agent.router = Custom()
    with pytest.raises(ConfigError, match="cannot save a Custom router"):
        agent.save_pretrained(tmp_path / "agent")


@pytest.fixture(scope="module")
def saved_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from r2v_agent.router.model import MLPRouter

    directory = tmp_path_factory.mktemp("saved") / "agent"
    agent = RoutedAgent.from_pretrained("tiny-random", k=2)
    agent.router = MLPRouter(seed=0)
    agent.save_pretrained(directory)
    return directory


def _edit_config(src: Path, dst: Path, edit) -> Path:
    import json

    shutil.copytree(src, dst)
    path = dst / "config.json"
    config = json.loads(path.read_text())
    result = edit(config)  # bytes: the file's new raw content; else config was edited
    if isinstance(result, bytes):
        path.write_bytes(result)
    else:
        path.write_text(json.dumps(config))
    return dst


# (what is wrong, the edit, what the error must name). Before, these raised JSONDecodeError,
# KeyError, AttributeError, TypeError or UnicodeDecodeError from deep inside the loader.
_BROKEN_CONFIGS = [
    ("not json", lambda c: b'{"format": "r2v-agent", ', "not valid JSON"),
    ("not utf-8", lambda c: b"\xff\xfe\x00garbage", "not UTF-8"),
    ("a list", lambda c: b"[1, 2]", "top level must be a JSON object"),
    ("no policy", lambda c: c.pop("policy"), "policy must be an object"),
    ("policy a string", lambda c: c.update(policy="smollm2"), "policy must be an object"),
    ("no policy source", lambda c: c["policy"].pop("path"), "policy needs 'preset'"),
    ("k missing", lambda c: c["policy"].pop("k"), "policy.k must be an integer"),
    ("k a string", lambda c: c["policy"].update(k="5"), "policy.k must be an integer"),
    ("bad temperature", lambda c: c["policy"].update(temperature=None), "policy.temperature"),
    ("threshold a string", lambda c: c.update(threshold="0.5"), "threshold must be in"),
    ("threshold missing", lambda c: c.pop("threshold"), "threshold must be in"),
    ("router a list", lambda c: c.update(router=[]), "router must be an object"),
    ("unknown router", lambda c: c["router"].update(type="Magic"), "router.type 'Magic'"),
    ("router file gone", lambda c: c["router"].update(path="gone.st"), "router.path 'gone.st'"),
    ("teacher a string", lambda c: c.update(teacher="oracle"), "teacher must be an object"),
    ("teacher no type", lambda c: c.update(teacher={}), "teacher.type must be a name"),
    (
        "teacher incomplete",
        lambda c: c.update(teacher={"type": "OpenAITeacher"}),
        "teacher.base_url is missing",
    ),
    ("bad family", lambda c: c.update(family="chess"), "family must be one of"),
    ("bad max_steps", lambda c: c.update(max_steps=0), "max_steps must be an integer >= 1"),
    ("bad action_log", lambda c: c.update(action_log="yes"), "action_log must be true or false"),
    ("policy folder gone", lambda c: c["policy"].update(path="nowhere"), "policy.path 'nowhere'"),
]


@pytest.mark.parametrize(
    ("what", "edit", "message"), _BROKEN_CONFIGS, ids=[b[0] for b in _BROKEN_CONFIGS]
)
def test_a_broken_config_is_a_config_error_naming_file_and_field(
    saved_agent: Path, tmp_path: Path, what: str, edit, message: str
) -> None:
    broken = _edit_config(saved_agent, tmp_path / "agent", edit)
    with pytest.raises(ConfigError, match="config.json") as caught:
        RoutedAgent.from_pretrained(broken)
    assert message in str(caught.value), str(caught.value)


def test_a_torn_router_file_is_a_config_error(saved_agent: Path, tmp_path: Path) -> None:
    broken = _edit_config(saved_agent, tmp_path / "agent", lambda c: None)
    (broken / "router.safetensors").write_bytes(b"\x10\x00torn")
    with pytest.raises(ConfigError, match="router.safetensors: cannot load the MLPRouter"):
        RoutedAgent.from_pretrained(broken)


def test_bad_names_and_thresholds_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        RoutedAgent.from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError, match="threshold"):
        RoutedAgent.from_pretrained("tiny-random", threshold=1.5)
