"""R2V/TerminalBench-v0 on the local (bubblewrap) backend."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import r2v_envs  # noqa: F401
from r2v_envs.terminalbench.tasks import load_tasks
from tests.processes import descendants, left_running, still_alive

from .conftest import needs_bwrap

pytestmark = needs_bwrap


@pytest.fixture(scope="module")
def env():
    env = gym.make("R2V/TerminalBench-v0", expert_hints=True, command_timeout=5).unwrapped
    yield env
    env.close()


def test_oracle_solves_every_task_and_doing_nothing_solves_none(env) -> None:
    solved, untouched_pass = [], []
    for task_id in sorted(load_tasks()):
        _, info = env.reset(options={"task_id": task_id})
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
        if info["success"] and reward == 1.0 and info["tests_runner"] == "run-tests.sh":
            solved.append(task_id)
        env.reset(options={"task_id": task_id})
        *_, info = env.step("submit")
        if info["success"]:
            untouched_pass.append(task_id)
    assert len(solved) == len(load_tasks()), sorted(set(load_tasks()) - set(solved))
    assert untouched_pass == []


def test_shell_state_persists_and_info_reports_exit_codes(env) -> None:
    obs, info = env.reset(seed=0)
    assert "submit" in obs and info["task_id"] in load_tasks()
    obs, _, _, _, info = env.step("cd /tmp && export GREETING=hi && false")
    assert info["exit_code"] == 1
    # elapsed measures the command: a command that sleeps takes at least that long.
    _, _, _, _, slept = env.step("sleep 0.3")
    assert slept["exit_code"] == 0 and 0.3 <= slept["elapsed"] < env.unwrapped.command_timeout
    obs, _, _, _, info = env.step("pwd; echo $GREETING")
    assert obs.split() == ["/tmp", "hi"] and info["exit_code"] == 0


def test_command_timeout_interrupts_and_the_episode_goes_on(env) -> None:
    env.reset(seed=1)
    start = time.monotonic()
    obs, _, terminated, _, info = env.step("sleep 60")
    assert info["timed_out"] and "interrupted" in obs and not terminated
    assert time.monotonic() - start < 15
    obs, *_ = env.step("echo still-here")
    assert obs.strip() == "still-here"
    obs, _, _, _, info = env.step("exit 4")
    obs, *_ = env.step("pwd")
    assert obs.strip() == "/app"  # a new shell after `exit`
    obs, _, _, _, info = env.step("echo 'unterminated")
    assert info["exit_code"] == 2 and "syntax error" in obs


def test_escape_attempts_are_contained(env, tmp_path: Path) -> None:
    marker = f"r2v-escape-{uuid.uuid4().hex}"
    home_canary = Path.home() / f".{marker}"
    home_canary.write_text("secret-in-home")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        env.reset(seed=2)
        # Writing outside /app on the host.
        env.step(
            f"echo pwned > /tmp/{marker}; echo pwned > {tmp_path}/{marker}; touch /usr/{marker}"
        )
        # Reading the host home.
        obs, *_ = env.step(f"cat {home_canary} ~/.{marker} /root/.{marker}; ls -a /root")
        assert "secret-in-home" not in obs
        # Network.
        obs, _, _, _, info = env.step(
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\""
        )
        assert info["exit_code"] != 0
        # A fork bomb runs into the process limit until the command timeout interrupts it; the
        # interrupt clears the sandbox (orphans included) and the shell survives.
        obs, _, _, _, info = env.step("bomb() { bomb | bomb & }; bomb; sleep 60")
        assert info["timed_out"]
        obs, *_ = env.step("echo alive; ls /app | wc -l")
        assert "alive" in obs
        # A process left running after the episode.
        env.step("nohup sleep 1000 >/dev/null 2>&1 & disown; setsid sleep 1000 &")
        # 10 MB of output: capped, with a marker.
        obs, _, _, _, info = env.step("head -c 10000000 /dev/zero | tr '\\0' x")
        assert info["output_truncated"] and len(obs) <= env.observation_space.max_length
        assert "bytes of output dropped" in obs
        env.step("submit")
    finally:
        stop.set()
        server.join()
        listener.close()
    time.sleep(0.2)
    assert accepted == []
    assert not Path(f"/tmp/{marker}").exists() and not (tmp_path / marker).exists()
    assert not Path(f"/usr/{marker}").exists()
    assert home_canary.read_text() == "secret-in-home"
    home_canary.unlink()
    assert env.backend.uid is None or left_running(lambda uid: uid == env.backend.uid) == []
    # The next episode is clean: a fresh workspace.
    env.reset(seed=2)
    obs, *_ = env.step("ls -a /app /tmp")
    assert marker not in obs


def test_check_env_and_async_vector_env() -> None:
    env = gym.make("R2V/TerminalBench-v0", command_timeout=5)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    envs = gym.make_vec("R2V/TerminalBench-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert len(obs) == 2 and all("submit" in o for o in obs)
        obs, *_ = envs.step(("echo one", "echo two"))
        assert [o.strip() for o in obs] == ["one", "two"]
        # This test's own sandboxes: what its workers started (another job's are not ours).
        workers = [p.pid for p in envs.unwrapped.processes]
        ours = descendants(workers)
        assert ours, "the workers started no shell"
    finally:
        envs.close()
    assert still_alive(ours) == []


def test_unknown_task_and_dataset_path_option(env, tmp_path: Path) -> None:
    from r2v_envs.errors import TaskNotFoundError

    with pytest.raises(TaskNotFoundError, match="no-such-task"):
        env.reset(options={"task_id": "no-such-task"})
    builtin = Path(r2v_envs.__file__).parent / "terminalbench" / "tasks" / "count-errors"
    os.symlink(builtin, tmp_path / "count-errors")
    _, info = env.reset(options={"dataset_path": str(tmp_path), "task_id": "count-errors"})
    assert info["task_id"] == "count-errors"
