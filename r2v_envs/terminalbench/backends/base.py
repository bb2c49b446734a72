"""The backend interface (start / exec / upload / restart / close) and the shell protocol.

Both backends keep one long-lived ``bash`` per episode, so ``cd``, variables and background jobs
persist between actions as in a terminal. Each command is sent as::

    { <command>
    } </dev/null 2>&1; printf '\\n__R2V_<nonce>__ %d\\n' $?

and its output is read up to the marker. The nonce is fresh per command, so output cannot fake
the end of a command; stdin is ``/dev/null`` so a command cannot swallow the protocol.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from r2v_envs.errors import R2VEnvError
from r2v_envs.terminalbench.tasks import Task

__all__ = [
    "ExecResult",
    "Backend",
    "ShellStream",
    "TaskSetupError",
    "run_shell_command",
    "check_syntax",
]


class TaskSetupError(R2VEnvError, RuntimeError):
    """A task's environment could not be set up (a Dockerfile step, a build, a service); the
    message names the task and, where there is one, the Dockerfile line."""


@dataclass
class ExecResult:
    output: str
    exit_code: int | None  #: None when the command was interrupted or the shell died
    elapsed: float
    timed_out: bool = False
    truncated_bytes: int = 0
    shell_exited: bool = False


class ShellStream(ABC):
    """A byte stream to and from a running shell."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> bytes | None:
        """Bytes available within ``timeout`` (``b""`` if none yet); ``None`` at end of stream."""

    @abstractmethod
    def interrupt(self) -> None:
        """Kill whatever the shell is running (the shell itself survives)."""


def check_syntax(command: str) -> str | None:
    """``bash -n``'s complaint about ``command``, or ``None`` if it parses."""
    result = subprocess.run(["bash", "-n"], input=command, capture_output=True, text=True)
    return result.stderr.strip() or "syntax error" if result.returncode else None


def run_shell_command(
    stream: ShellStream, command: str, timeout: float, max_output_bytes: int
) -> ExecResult:
    """Run one command through ``stream`` with the marker protocol; keep at most
    ``max_output_bytes`` of its output (the rest is counted and dropped)."""
    nonce = secrets.token_hex(8)
    marker = f"__R2V_{nonce}__"
    pattern = re.compile(rb"\n?" + re.escape(marker.encode()) + rb" (\d+)\n")
    stream.write(f"{{ {command}\n}} </dev/null 2>&1; printf '\\n%s %d\\n' '{marker}' $?\n".encode())
    start = time.monotonic()
    pending = bytearray()  # not yet known to be output: may hold the start of the marker
    kept = bytearray()
    dropped = 0

    def keep(data: bytes | bytearray) -> None:
        nonlocal dropped
        room = max(0, max_output_bytes - len(kept))
        kept.extend(data[:room])
        dropped += max(0, len(data) - room)

    def result(code: int | None, **flags: bool) -> ExecResult:
        text = kept.decode("utf-8", "replace")
        if dropped:
            text += f"\n[... {dropped} more bytes of output dropped ...]"
        return ExecResult(text, code, time.monotonic() - start, truncated_bytes=dropped, **flags)

    deadline, timed_out = start + timeout, False
    while True:
        now = time.monotonic()
        if now > deadline:
            if timed_out:  # killed, yet no marker: give up on this shell
                keep(pending)
                return result(None, timed_out=True, shell_exited=True)
            timed_out = True
            stream.interrupt()
            deadline = now + 5.0  # the marker follows the kill at once
        chunk = stream.read(min(0.05, max(0.0, deadline - now)))
        if chunk is None:  # the shell is gone (``exit``, or killed)
            keep(pending)
            return result(None, timed_out=timed_out, shell_exited=True)
        pending += chunk
        match = pattern.search(pending)
        if match:
            keep(pending[: match.start()])
            return result(None if timed_out else int(match.group(1)), timed_out=timed_out)
        spill = len(pending) - (len(marker) + 32)
        if spill > 0:
            keep(pending[:spill])
            del pending[:spill]


class Backend(ABC):
    """Runs one task's sandbox. ``start`` gives a fresh sandbox with the task's files at
    ``/app``; ``exec`` runs a shell command there; ``upload`` copies host files in; ``stop``
    kills every process but keeps the files; ``restart`` is ``stop`` plus a fresh shell;
    ``close`` removes everything."""

    name: str = "backend"

    def __init__(self, *, max_output_bytes: int = 64 * 1024) -> None:
        self.max_output_bytes = max_output_bytes
        self._stream: ShellStream | None = None  # the running shell, set by start()/restart()

    @abstractmethod
    def start(self, task: Task) -> None: ...

    def exec(self, command: str, timeout: float = 30.0) -> ExecResult:
        """Run ``command`` in the episode's shell; a shell that exits is replaced by a new one."""
        if self._stream is None:
            raise RuntimeError("exec() before start()")
        problem = check_syntax(command)
        if problem is not None:  # sent as is, it would leave bash waiting for the rest
            return ExecResult(f"bash: syntax error: {problem}", 2, 0.0)
        result = run_shell_command(self._stream, command, timeout, self.max_output_bytes)
        if result.shell_exited:
            self.restart()
        return result

    @abstractmethod
    def upload(self, source: Path, destination: str) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def restart(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_descendants(pid: int, keep: set[int]) -> None:
    """SIGKILL every descendant of ``pid`` except those in ``keep`` (host pids, via /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    stack, found = [pid], []
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    for child in found:
        if child not in keep:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, 9)
