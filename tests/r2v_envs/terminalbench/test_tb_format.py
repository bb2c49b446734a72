"""Terminal-Bench 1.x task folders as they come: the format's parts, and the fixture corpus
(tests/fixtures/tb_format, one task per feature) run end to end on the local backend."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import gymnasium as gym
import pytest

import r2v_envs  # noqa: F401
from r2v_envs.terminalbench.backends.base import TaskSetupError
from r2v_envs.terminalbench.compose import load_compose
from r2v_envs.terminalbench.dockerfile import (
    DockerfileError,
    parse_dockerfile,
    render_for_classic_builder,
)
from r2v_envs.terminalbench.solution import (
    SolutionError,
    SolutionStep,
    load_solution_yaml,
    split_commands,
)
from r2v_envs.terminalbench.tasks import TaskFormatError, load_task, load_tasks, scan_tasks

from .conftest import TB_FORMAT, needs_bwrap, play_expert

SINGLE_CONTAINER = [
    "stock-run-tests",
    "solution-yaml",
    "dockerfile-copy",
    "python-pytest",
    "large-heredoc",
    "task-timeouts",
]


# ----------------------------------------------------------------------------- loading
def test_the_corpus_loads_with_each_feature_recognised() -> None:
    report = scan_tasks(TB_FORMAT)
    assert report.skipped == {}
    tasks = report.tasks
    assert sorted(tasks) == sorted([*SINGLE_CONTAINER, "compose-service"])
    # The stock run-tests.sh sources the harness's uv set-up: the sandbox's pytest stands in.
    plan = tasks["stock-run-tests"].tests_plan()
    assert plan.runner == "sandbox-pytest" and "setup-uv-pytest.sh" in (plan.reason or "")
    assert tasks["python-pytest"].tests_plan().reason == "run-tests.sh installs from the internet"
    assert tasks["compose-service"].tests_plan().runner == "run-tests.sh"  # offline as written
    assert tasks["solution-yaml"].solution_format == "yaml"
    compose = tasks["compose-service"]
    assert compose.multi_container and list(compose.services) == ["client", "api"]
    assert compose.dockerfile == TB_FORMAT / "compose-service" / "client" / "Dockerfile"
    assert compose.services["api"].environment == {"TOKEN": "r2v-7f3a91c2"}
    assert compose.client.environment["TEST_DIR"] == "/tests"  # ${T_BENCH_TEST_DIR} filled in
    assert not tasks["stock-run-tests"].multi_container
    assert tasks["task-timeouts"].max_agent_timeout_sec == 8.0
    assert tasks["task-timeouts"].max_test_timeout_sec == 6.0


def test_a_large_heredoc_solution_loads_fast_as_one_command() -> None:
    start = time.monotonic()
    task = load_task(TB_FORMAT / "large-heredoc")
    assert time.monotonic() - start < 2.0
    (command,) = task.solution_commands()
    assert len(command) > 20_000 and command.endswith("LEDGER")


def test_splitting_is_linear_in_heredoc_size() -> None:
    # Splitting used to re-check the whole pending chunk with `bash -n` on every line: 2,000
    # lines took a minute. 20,000 lines (1.2 MB) must now take well under the 2 s budget.
    body = "\n".join(
        f"line {i} with 'quotes' and $(not expanded) {{braces}}" for i in range(20_000)
    )
    script = f"echo start\ncat > /app/big.txt <<'EOF'\n{body}\nEOF\necho end\n"
    start = time.monotonic()
    commands = split_commands(script)
    assert time.monotonic() - start < 2.0
    assert len(commands) == 3 and commands[1].count("\n") == 20_001


def test_split_commands_keeps_constructs_and_heredocs_whole() -> None:
    script = (
        "#!/bin/bash\n"
        "echo one\n"
        "if true; then\n  echo two\nfi\n"
        "cat <<-END > f\n\tindented\n\tEND\n"
        'echo "<<NOT a heredoc"\n'
        "python3 - <<'PY' && echo after\nprint('x')\nPY\n"
        "echo a \\\n  b\n"
    )
    assert split_commands(script) == [
        "echo one",
        "if true; then\n  echo two\nfi",
        "cat <<-END > f\n\tindented\n\tEND",
        'echo "<<NOT a heredoc"',
        "python3 - <<'PY' && echo after\nprint('x')\nPY",
        "echo a \\\n  b",
    ]
    with pytest.raises(SolutionError, match="never closed"):
        split_commands("cat <<EOF\nno end\n")
    with pytest.raises(SolutionError, match="unfinished command"):
        split_commands("for x in 1; do\n echo\n")


def test_solution_yaml_steps_and_errors() -> None:
    steps = load_solution_yaml(
        "- command: echo hi\n  block: true\n  max_timeout_sec: 5\n"
        "- command: python3 -m http.server 8000\n  min_timeout_sec: 2\n"
        "- plain string command\n"
    )
    assert steps[0] == SolutionStep("echo hi", block=True, max_timeout_sec=5.0)
    assert steps[0].as_action() == "echo hi"
    background = steps[1].as_action()  # Terminal-Bench's default: not blocking
    assert "( python3 -m http.server 8000\n) >" in background and "seq 20" in background
    assert steps[2].command == "plain string command"
    for text, fragment in [
        ("- command: vim f\n  append_enter: false\n", "append_enter"),
        ("- {cmd: x}\n", "needs a 'command'"),
        ("- command: x\n  colour: red\n", "unknown keys"),
        ("- command: x\n  min_timeout_sec: -1\n", "min_timeout_sec"),
        ("command: x\n", "non-empty list"),
    ]:
        with pytest.raises(SolutionError, match=fragment):
            load_solution_yaml(text)


def test_dockerfile_parser_keeps_lines_heredocs_and_flags() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.13 AS base\n"
        "RUN apt-get update \\\n"
        "    # a comment inside a continuation\n"
        "    && echo done\n"
        "COPY --chmod=755 <<EOF /app/run.sh\n"
        "#!/bin/sh\necho hi\n"
        "EOF\n"
        'COPY ["a b.txt", "/app/"]\n'
        "RUN <<EOF\nset -e\ntouch /x\nEOF\n"
        "RUN python3 <<'PY'\nprint(1)\nPY\n"
    )
    ins = parse_dockerfile(text)
    assert [(i.op, i.line) for i in ins] == [
        ("FROM", 2),
        ("RUN", 3),
        ("COPY", 6),
        ("COPY", 10),
        ("RUN", 11),
        ("RUN", 15),
    ]
    assert ins[1].args == "apt-get update     && echo done"
    spec = ins[2].copy_spec()
    assert spec.inline == {"EOF": "#!/bin/sh\necho hi\n"} and spec.dest == "/app/run.sh"
    assert spec.flags == {"chmod": "755"}
    assert ins[3].copy_spec().sources == ["a b.txt"]
    assert ins[4].run_script() == "set -e\ntouch /x\n"
    assert ins[5].run_script() == "python3 <<'PY'\nprint(1)\nPY"
    rendered = render_for_classic_builder(ins, "r2v-tb-base:latest")
    lines = rendered.text.splitlines()
    assert lines[0] == "FROM r2v-tb-base:latest AS base"
    assert "COPY .r2v-heredoc-2-0 /app/run.sh" in lines
    assert "RUN chmod 755 /app/run.sh" in lines
    assert rendered.extra_files[".r2v-heredoc-2-0"] == "#!/bin/sh\necho hi\n"
    assert rendered.extra_files[".r2v-run-4.sh"] == "set -e\ntouch /x\n\n"
    # Each rendered instruction maps back to the task's own line.
    assert len(rendered.origins) == len(lines)
    assert rendered.origins[lines.index("RUN chmod 755 /app/run.sh")].line == 6
    with pytest.raises(DockerfileError, match="line 2 .*never closed"):
        parse_dockerfile("FROM x\nRUN <<EOF\necho\n")


def test_compose_errors_name_the_service(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    with pytest.raises(ValueError, match="no 'client' service"):
        load_compose(tmp_path)
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n  client:\n    build:\n      context: ../..\n"
    )
    with pytest.raises(ValueError, match="service 'client'.*leaves the task"):
        load_compose(tmp_path)
    (tmp_path / "docker-compose.yaml").write_text("services:\n  client: {}\n")
    with pytest.raises(ValueError, match="needs 'build' or 'image'"):
        load_compose(tmp_path)
    assert load_compose(tmp_path / "nowhere") is None


def test_a_bad_task_is_skipped_with_a_warning_and_strict_raises(tmp_path: Path) -> None:
    shutil.copytree(TB_FORMAT / "stock-run-tests", tmp_path / "good")
    shutil.copytree(TB_FORMAT / "stock-run-tests", tmp_path / "no-solution")
    (tmp_path / "no-solution" / "solution.sh").unlink()
    shutil.copytree(TB_FORMAT / "stock-run-tests", tmp_path / "bad-compose")
    (tmp_path / "bad-compose" / "docker-compose.yaml").write_text("services: [1, 2]\n")
    with pytest.warns(UserWarning) as caught:
        tasks = load_tasks(tmp_path)
    assert list(tasks) == ["good"]
    message = str(caught[0].message)
    assert "1 task(s) loaded, 2 skipped" in message
    assert "no-solution" in message and "missing solution.sh" in message
    assert "bad-compose" in message and "services" in message
    with pytest.raises(TaskFormatError, match="bad-compose"):
        load_tasks(tmp_path, strict=True)


@needs_bwrap
def test_the_env_reports_what_it_skipped(tmp_path: Path) -> None:
    shutil.copytree(TB_FORMAT / "stock-run-tests", tmp_path / "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "task.yaml").write_text("instruction: [not, text]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("R2V/TerminalBench-v0", dataset_path=tmp_path).unwrapped
    try:
        assert env.task_ids == ["good"] and list(env.load_report.skipped) == ["broken"]
    finally:
        env.close()
    with pytest.raises(TaskFormatError, match="broken"):
        gym.make("R2V/TerminalBench-v0", dataset_path=tmp_path, strict=True)


# ----------------------------------------------------------------------------- the local backend
@pytest.fixture(scope="module")
def local_env():
    env = gym.make(
        "R2V/TerminalBench-v0",
        dataset_path=TB_FORMAT,
        expert_hints=True,
        command_timeout=20,
        max_episode_steps=10,
    ).unwrapped
    yield env
    env.close()


@needs_bwrap
@pytest.mark.parametrize("task_id", SINGLE_CONTAINER)
def test_local_oracle_passes_and_doing_nothing_fails(local_env, task_id: str) -> None:
    info = play_expert(local_env, task_id)
    assert info["success"], info.get("tests_output", "")[-1500:]
    local_env.reset(options={"task_id": task_id})
    *_, info = local_env.step("submit")
    assert not info["success"]


@needs_bwrap
def test_local_backend_refuses_a_multi_container_task_by_name(local_env) -> None:
    with pytest.raises(TaskSetupError, match="'compose-service' is a multi-container task"):
        local_env.reset(options={"task_id": "compose-service"})


@needs_bwrap
def test_task_timeouts_are_honoured(local_env) -> None:
    local_env.reset(options={"task_id": "task-timeouts"})
    start = time.monotonic()
    obs, _, terminated, truncated, info = local_env.step("sleep 30")
    # max_agent_timeout_sec (8 s) cuts the command and ends the episode; the tests then hang
    # (done.txt is missing) until max_test_timeout_sec (6 s) cuts them.
    assert truncated and not terminated and "agent time limit reached" in obs
    assert info["tests_timed_out"] and not info["success"]
    assert time.monotonic() - start < 8 + 6 + 6


@needs_bwrap
@pytest.mark.parametrize(
    ("dockerfile", "fragment"),
    [
        ("FROM x\nWORKDIR /app\nRUN true\nRUN exit 3\n", "Dockerfile line 4 (RUN exit 3) failed"),
        ("FROM x\nCOPY solution.sh /usr/bin/sol\n", "Dockerfile line 2 (COPY solution.sh"),
        ("FROM x\nCOPY nothing-*.txt /app/\n", "no file matches 'nothing-*.txt'"),
        ("FROM x\nCOPY --from=build /a /app/a\n", "COPY --from needs the docker backend"),
        (
            "FROM x\nRUN apt-get update && apt-get install -y r2v-no-such-package\n",
            "Dockerfile line 2 (RUN apt-get update",
        ),
    ],
)
def test_local_setup_errors_name_the_task_and_line(
    tmp_path: Path, dockerfile: str, fragment: str
) -> None:
    task_dir = tmp_path / "my-task"
    shutil.copytree(TB_FORMAT / "stock-run-tests", task_dir)
    (task_dir / "Dockerfile").write_text(dockerfile)
    env = gym.make("R2V/TerminalBench-v0", dataset_path=task_dir).unwrapped
    try:
        with pytest.raises(TaskSetupError) as excinfo:
            env.reset(options={"task_id": "my-task"})
    finally:
        env.close()
    assert "'my-task'" in str(excinfo.value) and fragment in str(excinfo.value)


@needs_bwrap
def test_local_skips_installs_of_what_the_host_has(tmp_path: Path) -> None:
    task_dir = tmp_path / "installs"
    shutil.copytree(TB_FORMAT / "stock-run-tests", task_dir)
    (task_dir / "Dockerfile").write_text(
        "FROM python:3.13\nWORKDIR /app\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-"
        "recommends bash coreutils && rm -rf /var/lib/apt/lists/*\n"
        "RUN pip install --no-cache-dir pytest\n"
        "RUN echo built > /app/stamp\n"
    )
    env = gym.make("R2V/TerminalBench-v0", dataset_path=task_dir).unwrapped
    try:
        env.reset(options={"task_id": "installs"})
        assert [packages for _, packages in env.backend.satisfied_installs] == [
            ["bash", "coreutils"],
            ["pytest"],
        ]
        assert env.step("cat /app/stamp")[0].strip() == "built"  # the other RUN ran
    finally:
        env.close()
