"""``r2v serve``: a routed agent behind OpenAI's chat-completions API (an ASGI app).

Each ``POST /v1/chat/completions`` is one agent step: the SLM samples K candidates for the
client's own messages (its chat template), the verifier and the router score them, and the
best SLM candidate's action is returned -- or, when p_fail > tau, the client's messages go to
the teacher endpoint and its reply is returned. A teacher that fails (down, 5xx after retries,
malformed) never turns into a 5xx here: the SLM's answer is returned and ``r2v`` says so.

The reply is a normal ``chat.completion`` (or its ``stream=true`` chunks) plus an ``r2v``
object: who answered, p_fail, tau, the candidates and their verifier scores, the step's cost.
``usage`` counts both models' tokens (the SLM's K candidates included). A request may carry
``{"r2v": {"session": ID, "tau": 0.3}}`` (the ``openai`` client's ``extra_body``): steps of one
session accumulate the per-episode features (step index, earlier escalations); without one,
each request is its own episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from r2v_agent.agent import RoutedAgent
from r2v_agent.serve.engine import QueueFull, Sessions, StepEngine, StepJob, StepResult
from r2v_agent.serve.metrics import ServeMetrics
from r2v_agent.serve.protocol import (
    APIError,
    ChatRequest,
    completion,
    error_body,
    parse_request,
    stream_chunks,
)
from r2v_agent.teacher.openai_http import OpenAITeacher

__all__ = ["ServeSettings", "create_app"]

logger = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """How the server admits and bounds requests (``r2v serve --help`` sets them)."""

    model_name: str = "r2v-agent"  #: the model id clients send and ``/v1/models`` lists
    api_key: str | None = None  #: every request needs ``Authorization: Bearer <key>``
    tau: float | None = None  #: the escalation threshold; ``None``: the agent's own
    family: str = "textworld"  #: prompt family: action extraction and generation limits
    max_queue: int = 64  #: steps waiting for the SLM; past it, 429 with Retry-After
    max_batch: int = 8  #: steps sampled as one engine batch (backends with sample_many)
    request_timeout: float = 120.0  #: seconds a step may wait for and run on the SLM
    max_body_bytes: int = 1_000_000  #: larger request bodies are refused (413)
    max_messages: int = 512
    max_chars: int = 200_000  #: characters of message content per request
    max_sessions: int = 10_000  #: sessions kept (least recently used dropped first)
    session_ttl: float = 3600.0  #: seconds an idle session is kept
    retry_after: int = 1  #: seconds suggested to a client turned away by a full queue


def create_app(
    agent: RoutedAgent, teacher: OpenAITeacher | None, settings: ServeSettings | None = None
) -> Starlette:
    """The ASGI app; the SLM engine starts with the app and stops with it (lifespan)."""
    settings = settings or ServeSettings()
    tau = agent.threshold if settings.tau is None else settings.tau
    engine = StepEngine(
        agent, family=settings.family, max_queue=settings.max_queue, max_batch=settings.max_batch
    )
    sessions = Sessions(max_sessions=settings.max_sessions, ttl_seconds=settings.session_ttl)
    metrics = ServeMetrics()
    key = settings.api_key.encode() if settings.api_key else None

    def refuse(error: APIError) -> JSONResponse:
        metrics.requests.labels(str(error.status)).inc()
        return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)

    def unauthorised(request: Request) -> JSONResponse | None:
        if key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        # Constant-time compare: the reply's timing says nothing about the key.
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key):
            return None
        return refuse(
            APIError(
                401,
                "a valid API key is required (Authorization: Bearer ...)",
                kind="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        )

    async def models(request: Request) -> Response:
        if (denied := unauthorised(request)) is not None:
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "r2v"}
                ],
            }
        )

    async def prometheus(request: Request) -> Response:
        if (denied := unauthorised(request)) is not None:
            return denied
        metrics.queue_depth.set(engine.depth)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def chat(request: Request) -> Response:
        start = time.perf_counter()
        if (denied := unauthorised(request)) is not None:
            return denied
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            parsed = parse_request(
                raw, max_messages=settings.max_messages, max_chars=settings.max_chars
            )
            reply = await _step(parsed)
        except APIError as error:
            return refuse(error)
        except ClientDisconnect:
            return Response(status_code=499)
        metrics.requests.labels("200").inc()
        metrics.latency.observe(time.perf_counter() - start)
        request_id = f"chatcmpl-r2v-{uuid.uuid4().hex}"
        common = {
            "request_id": request_id,
            "created": int(time.time()),
            "model": settings.model_name,
            "content": reply["content"],
            "usage": reply["usage"],
            "r2v": reply["r2v"],
        }
        logger.info(
            "%s: %s answered step %d (p_fail %.3f, tau %.3f) in %.2fs",
            request_id,
            reply["r2v"]["actor"],
            reply["r2v"]["step"],
            reply["r2v"]["p_fail"],
            reply["r2v"]["tau"],
            time.perf_counter() - start,
        )
        if parsed.stream:
            events = stream_chunks(**common, include_usage=parsed.include_usage)
            return StreamingResponse(_iterate(events), media_type="text/event-stream")
        return JSONResponse(completion(**common))

    async def _step(parsed: ChatRequest) -> dict[str, Any]:
        step, escalations = sessions.begin(parsed.session)
        job = StepJob(parsed.messages, parsed.observation, step, escalations, seed=parsed.seed)
        try:
            future = engine.submit(job)
        except QueueFull:
            sessions.undo(parsed.session)  # the step did not happen: the next one keeps its index
            raise APIError(
                429,
                f"the SLM queue is full ({settings.max_queue} steps waiting); retry shortly",
                kind="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(settings.retry_after)},
            ) from None
        metrics.queue_depth.set(engine.depth)
        try:
            result: StepResult = await asyncio.wait_for(
                asyncio.wrap_future(future), settings.request_timeout
            )
        except TimeoutError:
            future.cancel()  # if it is still queued, the engine skips it
            raise APIError(
                504,
                f"the SLM did not answer within {settings.request_timeout:g} s",
                kind="timeout_error",
                code="timeout",
            ) from None
        except Exception as exc:  # the SLM engine failed on this request
            logger.exception("SLM step failed")
            raise APIError(
                500, f"the SLM failed: {type(exc).__name__}", kind="server_error"
            ) from None
        assessed, sample = result.assessment, result.sample
        metrics.slm_seconds.observe(sample.seconds)
        metrics.queue_seconds.observe(result.queued_seconds)
        step_tau = tau if parsed.tau is None else parsed.tau
        content = assessed.actions[assessed.chosen]
        actor, fallback, error = "slm", False, None
        teacher_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        cost: dict[str, float] = {}
        escalated = teacher is not None and assessed.p_fail > step_tau
        if escalated and teacher is not None:
            metrics.escalations.inc()
            sessions.escalated(parsed.session)
            started = time.perf_counter()
            answer = await asyncio.to_thread(
                teacher.chat, parsed.messages, max_tokens=parsed.max_tokens
            )
            metrics.teacher_seconds.observe(time.perf_counter() - started)
            cost = answer.cost.as_dict()
            if answer.content is None:
                fallback, error = True, answer.error
                metrics.fallbacks.inc()
            else:
                content, actor = answer.content, "teacher"
                teacher_usage = {
                    "prompt_tokens": answer.cost.prompt_tokens,
                    "completion_tokens": answer.cost.completion_tokens,
                }
        metrics.step(actor)
        slm_usage = {"prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.new_tokens}
        prompt = slm_usage["prompt_tokens"] + teacher_usage["prompt_tokens"]
        completion_tokens = slm_usage["completion_tokens"] + teacher_usage["completion_tokens"]
        return {
            "content": content,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
            },
            "r2v": {
                "actor": actor,
                "p_fail": assessed.p_fail,
                "tau": step_tau,
                "escalated": escalated,
                "teacher_fallback": fallback,
                "teacher_error": error,
                "step": step,
                "session": parsed.session,
                "chosen": assessed.chosen,
                "candidates": [
                    {"action": a, "verifier_score": s, "seq_logprob": c.seq_logprob}
                    for a, s, c in zip(
                        assessed.actions, assessed.scores, sample.candidates, strict=True
                    )
                ],
                "cost": cost,
                "slm_seconds": sample.seconds,
                "usage": {"slm": slm_usage, "teacher": teacher_usage},
            },
        }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.metrics = metrics
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) one over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is over {limit} bytes", code="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is over {limit} bytes", code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _iterate(events: list[str]) -> AsyncIterator[str]:
    for event in events:
        yield event
