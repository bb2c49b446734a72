"""The local backend: bubblewrap on this machine.

The sandbox sees the host's system directories read-only, an empty ``/tmp``, no home directory
(``/root`` and ``/home`` are empty; only an interpreter installed under them is re-bound), no
network (a private network namespace), its own PID namespace (every process dies with the
episode), a throw-away workspace at ``/app`` and, at grading time, the tests at ``/tests``.
When the host runs as root the shell runs as an unprivileged uid, so the process limit applies
and host files stay read-only even through a writable mount.

The task's Dockerfile is replayed (``WORKDIR``, ``ENV``, ``COPY``/``ADD``, ``RUN``); a ``RUN``
that only installs apt/pip packages the host already has is skipped (see ``installs.py``), one
that needs anything else runs offline as written and, if it fails, names its line.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from r2v_envs.errors import MissingDependencyError
from r2v_envs.sandbox import BwrapCommand, apply_limits
from r2v_envs.terminalbench.backends.base import (
    Backend,
    ShellStream,
    TaskSetupError,
    kill_descendants,
)
from r2v_envs.terminalbench.backends.installs import already_satisfied
from r2v_envs.terminalbench.dockerfile import DockerfileError, Instruction
from r2v_envs.terminalbench.tasks import Task

__all__ = ["LocalBackend", "TaskSetupError"]

_uids = itertools.count()
_HIDDEN = {"/proc", "/dev", "/sys", "/tmp", "/root", "/home", "/app", "/tests", "/lost+found"}
# Folders the sandbox replaces with an empty tmpfs; an interpreter inside one is bound back.
_SHADOWED = ("/root/", "/home/", "/tmp/")
# Absolute paths in a RUN command: their top-level folder may need to exist in the sandbox.
_ABSOLUTE = re.compile(r"(?<![\w.$/~-])/([A-Za-z0-9_][A-Za-z0-9_.-]*)")
# Dockerfile instructions that do not change the files or the shell (or only the image's metadata).
_METADATA_OPS = {
    "ARG", "CMD", "ENTRYPOINT", "EXPOSE", "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD",
    "SHELL", "STOPSIGNAL", "USER", "VOLUME",
}  # fmt: skip


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


def _has_entries(path: str) -> bool:
    try:
        return any(os.scandir(path))
    except OSError:
        return True  # unreadable: treat as the host's


def _env_pairs(ins: Instruction) -> dict[str, str]:
    """``ENV A=1 B="x y"`` or the legacy ``ENV A some value``."""
    try:
        tokens = shlex.split(ins.args)
    except ValueError as exc:
        raise DockerfileError(f"{ins.where}: {exc}") from None
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: ins.args.split(None, 1)[1] if len(tokens) > 1 else ""}
    return dict(token.partition("=")[::2] for token in tokens)


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
        self.roots: dict[str, Path] = {}  # top-level folders of the task's own (e.g. /protected)
        #: RUN steps skipped because they only install packages the host has: (where, packages)
        self.satisfied_installs: list[tuple[str, list[str]]] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stream: _PipeStream | None = None

    # ------------------------------------------------------------------------------ interface
    def start(self, task: Task) -> None:
        self.close()
        if task.multi_container:
            others = ", ".join(name for name in task.services if name != "client")
            raise TaskSetupError(
                f"task {task.task_id!r} is a multi-container task (services: client, {others}); "
                "the local backend runs single-container tasks only: use backend='docker'"
            )
        self.roots = {}
        self.satisfied_installs = []
        self.uid = 57000 + (os.getpid() * 7 + next(_uids)) % 3000 if self.setpriv else None
        self.workspace = Path(tempfile.mkdtemp(prefix="r2v-tb-app-"))
        self.tests_host = Path(tempfile.mkdtemp(prefix="r2v-tb-tests-"))
        self.workdir, self.env = "/app", {}
        try:
            runs = self._replay_files(task)
        except DockerfileError as exc:
            raise TaskSetupError(f"task {task.task_id!r}: {exc}") from None
        self._own(self.workspace)
        for root in self.roots.values():
            self._own(root)
        self._spawn()
        for instruction, workdir in runs:
            script = instruction.run_script()
            satisfied, packages = already_satisfied(script)
            if satisfied:  # apt/pip installs of packages the host has: nothing left to do
                self.satisfied_installs.append((instruction.where, packages))
                continue
            # Like Docker, every RUN starts afresh in its WORKDIR: a subshell keeps cd local.
            result = self.exec(f"( cd {shlex.quote(workdir)} && {script}\n)", timeout=600)
            if result.exit_code != 0:
                raise TaskSetupError(
                    f"task {task.task_id!r}: {instruction.where} failed "
                    f"(exit {result.exit_code}): {result.output[-500:]}"
                )

    def upload(self, source: Path, destination: str) -> None:
        target = self._host_path(destination)
        if target is None:
            raise ValueError(
                "the local backend writes under /app, /tests or a top-level folder the host "
                f"does not have, not {destination!r}"
            )
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
        for folder in (self.workspace, self.tests_host, *self.roots.values()):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        self.workspace = self.tests_host = None
        self.roots = {}

    # ------------------------------------------------------------------------------ internals
    def _host_path(self, inside: str) -> Path | None:
        """Where a sandbox path lives on the host: under /app, /tests, or a writable top-level
        folder of the task's own (made on first use); None for a path of the host's system."""
        assert self.workspace is not None and self.tests_host is not None
        parts = Path(os.path.normpath(inside)).parts
        if len(parts) < 2 or parts[0] != "/":
            return None
        top, rest = parts[1], parts[2:]
        if top in ("app", "tests"):
            return (self.workspace if top == "app" else self.tests_host).joinpath(*rest)
        if top not in self.roots:
            if f"/{top}" in _HIDDEN or os.path.lexists(f"/{top}") and _has_entries(f"/{top}"):
                return None
            self.roots[top] = Path(tempfile.mkdtemp(prefix=f"r2v-tb-{top}-"))
        return self.roots[top].joinpath(*rest)

    def _replay_files(self, task: Task) -> list[tuple[Instruction, str]]:
        """Apply WORKDIR / COPY / ADD / ENV to the sandbox's files; return the RUN steps (with
        their WORKDIR) to run once the shell is up."""
        assert self.workspace is not None
        runs: list[tuple[Instruction, str]] = []
        for ins in task.docker_steps():
            if ins.op == "WORKDIR":
                self.workdir = os.path.normpath(os.path.join(self.workdir, ins.args.strip('"')))
                folder = self._host_path(self.workdir)
                if folder is None:
                    raise TaskSetupError(
                        f"task {task.task_id!r}: {ins.where}: the local backend cannot make "
                        f"{self.workdir} (a folder of the host's system); use backend='docker'"
                    )
                folder.mkdir(parents=True, exist_ok=True)
            elif ins.op in ("COPY", "ADD"):
                self._copy(task, ins)
            elif ins.op == "ENV":
                self.env.update(_env_pairs(ins))
            elif ins.op == "RUN":
                # Folders a RUN writes at the top level (mkdir /protected) must exist to be made.
                for top in _ABSOLUTE.findall(ins.run_script()):
                    if not os.path.lexists(f"/{top}"):
                        self._host_path(f"/{top}")
                runs.append((ins, self.workdir))
            elif ins.op not in _METADATA_OPS:
                raise TaskSetupError(
                    f"task {task.task_id!r}: {ins.where}: the local backend cannot replay {ins.op}"
                )
        return runs

    def _copy(self, task: Task, ins: Instruction) -> None:
        spec = ins.copy_spec()
        if "from" in spec.flags:
            raise TaskSetupError(
                f"task {task.task_id!r}: {ins.where}: multi-stage COPY --from needs the docker "
                "backend"
            )
        dest = os.path.normpath(os.path.join(self.workdir, spec.dest))
        into_folder = spec.dest.endswith("/") or len(spec.sources) + len(spec.inline) > 1
        context = (task.client.context or task.path).resolve()
        files: list[Path] = []
        for pattern in spec.sources:
            if ins.op == "ADD" and re.match(r"[a-z]+://", pattern):
                raise TaskSetupError(
                    f"task {task.task_id!r}: {ins.where}: ADD from a URL needs the network"
                )
            matches = sorted(glob.glob(str(context / pattern))) if glob.has_magic(pattern) else []
            paths = [Path(m) for m in matches] or [context / pattern]
            for path in paths:
                path = path.resolve()
                if context not in [path, *path.parents]:
                    raise TaskSetupError(
                        f"task {task.task_id!r}: {ins.where}: source {pattern!r} leaves the "
                        "build context"
                    )
                if not path.exists():
                    raise TaskSetupError(
                        f"task {task.task_id!r}: {ins.where}: no file matches {pattern!r}"
                    )
                files.append(path)
        if len(files) > 1:
            into_folder = True
        written: list[Path] = []
        for path in files:
            target = f"{dest}/{path.name}" if into_folder and path.is_file() else dest
            host = self._host_path(target)
            if host is None:
                raise TaskSetupError(
                    f"task {task.task_id!r}: {ins.where}: the local backend writes only under "
                    "/app or a top-level folder the host does not have (not "
                    f"{target}); use backend='docker'"
                )
            if ins.op == "ADD" and path.is_file() and tarfile.is_tarfile(path):
                host.mkdir(parents=True, exist_ok=True)
                shutil.unpack_archive(path, host, format="tar")
            else:
                self.upload(path, target)
            written.append(host)
        for name, content in spec.inline.items():
            host = self._host_path(f"{dest}/{name}" if into_folder else dest)
            if host is None:
                raise TaskSetupError(
                    f"task {task.task_id!r}: {ins.where}: cannot write {dest} on the local backend"
                )
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_text(content)
            written.append(host)
        if "chmod" in spec.flags:
            mode = int(spec.flags["chmod"], 8)
            for host in written:
                for root, _, names in os.walk(host) if host.is_dir() else [("", [], [str(host)])]:
                    for name in names:
                        os.chmod(os.path.join(root, name), mode)

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
        for top, host in sorted(self.roots.items()):
            command.bind(host, f"/{top}")
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
