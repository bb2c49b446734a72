"""The local backend: bubblewrap on this machine.

The sandbox sees the host's system directories read-only, an empty ``/tmp``, no home directory
(``/root`` and ``/home`` are empty; only an interpreter installed under them is re-bound), no
network (a private network namespace), its own PID namespace (every process dies with the
episode), a throw-away workspace at ``/app`` and, at grading time, the tests at ``/tests``.
When the host runs as root the shell runs as an unprivileged uid, so the process limit applies
and host files stay read-only even through a writable mount.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r2v_envs.errors import MissingDependencyError
from r2v_envs.sandbox import BwrapCommand, apply_limits
from r2v_envs.terminalbench.backends.base import (
    Backend,
    ShellStream,
    kill_descendants,
)
from r2v_envs.terminalbench.tasks import Task

__all__ = ["LocalBackend", "TaskSetupError"]

_uids = itertools.count()
_HIDDEN = {"/proc", "/dev", "/sys", "/tmp", "/root", "/home", "/app", "/tests", "/lost+found"}
# Folders the sandbox replaces with an empty tmpfs; an interpreter inside one is bound back.
_SHADOWED = ("/root/", "/home/", "/tmp/")


class TaskSetupError(RuntimeError):
    """The task's Dockerfile steps failed in the sandbox."""


class _PipeStream(ShellStream):
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in, self._out = proc.stdin, proc.stdout.fileno()
        self._shell_pid: int | None = None

    def write(self, data: bytes) -> None:
        try:
            self._in.write(data)
            self._in.flush()
        except (BrokenPipeError, ValueError):
            pass  # the shell is gone; read() reports it

    def read(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self._out], [], [], timeout)
        if not ready:
            return b""
        data = os.read(self._out, 1 << 16)
        return data or None

    def interrupt(self) -> None:
        shell = self.shell_pid()
        if shell is None:
            return
        # Everything in the sandbox but the shell and the bwrap processes above it: orphans
        # (a fork bomb's background children) are re-parented to the sandbox's init, out of
        # the shell's own tree.
        keep, pid = {shell}, shell
        while pid not in (self.proc.pid, 0, 1):
            pid = _parent(pid)
            keep.add(pid)
        kill_descendants(self.proc.pid, keep=keep)

    def shell_pid(self) -> int | None:
        """Host pid of the bash inside (outer bwrap -> inner bwrap -> bash)."""
        if self._shell_pid is None:
            for _ in range(100):
                pid = _find_descendant(self.proc.pid, "bash")
                if pid is not None:
                    self._shell_pid = pid
                    break
                time.sleep(0.01)
        return self._shell_pid


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _find_descendant(root: int, comm: str) -> int | None:
    frontier = [root]
    while frontier:
        pid = frontier.pop(0)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for child in map(int, children):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                    return child
            except OSError:
                continue
            frontier.append(child)
    return None


