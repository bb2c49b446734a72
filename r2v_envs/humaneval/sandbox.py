"""A hardened sandbox for agent-written Python: every run is a fresh, isolated process.

Layers (each one reported by :meth:`Sandbox.describe`):

1. **bubblewrap** (``bwrap``): no network namespace access, private PID/IPC/UTS namespaces, a
   root file system holding only the system libraries and the Python interpreter (read-only),
   a throw-away working directory at ``/sandbox``, an empty ``/tmp``; the host's home, datasets
   and caches are simply not there.
2. **an unprivileged uid** when the host runs as root (``setpriv``): host files stay read-only
   even where they are visible, other processes cannot be signalled, and ``RLIMIT_NPROC`` counts
   only the sandbox's processes (root is exempt from it).
3. **resource limits**: CPU seconds, address space, file size (caps output), process count,
   open files, no core dumps; a wall-clock limit after which the whole process tree is killed.
4. **an in-process guard** in the runner, like EvalPlus's reliability guard.

The expected outputs never enter the sandbox: the child reports its outputs as data and the host
compares them (:mod:`r2v_envs.humaneval.grading`). Without bubblewrap the sandbox still applies
2-4 and logs a warning that network and file-system isolation are missing.

**Importable packages.** Beyond the standard library, the code may import the packages named in
``packages`` (default :data:`DEFAULT_PACKAGES`: numpy, which HumanEval solutions use and
EvalPlus's own checker allows). Each is found in the host's environment and bound read-only at
``/packages/<name>`` (with its bundled ``<name>.libs``); nothing else of the host's
site-packages is visible. Values of those packages' scalar and array types are reported as the
equivalent Python values.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2v_envs.sandbox import BwrapCommand, apply_limits, drop_privileges

__all__ = ["SandboxLimits", "CallResult", "RunResult", "Sandbox", "DEFAULT_PACKAGES"]

logger = logging.getLogger(__name__)

_RUNNER = Path(__file__).with_name("_runner.py")

#: Packages agent code may import besides the standard library (read-only in the sandbox).
DEFAULT_PACKAGES: tuple[str, ...] = ("numpy",)
_uid_counter = itertools.count()


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    memory_bytes: int = 2 * 1024**3  #: address space of the child
    max_processes: int = 32  #: RLIMIT_NPROC for the sandbox uid (fork bombs stop here)
    file_bytes: int = 512 * 1024**2  #: largest file the child may write (its outputs included)
    open_files: int = 64
    startup_seconds: float = 5.0  #: time to start the interpreter, on top of the load limit
    call_slack_seconds: float = 1.0  #: watchdog slack on top of each call's time limit
    max_wall_seconds: float = 120.0  #: hard cap for one run, whatever the call limits say


@dataclass
class CallResult:
    """Outcome of one call: ``status`` is ``ok`` (``output`` holds the value), ``error``,
    ``timeout`` or ``missing`` (the process died before reporting it)."""

    status: str
    output: Any = None
    error: str = ""


@dataclass
class RunResult:
    """Outcome of one sandboxed run of ``code`` on a list of inputs."""

    load: str  #: ``ok``, ``error`` (the code raised on import), ``timeout`` or ``crashed``
    calls: list[CallResult] = field(default_factory=list)
    error: str = ""
    stdout: str = ""
    wall_seconds: float = 0.0
    killed: bool = False  #: the wall-clock limit was reached and the process tree killed


class Sandbox:
    """Runs untrusted Python functions on inputs; see the module docstring for the layers.

    Args:
        limits: resource limits.
        use_bwrap: ``None`` = use bubblewrap when installed, ``True`` = require it.
        python: interpreter to run inside (default: this one's base installation; the runner
            needs the standard library only).
        packages: top-level packages the code may import besides the standard library (see
            the module docstring); ``()`` for the standard library only. A package that is
            not installed on the host is a ``ValueError`` naming it.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        use_bwrap: bool | None = None,
        python: str | None = None,
        packages: tuple[str, ...] | list[str] = DEFAULT_PACKAGES,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.packages = tuple(packages)
        #: host folder -> name under /packages (each package and its bundled ".libs")
        self._package_dirs = _locate_packages(self.packages)
        #: The unprivileged uids this sandbox has run code under (a caller can check that
        #: nothing of its own is left running without counting other jobs' sandboxes).
        self.uids_used: set[int] = set()
        self.bwrap = shutil.which("bwrap")
        if use_bwrap and not self.bwrap:
            raise RuntimeError(
                "bubblewrap is required but not installed: apt-get install bubblewrap"
            )
        if use_bwrap is False:
            self.bwrap = None
        self.setpriv = shutil.which("setpriv") if os.geteuid() == 0 else None
        self.python = python or self._base_python()
        if not self.bwrap:
            logger.warning(
                "bubblewrap not found: the HumanEval sandbox runs without network and file-system "
                "isolation (install it: apt-get install bubblewrap)"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "bubblewrap": bool(self.bwrap),
            "unprivileged_uid": bool(self.setpriv),
            "limits": self.limits,
            "packages": self.packages,
        }

    # ------------------------------------------------------------------------------ running
    def run_calls(
        self,
        code: str,
        entry_point: str,
        inputs: list[Any],
        time_limits: list[float],
        *,
        stop_on_failure: bool = True,
        load_time_limit: float = 5.0,
        judge: Callable[[int, CallResult], bool] | None = None,
    ) -> RunResult:
        """Define ``code``, then call ``entry_point(*args)`` for each ``args`` in ``inputs``.

        ``judge(index, result)`` sees each call's result as soon as the child reports it; when it
        returns ``False`` the run stops there (a wrong answer makes later calls pointless).
        """
        if len(inputs) != len(time_limits):
            raise ValueError(f"{len(inputs)} inputs but {len(time_limits)} time limits")
        workdir = Path(tempfile.mkdtemp(prefix="r2v-sandbox-"))
        uid = 61000 + (os.getpid() * 7 + next(_uid_counter)) % 4000 if self.setpriv else None
        try:
            payload = {
                "code": code,
                "entry_point": entry_point,
                "inputs": inputs,
                "time_limits": [float(t) for t in time_limits],
                "load_time_limit": float(load_time_limit),
                "stop_on_failure": stop_on_failure,
                "sys_path": [self._packages_root(workdir)] if self._package_dirs else [],
            }
            if self._package_dirs and not self.bwrap:  # no mounts: link them in instead
                (workdir / "packages").mkdir()
                for host, name in self._package_dirs.items():
                    (workdir / "packages" / name).symlink_to(host)
            (workdir / "payload.json").write_text(json.dumps(payload))
            shutil.copy(_RUNNER, workdir / "runner.py")
            if uid is not None:
                self.uids_used.add(uid)
                os.chown(workdir, uid, uid)
                os.chmod(workdir, 0o700)
            stages = [float(load_time_limit), *(float(t) for t in time_limits)]
            return self._execute(workdir, uid, stages, judge)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _execute(
        self,
        workdir: Path,
        uid: int | None,
        stages: list[float],
        judge: Callable[[int, CallResult], bool] | None,
    ) -> RunResult:
        """Run the child under a watchdog: each stage (loading, then every call) must report
        within its time limit plus slack, whether or not the child honours its own timers."""
        inside = "/sandbox" if self.bwrap else str(workdir)
        command = [
            self.python,
            "-I",
            "-S",
            f"{inside}/runner.py",
            f"{inside}/payload.json",
            f"{inside}/result.jsonl",
        ]
        if self.bwrap:
            command = self._bwrap(workdir).build(
                command, chdir="/sandbox", uid=uid, setpriv=self.setpriv
            )
        elif uid is not None and self.setpriv:
            command = drop_privileges(self.setpriv, uid) + command
        env = {"PATH": "/usr/bin:/bin", "HOME": inside, "TMPDIR": inside, "LANG": "C.UTF-8"}
        # One BLAS thread: numpy's thread pool would spend the sandbox's process budget.
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        # Set here, numpy's import need not putenv() it (the runner's guard disables putenv).
        env["OPENBLAS_MAIN_FREE"] = "1"
        total = min(self.limits.max_wall_seconds, sum(stages) + self.limits.startup_seconds)
        cpu = int(total) + 1
        result_path = workdir / "result.jsonl"
        start = time.monotonic()
        killed = False
        # The runner captures print(); raw writes to fd 1/2 go nowhere.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            start_new_session=True,  # one process group to kill, whatever the child forks
            preexec_fn=lambda: self._limit(cpu),
        )
        n_calls = len(stages) - 1
        result = RunResult(load="crashed", calls=[CallResult("missing") for _ in range(n_calls)])
        stopped = False
        stage, offset, partial = 0, 0, b""
        try:
            deadline = start + self.limits.startup_seconds + stages[0]
            while proc.poll() is None and not stopped:
                now = time.monotonic()
                if now > deadline or now - start > total:
                    killed = True
                    break
                time.sleep(0.01)
                lines, offset, partial = self._new_lines(result_path, offset, partial)
                if lines:
                    stage = min(stage + len(lines), len(stages) - 1)
                    deadline = time.monotonic() + stages[stage] + self.limits.call_slack_seconds
                    stopped = not self._ingest(lines, result, judge)
        finally:
            self._kill_tree(proc)
        if not stopped:  # what the child wrote after the last look
            lines, offset, partial = self._new_lines(result_path, offset, partial)
            self._ingest(lines, result, judge)
        elapsed = time.monotonic() - start
        result.wall_seconds = elapsed
        result.killed = killed
        if killed and result.load == "ok":
            for call in result.calls:
                if call.status == "missing":
                    call.status = "timeout"
                    break
        elif killed:
            result.load = "timeout"
        return result

    @staticmethod
    def _new_lines(path: Path, offset: int, partial: bytes) -> tuple[list[bytes], int, bytes]:
        """Complete lines appended to ``path`` since ``offset`` (``partial``: an unfinished one)."""
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return [], offset, partial
        *lines, rest = (partial + chunk).split(b"\n")
        return lines, offset + len(chunk), rest

    @staticmethod
    def _ingest(
        lines: list[bytes], result: RunResult, judge: Callable[[int, CallResult], bool] | None
    ) -> bool:
        """Parse the child's records into ``result`` (each line once); ``False`` to stop."""
        n_calls = len(result.calls)
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                return False  # a torn or forged line: stop trusting the child here
            if not isinstance(record, dict):
                return False
            if "load" in record:
                result.load = str(record["load"])
                result.error = str(record.get("error", ""))[:1000]
            elif "i" in record:
                index = record["i"]
                if not isinstance(index, int) or not 0 <= index < n_calls:
                    return False
                status = record.get("status")
                if status == "ok":
                    call = CallResult("ok", record.get("out"))
                elif status in ("error", "timeout"):
                    call = CallResult(status, error=str(record.get("error", ""))[:1000])
                else:
                    return False
                result.calls[index] = call
                if judge is not None and not judge(index, call):
                    return False
            elif "stdout" in record:
                result.stdout = str(record["stdout"])[: 16 * 1024]
        return True

    def _bwrap(self, workdir: Path) -> BwrapCommand:
        """The sandbox's mounts: the system read-only, the work folder as /sandbox, the
        importable packages under /packages, a private /tmp, /proc and /dev."""
        assert self.bwrap is not None
        command = BwrapCommand(self.bwrap)
        for path in ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin"):
            if os.path.exists(path):
                command.ro_bind(path)
        python_root = str(Path(self.python).resolve().parents[1])
        if not python_root.startswith("/usr"):
            command.ro_bind(python_root)
        command.ro_bind_try("/etc/ld.so.cache").ro_bind_try("/etc/localtime")
        command.bind(workdir, "/sandbox")
        if self._package_dirs:
            command.dir("/packages")  # traversable by the sandbox uid
            for host, name in self._package_dirs.items():
                command.ro_bind(host, f"/packages/{name}")
        return command.tmpfs("/tmp").proc().dev()

    def _packages_root(self, workdir: Path) -> str:
        return "/packages" if self.bwrap else str(workdir / "packages")

    def _limit(self, cpu_seconds: int) -> None:
        limits = self.limits
        apply_limits(
            memory_bytes=limits.memory_bytes,
            file_bytes=limits.file_bytes,
            cpu_seconds=cpu_seconds,
            open_files=limits.open_files,
            # Counts the sandbox uid's processes; meaningless for root itself.
            max_processes=limits.max_processes if self.setpriv else None,
        )

    @staticmethod
    def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    @staticmethod
    def _base_python() -> str:
        # The runner needs only the standard library: the base interpreter, not the venv's.
        candidate = (
            Path(sys.base_prefix)
            / "bin"
            / f"python{sys.version_info.major}.{sys.version_info.minor}"
        )
        return str(candidate if candidate.exists() else Path(sys.executable).resolve())


def _locate_packages(names: tuple[str, ...]) -> dict[str, str]:
    """The host folders of ``names`` (and their auditwheel ``<name>.libs``), for binding."""
    import importlib.util

    found: dict[str, str] = {}
    for name in names:
        spec = importlib.util.find_spec(name) if name.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"sandbox package {name!r} is not an installed package (importable packages "
                "must be installed in this Python environment)"
            )
        folder = Path(next(iter(spec.submodule_search_locations))).resolve()
        found[str(folder)] = name
        libs = folder.with_name(f"{name}.libs")
        if libs.is_dir():
            found[str(libs)] = libs.name
    return found
