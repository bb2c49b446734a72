"""Episodes in worker processes: one ``spawn`` pool under the collect stage and evaluation runs.

A worker that dies -- killed for memory, or unable to start because the parent's ``__main__``
cannot be re-imported (a script fed on standard input) -- is an error here, raised at once with
what to do, never a hang: :class:`multiprocessing.pool.Pool` replaces dead workers and waits
forever for the task they held, where :class:`concurrent.futures.ProcessPoolExecutor` reports a
broken pool. Results come back as they finish; the callers write each one as it arrives, so a
failed run keeps what it finished and resumes from there.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, TypeVar

from r2v_agent.errors import WorkerError

__all__ = ["map_unordered"]

T = TypeVar("T")
R = TypeVar("R")


def map_unordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    *,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[R]:
    """``fn`` over ``items`` in ``workers`` spawned processes, yielding results as they finish
    (``fn`` must be importable: a module-level function). At most ``2 * workers`` items are in
    flight, so a long job list is not pickled up front. An exception raised by ``fn`` is raised
    here; a worker that dies raises :class:`~r2v_agent.errors.WorkerError`. Leaving the loop
    early cancels what has not started."""
    todo = iter(items)
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=initializer,
        initargs=initargs,
    )
    try:
        pending = {executor.submit(fn, item) for item in islice(todo, 2 * workers)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                # keep the pool fed: one new item for each finished one
                pending |= {executor.submit(fn, item) for item in islice(todo, 1)}
                yield _result(future)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _result(future: Future[R]) -> R:
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerError(
            "a worker process died (killed for memory, or it could not start: a script read "
            "from standard input cannot be re-imported by spawned workers -- run it from a "
            "file, or use 1 worker); what finished before is saved, a rerun resumes"
        ) from None
