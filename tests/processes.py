"""Which processes run under sandbox uids, waiting for the kernel to reap the killed ones.

A sandbox kills its whole process tree before a call returns, but a killed process stays in
/proc until its parent (or init) reaps it; on a loaded machine that can take a moment. A
containment check therefore waits for the list to empty, up to a bound, instead of sampling once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path


def processes_of(owns: Callable[[int], bool]) -> list[int]:
    """The pids whose real uid satisfies ``owns``."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if owns(int(line.split()[1])):
            pids.append(int(status.parent.name))
    return pids


def left_running(
    owns: Callable[[int], bool], *, ignore: Collection[int] = (), timeout: float = 15.0
) -> list[int]:
    """The processes of ``owns`` (less the pids in ``ignore``, e.g. those that were there
    before) still listed after waiting up to ``timeout`` s for there to be none."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in processes_of(owns) if p not in ignore]
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def descendants(roots: Collection[int]) -> set[int]:
    """Every live process below the pids ``roots`` (by parent pid, as /proc lists them now)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def still_alive(pids: Collection[int], timeout: float = 15.0) -> list[int]:
    """The pids of ``pids`` still listed after waiting up to ``timeout`` s for none."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