class LocalBackend(Backend):
    """bubblewrap sandbox on this machine; see the module docstring.

    Args:
        memory_bytes: address-space limit of every process in the sandbox.
        max_processes: process limit of the sandbox uid (fork bombs stop here).
        max_file_bytes: largest file a process may write.
        max_output_bytes: output kept per command (the rest is counted and dropped).
    """

    name = "local"

    def __init__(
        self,
        *,
        memory_bytes: int = 4 * 1024**3,
        max_processes: int = 256,
        max_file_bytes: int = 1024**3,
        max_output_bytes: int = 64 * 1024,
    ) -> None:
        super().__init__(max_output_bytes=max_output_bytes)
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise MissingDependencyError(
                "the local TerminalBench backend needs bubblewrap: apt-get install bubblewrap"
            )
        self.setpriv = shutil.which("setpriv") if os.geteuid() == 0 else None
        self.memory_bytes = memory_bytes
        self.max_processes = max_processes
        self.max_file_bytes = max_file_bytes
        self.uid: int | None = None
        self.workspace: Path | None = None
        self.tests_host: Path | None = None
        self.workdir = "/app"
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stream: _PipeStream | None = None

    # ------------------------------------------------------------------------------ interface
    def start(self, task: Task) -> None:
        self.close()
        self.uid = 57000 + (os.getpid() * 7 + next(_uids)) % 3000 if self.setpriv else None
        self.workspace = Path(tempfile.mkdtemp(prefix="r2v-tb-app-"))
        self.tests_host = Path(tempfile.mkdtemp(prefix="r2v-tb-tests-"))
        self.workdir, self.env = "/app", {}
        runs = self._replay_files(task)
        self._own(self.workspace)
        self._spawn()
        for command in runs:
            # Like Docker, every RUN starts afresh in the WORKDIR: a subshell keeps cd local.
            result = self.exec(f"( cd {shlex.quote(self.workdir)} && {command}\n)", timeout=120)
            if result.exit_code != 0:
                raise TaskSetupError(
                    f"task {task.task_id!r}: Dockerfile step RUN {command!r} failed "
                    f"(exit {result.exit_code}): {result.output[-500:]}"
                )

    def upload(self, source: Path, destination: str) -> None:
        assert self.workspace is not None and self.tests_host is not None
        for prefix, host in (("/tests", self.tests_host), ("/app", self.workspace)):
            if destination == prefix or destination.startswith(prefix + "/"):
                target = host / destination[len(prefix) :].lstrip("/")
                break
        else:
            raise ValueError(f"the local backend uploads under /app or /tests, not {destination!r}")
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        self._own(target)

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def close(self) -> None:
        self.stop()
        for folder in (self.workspace, self.tests_host):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        self.workspace = self.tests_host = None

    # ------------------------------------------------------------------------------ internals
    def _replay_files(self, task: Task) -> list[str]:
        """Apply WORKDIR / COPY / ADD / ENV to the workspace; return the RUN commands."""
        assert self.workspace is not None
        runs: list[str] = []
        for step in task.docker_steps():
            if step.op == "WORKDIR":
                self.workdir = step.args if step.args.startswith("/") else f"/app/{step.args}"
            elif step.op in ("COPY", "ADD"):
                parts = [p for p in shlex.split(step.args) if not p.startswith("--")]
                *sources, dest = parts
                if not dest.startswith("/"):
                    dest = f"{self.workdir.rstrip('/')}/{dest}"
                for src in sources:
                    path = (task.path / src).resolve()
                    if task.path.resolve() not in [path, *path.parents]:
                        raise TaskSetupError(f"COPY source {src!r} leaves the task folder")
                    self.upload(
                        path,
                        dest
                        if not dest.endswith("/")
                        else dest + (path.name if path.is_file() else ""),
                    )
            elif step.op == "ENV":
                key, _, value = (
                    step.args.partition("=") if "=" in step.args else step.args.partition(" ")
                )
                self.env[key.strip()] = value.strip().strip('"')
            elif step.op == "RUN":
                runs.append(step.args)
        return runs

    def _own(self, path: Path) -> None:
        if self.uid is None:
            return
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.uid)
        os.lchown(path, self.uid, self.uid)

    def _spawn(self) -> None:
        assert self.workspace is not None and self.tests_host is not None
        command = BwrapCommand(self.bwrap or "bwrap")
        for entry in sorted(os.listdir("/")):
            path = f"/{entry}"
            if path not in _HIDDEN and os.path.isdir(path):
                command.ro_bind(path)
        command.tmpfs("/root").tmpfs("/home")
        command.bind(self.workspace, "/app").ro_bind(self.tests_host, "/tests")
        command.tmpfs("/tmp", perms="1777").dev().proc()
        # The interpreter and its venv (pytest for the tests), when a folder above replaced them
        # with an empty tmpfs (a home, or a checkout under /tmp): bound again on top, last.
        for prefix in sorted({sys.base_prefix, sys.prefix}):
            if prefix.startswith(_SHADOWED):
                # Intermediate folders bwrap creates are 0700: make them traversable first.
                parts = Path(prefix).parts
                for depth in range(3, len(parts)):
                    command.dir(Path(*parts[:depth]))
                command.ro_bind(prefix)
        argv = command.build(
            ["/bin/bash", "--noprofile", "--norc"],
            chdir=self.workdir,
            uid=self.uid,
            setpriv=self.setpriv,
        )
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "TEST_DIR": "/tests",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            **self.env,
        }
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=self._limits,
        )
        self._stream = _PipeStream(self._proc)

    def _limits(self) -> None:
        apply_limits(
            memory_bytes=self.memory_bytes,
            file_bytes=self.max_file_bytes,
            # Root is exempt from RLIMIT_NPROC; the sandbox uid is not.
            max_processes=self.max_processes if self.setpriv else None,
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, 9)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._proc.wait()
        self._proc = self._stream = None
