"""One SLM engine for every request: a worker thread behind a bounded queue, and sessions.

The SLM, the verifier and the router are not thread-safe (one sampler RNG, one torch model),
so a single worker thread runs them. Requests wait in a bounded queue; a full queue is the
caller's cue to answer 429. When the policy can sample several prompts in one engine batch
(``sample_many``: the vllm backend), the worker takes up to ``max_batch`` waiting requests at
once; other backends take them one by one. The teacher is *not* called here: a slow teacher
must not hold up the SLM for everyone else.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

from r2v_agent.agent import Assessment, RoutedAgent
from r2v_agent.policy.base import SampleResult

__all__ = ["StepJob", "StepResult", "StepEngine", "Sessions", "QueueFull"]

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The engine's queue is at its bound."""


@dataclass
class StepJob:
    messages: list[dict[str, str]]
    observation: str
    step: int
    escalations_so_far: int
    seed: int | None = None
    future: Future[StepResult] = field(default_factory=Future)


@dataclass
class StepResult:
    sample: SampleResult
    assessment: Assessment
    queued_seconds: float


class StepEngine:
    """Runs :meth:`RoutedAgent.sample_step` and :meth:`RoutedAgent.assess` for queued jobs."""

    def __init__(
        self, agent: RoutedAgent, *, family: str, max_queue: int = 64, max_batch: int = 8
    ) -> None:
        self.agent = agent
        self.family = family
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue[tuple[StepJob, float] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="r2v-slm", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running step, fail the waiting ones, end the worker."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].future.cancel()
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: StepJob) -> Future[StepResult]:
        try:
            self._queue.put_nowait((job, time.perf_counter()))
        except queue.Full:
            raise QueueFull from None
        return job.future

    # ------------------------------------------------------------------------ worker side
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # stop after this batch
                    self._queue.put(None)
                    break
                batch.append(more)
            # A job whose caller gave up (timeout) was cancelled: skip it.
            live = [(j, t) for j, t in batch if j.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, batch: list[tuple[StepJob, float]]) -> None:
        sample_many = getattr(self.agent.policy, "sample_many", None)
        seeded = [item for item in batch if item[0].seed is not None]
        together = [item for item in batch if item[0].seed is None]
        if callable(sample_many) and len(together) > 1:
            started = time.perf_counter()
            try:
                samples = sample_many(
                    [job.messages for job, _ in together],
                    **self.agent.generation_options(self.family),
                )
            except Exception as exc:  # the engine failed: every caller hears why
                for job, _ in together:
                    job.future.set_exception(exc)
            else:
                for (job, queued), sample in zip(together, samples, strict=True):
                    self._finish(job, sample, started - queued)
            together = []
        for job, queued in seeded + together:
            started = time.perf_counter()
            try:
                if job.seed is not None:
                    self.agent.policy.reseed(job.seed)
                sample = self.agent.sample_step(job.messages, self.family)
            except Exception as exc:
                job.future.set_exception(exc)
                continue
            self._finish(job, sample, started - queued)

    def _finish(self, job: StepJob, sample: SampleResult, queued: float) -> None:
        try:
            assessment = self.agent.assess(
                sample,
                observation=job.observation,
                info={},
                family=self.family,
                step=job.step,
                escalations_so_far=job.escalations_so_far,
            )
        except Exception as exc:
            job.future.set_exception(exc)
            return
        job.future.set_result(StepResult(sample, assessment, queued))


@dataclass
class _Session:
    steps: int = 0
    escalations: int = 0
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Per-conversation step counts and escalations, bounded in number and age (LRU)."""

    def __init__(self, *, max_sessions: int = 10_000, ttl_seconds: float = 3600.0) -> None:
        self.max_sessions = int(max_sessions)
        self.ttl = float(ttl_seconds)
        self._items: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def begin(self, key: str | None) -> tuple[int, int]:
        """This step's (index, escalations so far) in session ``key``; ``None``: a new episode."""
        if key is None:
            return 0, 0
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            session = self._items.pop(key, None) or _Session()
            session.seen = now
            step = session.steps
            session.steps += 1
            self._items[key] = session
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)
            return step, session.escalations

    def undo(self, key: str | None) -> None:
        """Give back the step :meth:`begin` counted for a request that was turned away."""
        if key is None:
            return
        with self._lock:
            session = self._items.get(key)
            if session is not None and session.steps > 0:
                session.steps -= 1

    def escalated(self, key: str | None) -> None:
        if key is None:
            return
        with self._lock:
            session = self._items.get(key)
            if session is not None:
                session.escalations += 1

    def _expire(self, now: float) -> None:
        while self._items:
            oldest_key, oldest = next(iter(self._items.items()))
            if now - oldest.seen <= self.ttl:
                return
            del self._items[oldest_key]
