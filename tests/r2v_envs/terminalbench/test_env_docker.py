"""R2V/TerminalBench-v0 on the docker backend, against a private daemon the tests start."""

from __future__ import annotations

import time

import gymnasium as gym
import pytest

import r2v_envs  # noqa: F401
from r2v_envs.terminalbench.backends.docker import rewrite_dockerfile
from r2v_envs.terminalbench.backends.dockerd import docker_unavailable_reason
from r2v_envs.terminalbench.tasks import load_tasks

from .conftest import play_expert

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        docker_unavailable_reason() is not None, reason=str(docker_unavailable_reason())
    ),
]

# One task per category (and every difficulty) as the representative subset.
SUBSET = [
    "create-hello-file",
    "extract-emails",
    "git-revert-bad-commit",
    "static-library",
    "fix-binary-search",
    "merge-csv-files",
    "fix-permissions",
    "fix-world-writable",
]


@pytest.fixture(scope="module")
def env(docker_host):
    env = gym.make(
        "R2V/TerminalBench-v0",
        backend="docker",
        expert_hints=True,
        command_timeout=5,
        backend_kwargs={"docker_host": docker_host},
    ).unwrapped
    yield env
    env.close()


def test_rewrite_dockerfile_points_at_the_local_base() -> None:
    text = "FROM ghcr.io/laude-institute/t-bench/python-3-13:20250620 AS build\nRUN echo\n"
    assert rewrite_dockerfile(text, "r2v-tb-base:latest").splitlines()[0] == (
        "FROM r2v-tb-base:latest AS build"
    )


@pytest.mark.parametrize("task_id", SUBSET)
def test_oracle_solves_and_nothing_fails(env, task_id: str) -> None:
    assert task_id in load_tasks()
    info = play_expert(env, task_id)
    assert info["success"], info.get("tests_output", "")[-1500:]
    env.reset(options={"task_id": task_id})
    *_, info = env.step("submit")
    assert not info["success"]


def test_escapes_are_contained(env) -> None:
    env.reset(options={"task_id": "create-hello-file"})
    obs, _, _, _, info = env.step(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), 2)\""
    )
    assert info["exit_code"] != 0 and "unreachable" in obs.lower()
    # A fork bomb runs into the process limit until the command timeout interrupts it; the
    # interrupt clears the sandbox (orphans included) and the shell survives.
    start = time.monotonic()
    obs, _, _, _, info = env.step("bomb() { bomb | bomb & }; bomb; sleep 60")
    assert info["timed_out"] and time.monotonic() - start < 20
    assert "alive" in env.step("echo alive")[0]
    obs, _, _, _, info = env.step("head -c 10000000 /dev/zero | tr '\\0' x")
    assert info["output_truncated"] and "bytes of output dropped" in obs
    env.step("nohup sleep 1000 >/dev/null 2>&1 &")
    env.step("submit")
    container = env.backend.container
    container.reload()
    assert container.status != "running"  # nothing keeps running after the episode
    env.reset(options={"task_id": "create-hello-file"})
    assert "hello.txt" not in env.step("ls /app")[0]  # a fresh container
