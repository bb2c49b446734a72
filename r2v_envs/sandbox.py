"""One way to build a sandboxed command line, shared by HumanEval's sandbox and TerminalBench's
local backend: bubblewrap namespaces and mounts, a drop to an unprivileged uid, and rlimits.

    argv = (
        BwrapCommand(bwrap)
        .ro_bind("/usr")
        .bind(workdir, "/sandbox")
        .tmpfs("/tmp")
        .proc()
        .dev()
        .build(["python3", "run.py"], chdir="/sandbox", uid=61234, setpriv=setpriv)
    )
    subprocess.Popen(argv, preexec_fn=lambda: apply_limits(memory_bytes=2**30, file_bytes=2**24))

Every sandbox gets the same isolation: no network, private PID/IPC/UTS (and cgroup, where the
kernel allows) namespaces, its own session, and death with its parent. Mounts are added in
order; a later one lies over an earlier one.
"""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["ISOLATION", "BwrapCommand", "drop_privileges", "apply_limits"]

#: The namespaces and process settings of every sandbox.
ISOLATION: tuple[str, ...] = (
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--new-session",
)


def drop_privileges(setpriv: str, uid: int) -> list[str]:
    """``setpriv`` to ``uid`` (and the same gid) with no supplementary groups or capabilities."""
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]


class BwrapCommand:
    """A bubblewrap command line, built mount by mount."""

    def __init__(self, bwrap: str) -> None:
        self._args: list[str] = [bwrap]

    def ro_bind(self, host: str | Path, inside: str | Path | None = None) -> BwrapCommand:
        self._args += ["--ro-bind", str(host), str(inside if inside is not None else host)]
        return self

    def ro_bind_try(self, host: str | Path, inside: str | Path | None = None) -> BwrapCommand:
        """Like :meth:`ro_bind`, skipped when ``host`` does not exist."""
        self._args += ["--ro-bind-try", str(host), str(inside if inside is not None else host)]
        return self

    def bind(self, host: str | Path, inside: str | Path) -> BwrapCommand:
        self._args += ["--bind", str(host), str(inside)]
        return self

    def tmpfs(self, path: str, *, perms: str | None = None) -> BwrapCommand:
        self._args += [*(["--perms", perms] if perms else []), "--tmpfs", path]
        return self

    def dir(self, path: str | Path, *, perms: str = "0755") -> BwrapCommand:
        """An empty folder (bwrap makes missing mount points 0700 otherwise: root's only)."""
        self._args += ["--perms", perms, "--dir", str(path)]
        return self

    def proc(self) -> BwrapCommand:
        self._args += ["--proc", "/proc"]
        return self

    def dev(self) -> BwrapCommand:
        self._args += ["--dev", "/dev"]
        return self

    def build(
        self,
        command: list[str],
        *,
        chdir: str,
        uid: int | None = None,
        setpriv: str | None = None,
    ) -> list[str]:
        """The full argv: the mounts, :data:`ISOLATION`, then ``command`` -- run as ``uid``
        through ``setpriv`` when both are given (bwrap keeps the two capabilities setpriv
        needs to switch, and setpriv drops every capability before ``command`` runs)."""
        argv = [*self._args, *ISOLATION, "--chdir", chdir]
        if uid is not None and setpriv:
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            command = drop_privileges(setpriv, uid) + command
        return argv + command


def apply_limits(
    *,
    memory_bytes: int,
    file_bytes: int,
    max_processes: int | None = None,
    cpu_seconds: int | None = None,
    open_files: int | None = None,
) -> None:
    """Set the calling process's rlimits (a ``preexec_fn``: bwrap and setpriv pass them on).
    ``max_processes`` only means something for an unprivileged uid (root is exempt)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    if open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    if max_processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
