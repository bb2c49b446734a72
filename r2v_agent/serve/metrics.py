"""Prometheus metrics of one ``r2v serve`` process (its own registry: two apps in one process,
as in the tests, never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "r2v_requests",
            "Chat requests answered, by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.steps = Counter(
            "r2v_steps", "Agent steps answered, by who answered.", ["actor"], registry=self.registry
        )
        self.escalations = Counter(
            "r2v_escalations",
            "Steps whose p_fail exceeded tau (the teacher was asked).",
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "r2v_teacher_fallbacks",
            "Escalations the teacher did not answer; the SLM's candidate was returned.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "r2v_request_seconds",
            "Chat request latency, end to end.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slm_seconds = Histogram(
            "r2v_slm_seconds",
            "SLM sampling time of a step (K candidates).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "r2v_queue_seconds",
            "Time a step waited for the SLM engine.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.teacher_seconds = Histogram(
            "r2v_teacher_seconds",
            "Teacher call time of an escalated step (retries included).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.llm_share = Gauge(
            "r2v_llm_share",
            "Share of answered steps the teacher answered.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "r2v_queue_depth", "Steps waiting for the SLM engine.", registry=self.registry
        )
        self._answered = 0
        self._by_teacher = 0

    def step(self, actor: str) -> None:
        self.steps.labels(actor).inc()
        self._answered += 1
        self._by_teacher += actor == "teacher"
        self.llm_share.set(self._by_teacher / self._answered)

    def render(self) -> bytes:
        return generate_latest(self.registry)
