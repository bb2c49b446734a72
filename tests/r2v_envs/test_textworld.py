from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import r2v_envs
from r2v_envs.errors import GameFileError, InvalidActionError, TaskNotFoundError
from r2v_envs.textworld.games import GameSpec, ensure_game, split_seed


def _play(env: gym.Env, seed: int, actions: list[str]) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    trace = [
        (obs, info["task_id"], tuple(info["perturbations"] and map(str, info["perturbations"])))
    ]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(
            (obs, reward, terminated, truncated, info["score"], str(info["perturbations"]))
        )
        if terminated or truncated:
            break
    return trace


def test_make_vec_async_steps() -> None:
    envs = gym.make_vec("R2V/TextWorld-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, infos = envs.reset(seed=[0, 1])
        assert len(obs) == 2 and obs[0] != obs[1]
        assert all("You" in o or "TextWorld" in o for o in obs)
        obs, rewards, terminated, truncated, infos = envs.step(("look", "inventory"))
        assert len(obs) == 2 and "carrying" in obs[1].lower()
    finally:
        envs.close()


def test_same_seed_same_episode_different_seed_different_task() -> None:
    env = gym.make("R2V/TextWorld-Cooking-v0", expert_hints=True)
    _, info = env.reset(seed=4)
    actions = []
    for _ in range(6):
        actions.append(info["expert_action"] or "look")
        _, _, term, trunc, info = env.step(actions[-1])
        if term or trunc:
            break
    first = _play(env, 4, actions)
    second = _play(env, 4, actions)
    assert first == second
    _, other = env.reset(seed=5)
    assert other["task_id"] != first[0][1]


def test_expert_action_wins_even_after_detours() -> None:
    """Following the expert wins >= 95% of 20 games per suite, also after 3 random detours.

    A detour that itself loses the game (eating a recipe ingredient, picking up the wrong treasure)
    leaves nothing to recover; those are counted separately and must stay a minority.
    """
    report = {}
    for env_id in r2v_envs.TEXTWORLD_IDS:
        env = gym.make(env_id, expert_hints=True)
        clean_wins = detour_wins = detour_playable = 0
        for seed in range(20):
            for detours in (0, 3):
                _, info = env.reset(seed=seed)
                rng = np.random.default_rng(seed)
                done = False
                for _ in range(detours):
                    action = str(rng.choice(info["admissible_actions"]))
                    _, _, term, trunc, info = env.step(action)
                    done = term or trunc
                    if done:
                        break
                if detours and not done:
                    detour_playable += 1
                while not done:
                    assert info["expert_action"], (
                        f"no expert action in a live game {info['task_id']}"
                    )
                    _, _, term, trunc, info = env.step(info["expert_action"])
                    done = term or trunc
                if detours:
                    detour_wins += info["success"]
                else:
                    clean_wins += info["success"]
        report[env_id] = (clean_wins, detour_wins, detour_playable)
        env.close()
    for clean_wins, detour_wins, playable in report.values():
        assert clean_wins >= 19, report
        assert playable >= 16, report  # detours rarely end the game outright
        assert detour_wins >= 0.95 * playable, report


@pytest.mark.timeout(120)
def test_bad_actions_never_hang_or_crash_the_game() -> None:
    env = gym.make("R2V/TextWorld-v0").unwrapped
    env.reset(seed=2)
    with pytest.raises(InvalidActionError):
        env.step(None)
    with pytest.raises(InvalidActionError):
        env.step(["look"])
    for bad in ["", "\x00\x01", "look\nnorth", "x" * 1_000_000, "\t\x1b[31m", "\\#K \\help"]:
        obs, reward, terminated, truncated, info = env.step(bad)
        assert obs.startswith("Invalid action"), (bad[:10], obs)
        assert info["invalid_action"] and reward == 0.0 and not terminated
    obs, *_, info = env.step("  look  ")
    assert not info["invalid_action"] and "-=" in obs  # a room description: the game is alive
    obs, *_ = env.step("crème brûlée")
    assert not obs.startswith("Invalid")


@pytest.mark.timeout(300)
def test_fuzzed_printable_actions_never_hang() -> None:
    env = gym.make("R2V/TextWorld-v0", max_episode_steps=1000).unwrapped
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    alphabet = np.array(
        list("abcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    )
    for _ in range(150):
        n = int(rng.integers(1, 256))
        action = "".join(rng.choice(alphabet, size=n))
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset(seed=3)
    _, _, _, _, info = env.step("inventory")
    assert not info["invalid_action"]


def test_task_id_and_game_file_options(tmp_path: Path) -> None:
    env = gym.make("R2V/TextWorld-v0")
    obs_a, info_a = env.reset(options={"task_id": "treasure_hunter/d3/s11"})
    assert info_a["task_id"] == "treasure_hunter/d3/s11"
    path = ensure_game(GameSpec("treasure_hunter", 3, 11))
    obs_b, info_b = env.reset(options={"game_file": str(path)})
    assert obs_a == obs_b and info_b["task_id"] == f"file:{path.name}"
    assert info_b["admissible_actions"]
    # A TextWorld game without its .json would play with score 0 and never report its win
    # (Jericho does not know generated games): refused, naming the file and the fix.
    bare = tmp_path / "bare.z8"
    bare.write_bytes(path.read_bytes())
    with pytest.raises(GameFileError, match=r"bare\.z8.*no TextWorld metadata.*bare\.json"):
        env.reset(options={"game_file": str(bare)})
    # The same file with its metadata beside it plays and scores.
    shutil.copy(path.with_suffix(".json"), tmp_path / "bare.json")
    _, info_c = env.reset(options={"game_file": str(bare)})
    assert info_c["max_score"] > 0 and info_c["admissible_actions"]
    with pytest.raises(TaskNotFoundError, match="nope"):
        env.reset(options={"game_file": str(tmp_path / "nope.z8")})
    with pytest.raises(TaskNotFoundError, match="bogus"):
        env.reset(options={"task_id": "bogus"})


def test_splits_are_disjoint_and_stable() -> None:
    train = {split_seed(i, "train") for i in range(100)}
    test = {split_seed(i, "test") for i in range(100)}
    assert not train & test
    assert split_seed(7, "train") == 14 and split_seed(7, "test") == 15
    env = gym.make("R2V/TextWorld-TreasureHunter-v0", split="test")
    assert env.reset(seed=7)[1]["task_id"] == "treasure_hunter/d5/s15"
    with pytest.raises(ValueError, match="split"):
        gym.make("R2V/TextWorld-v0", split="validation")
    with pytest.raises(ValueError, match="difficulty"):
        gym.make("R2V/TextWorld-Cooking-v0", difficulty=9)


def _generate_in(cache: str, queue: mp.Queue[str]) -> None:
    queue.put(str(ensure_game(GameSpec("coin_collector", 2, 4242), cache)))


def test_concurrent_generation_does_not_corrupt_the_cache(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate_in, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    game = Path(paths.pop())
    json.loads(game.with_suffix(".json").read_text())  # complete, parseable
    leftovers = [p.name for p in game.parent.iterdir() if p.name.startswith(".gen-")]
    assert leftovers == []
    env = gym.make("R2V/TextWorld-CoinCollector-v0", difficulty=2, cache_dir=tmp_path)
    assert env.reset(seed=4242)[1]["task_id"] == "coin_collector/d2/s4242"


def test_cache_dir_env_var_is_honoured(tmp_path: Path) -> None:
    code = (
        "import gymnasium as gym, r2v_envs;"
        "env = gym.make('R2V/TextWorld-TreasureHunter-v0', difficulty=1); env.reset(seed=0)"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "R2V_TEXTWORLD_CACHE": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120, cwd=tmp_path)
    assert list((tmp_path / "cache").rglob("s0.z8"))
    # Generation leaves neither the working directory nor $HOME touched (Inform 7 would write
    # an Inform/ folder there).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "home"]
    assert list(home.iterdir()) == []


_BAD_FILES_PROBE = """
import json, sys
import gymnasium as gym
import r2v_envs
from r2v_envs.errors import GameFileError
env = gym.make("R2V/TextWorld-v0").unwrapped
out = {}
for path in sys.argv[1:]:
    try:
        env.reset(options={"game_file": path})
        out[path] = "played"
    except GameFileError as exc:
        out[path] = "GameFileError: " + str(exc)
print(json.dumps(out))
"""


def test_bad_game_files_raise_an_error_naming_the_file(tmp_path: Path) -> None:
    """Empty, non-game, truncated and corrupted files used to end the whole process inside the
    interpreter ("Fatal error: Story file read error"); now each is a GameFileError. The probe
    runs in a subprocess so that a miss fails this test instead of killing the test session."""
    good = ensure_game(GameSpec("treasure_hunter", 3, 11))
    data = good.read_bytes()
    files = {
        "empty.z8": b"",
        "text.z8": b"this is not a story file\n" * 10,
        "truncated.z8": data[: len(data) // 3],
        "corrupted.z8": data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:],
        "game.ulx": data,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        shutil.copy(good.with_suffix(".json"), (tmp_path / name).with_suffix(".json"))
    paths = [str(tmp_path / n) for n in files]
    run = subprocess.run(
        [sys.executable, "-c", _BAD_FILES_PROBE, *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    verdicts = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {
        "empty.z8": "shorter than a Z-machine header",
        "text.z8": "not a Z-machine version",
        "truncated.z8": "truncated",
        "corrupted.z8": "corrupted",
        "game.ulx": "not a Z-machine story file",
    }
    for name, why in expected.items():
        verdict = verdicts[str(tmp_path / name)]
        assert verdict.startswith("GameFileError") and name in verdict and why in verdict


def test_show_commands_lists_the_admissible_commands_in_each_observation() -> None:
    plain = gym.make("R2V/TextWorld-v0", difficulty=1, expert_hints=True)
    listed = gym.make("R2V/TextWorld-v0", difficulty=1, expert_hints=True, show_commands=True)
    obs_plain, info = plain.reset(seed=3)
    obs_listed, info_listed = listed.reset(seed=3)
    assert "Available commands" not in obs_plain
    head, _, tail = obs_listed.rpartition("\n\nAvailable commands: ")
    assert head == obs_plain  # the game's own text, then the list
    assert tail.split(", ") == info_listed["admissible_actions"] == info["admissible_actions"]
    # after a step the list is the new state's
    action = info_listed["expert_action"]
    obs, _, _, _, after = listed.step(action)
    assert obs.endswith("Available commands: " + ", ".join(after["admissible_actions"]))
