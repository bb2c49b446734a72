"""The Terminal-Bench-format corpus on the docker backend (a private daemon the tests start):
every task's oracle passes and doing nothing fails, multi-container included; builds name their
failures; nothing is left on the daemon after success, failure or interruption."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import docker
import gymnasium as gym
import pytest
from docker.models.containers import ContainerCollection

import r2v_envs  # noqa: F401
from r2v_envs.terminalbench.backends.base import TaskSetupError
from r2v_envs.terminalbench.backends.docker import LABEL, DockerBackend
from r2v_envs.terminalbench.backends.dockerd import docker_unavailable_reason, private_dockerd
from r2v_envs.terminalbench.tasks import load_task

from .conftest import TB_FORMAT, play_expert

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        docker_unavailable_reason() is not None, reason=str(docker_unavailable_reason())
    ),
]

TASKS = sorted(p.name for p in TB_FORMAT.iterdir() if (p / "task.yaml").is_file())
DEFAULT_NETWORKS = {"bridge", "host", "none"}


@pytest.fixture(scope="module")
def daemon(docker_host):
    client = docker.DockerClient(base_url=docker_host)
    for stale in client.containers.list(all=True):  # from an earlier run that was killed
        stale.remove(force=True)
    yield client
    # Whatever ran in this module, the daemon holds no container and no network of ours.
    assert client.containers.list(all=True) == []
    assert {n.name for n in client.networks.list()} <= DEFAULT_NETWORKS
    client.close()


@pytest.fixture(scope="module")
def env(docker_host, daemon):
    env = gym.make(
        "R2V/TerminalBench-v0",
        dataset_path=TB_FORMAT,
        backend="docker",
        expert_hints=True,
        command_timeout=20,
        max_episode_steps=10,
        backend_kwargs={"docker_host": docker_host},
    ).unwrapped
    yield env
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_oracle_passes_and_doing_nothing_fails(env, task_id: str) -> None:
    info = play_expert(env, task_id)
    assert info["success"], info.get("tests_output", "")[-1500:]
    env.reset(options={"task_id": task_id})
    start = time.monotonic()
    *_, info = env.step("submit")
    assert not info["success"]
    if task_id == "task-timeouts":  # the hung check is cut at max_test_timeout_sec (6 s)
        assert info["tests_timed_out"] and time.monotonic() - start < 6 + 10


def test_services_share_a_loopback_only_network(env) -> None:
    env.reset(options={"task_id": "compose-service"})
    probe = (
        'python3 -c "import socket\n'
        "for host in ('api', '1.1.1.1'):\n"
        "    try:\n"
        "        socket.create_connection((host, 8000 if host == 'api' else 80), 2); print(host, 'ok')\n"
        "    except OSError as exc: print(host, 'refused' if host == 'api' else exc)\""
    )
    # The api service may still be starting; the outside is never reachable.
    deadline = time.monotonic() + 20
    while True:
        obs = env.step(probe)[0]
        if "api ok" in obs or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "api ok" in obs and "unreachable" in obs.lower()
    env.step("submit")


def _task_with_dockerfile(tmp_path: Path, dockerfile: str) -> Path:
    task_dir = tmp_path / "my-task"
    shutil.copytree(TB_FORMAT / "stock-run-tests", task_dir)
    (task_dir / "Dockerfile").write_text(dockerfile)
    return task_dir


def test_a_failed_build_names_the_task_and_line_and_leaves_nothing(
    tmp_path: Path, docker_host, daemon
) -> None:
    task = load_task(_task_with_dockerfile(tmp_path, "FROM x\nWORKDIR /app\nRUN exit 7\n"))
    backend = DockerBackend(docker_host=docker_host)
    try:
        with pytest.raises(TaskSetupError) as excinfo:
            backend.start(task)
    finally:
        backend.close()
    message = str(excinfo.value)
    assert "'my-task'" in message and "Dockerfile line 3 (RUN exit 7)" in message
    # No intermediate build container either (the module's env holds its own, labelled ones).
    assert [c for c in daemon.containers.list(all=True) if LABEL not in c.labels] == []


def test_the_build_context_holds_the_solution_only_when_copied(
    tmp_path: Path, docker_host, daemon
) -> None:
    task = load_task(
        _task_with_dockerfile(tmp_path, "FROM x\nWORKDIR /app\nCOPY solution.sh /opt/sol.sh\n")
    )
    backend = DockerBackend(docker_host=docker_host)
    try:
        backend.start(task)
        assert backend.exec("cat /opt/sol.sh").output.rstrip("\n") == task.solution.rstrip("\n")
        backend.start(load_task(TB_FORMAT / "stock-run-tests"))  # copies nothing of its own
        assert (
            backend.exec("ls /app; ls /tests 2>&1")
            .output.strip()
            .endswith("No such file or directory")
        )
    finally:
        backend.close()


def test_a_build_may_install_packages(tmp_path: Path, docker_host, daemon) -> None:
    # Builds reach the package registries the host reaches; the running container does not.
    dockerfile = "FROM python:3.13\nWORKDIR /app\nRUN pip install --no-cache-dir six==1.17.0\n"
    task = load_task(_task_with_dockerfile(tmp_path, dockerfile))
    backend = DockerBackend(docker_host=docker_host)
    try:
        backend.start(task)
        result = backend.exec("python -c 'import six; print(six.__version__)'")
        assert result.exit_code == 0 and result.output.strip() == "1.17.0"
        offline = backend.exec("pip download --no-cache-dir --timeout 3 six -d /tmp/x", 60)
        assert offline.exit_code != 0
    finally:
        backend.close()


def test_an_interrupted_start_leaves_nothing(docker_host, daemon, monkeypatch) -> None:
    backend = DockerBackend(docker_host=docker_host)
    real_run = ContainerCollection.run
    calls, sessions = [], set()

    def run_then_interrupt(self, *args, **kwargs):
        calls.append(kwargs["labels"]["r2v.terminalbench.role"])
        sessions.add(kwargs["labels"][LABEL])
        if len(calls) == 3:  # network holder and api are up; Ctrl-C before the client
            raise KeyboardInterrupt
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(ContainerCollection, "run", run_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.start(load_task(TB_FORMAT / "compose-service"))
    finally:
        monkeypatch.undo()
        survivors = daemon.containers.list(all=True, filters={"label": LABEL})
        backend.close()
    assert calls == ["network", "api", "client"]
    (session,) = sessions
    assert [c for c in survivors if c.labels[LABEL] == session] == []


def test_a_private_dockerd_leaves_no_mounts_behind(tmp_path: Path) -> None:
    root = tmp_path / "dockerd"
    with private_dockerd(root) as host:
        assert docker.DockerClient(base_url=host).ping()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(root) not in mounts  # dockerd's netns file and the like are unmounted
    shutil.rmtree(root)  # so the folder can go
