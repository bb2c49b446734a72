"""OpenAITeacher: any OpenAI-compatible chat endpoint (vLLM's server, Ollama, llama.cpp, a
hosted API), over the standard library's HTTP client.

Failures never escape :meth:`OpenAITeacher.act`: timeouts, connection errors, HTTP 5xx and 429
are retried with exponential backoff (honouring ``Retry-After``; :mod:`r2v_agent.http_json`,
shared with the OpenAI-compatible SLM backend); when the endpoint stays down,
or answers something unusable (malformed JSON, an empty reply, HTTP 4xx), the SLM's best
candidate is used instead and the reply says so (``fallback=True``, ``error``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

from r2v_agent.http_json import HTTPJSONError, RetryPolicy, request_json
from r2v_agent.policy.prompts import PromptFormat, Turn, format_for
from r2v_agent.teacher.base import CallCost, PriceTable, Teacher, TeacherReply

__all__ = ["OpenAITeacher", "TeacherStats", "ChatReply"]

logger = logging.getLogger(__name__)


@dataclass
class TeacherStats:
    requests: int = 0  #: HTTP attempts, retries included
    retries: int = 0
    successes: int = 0
    fallbacks: int = 0


@dataclass
class ChatReply:
    """A chat completion's text and cost, or why there is none."""

    content: str | None
    cost: CallCost
    error: str | None = None
    retries: int = 0


class OpenAITeacher(Teacher):
    """Chat-completions teacher.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent in the request (also the price-table key).
        api_key: sent as ``Authorization: Bearer``; ``None`` sends none.
        prompt_format: how turns become messages and replies become actions (default: by
            ``info["family"]`` or TextWorld's format).
        timeout: seconds for each HTTP attempt (connect and each read).
        max_retries: retries after the first attempt.
        backoff: first retry delay in seconds, doubled each retry (with jitter), capped at
            ``max_backoff``; a ``Retry-After`` header replaces it (capped too).
        prices: price table for the cost of each call.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        prompt_format: PromptFormat | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        temperature: float = 0.0,
        max_tokens: int = 256,
        prices: PriceTable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.prompt_format = prompt_format
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.retry = RetryPolicy(self.max_retries, float(backoff), float(max_backoff))
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.prices = prices or PriceTable()
        self.stats = TeacherStats()
        self._rng = random.Random(seed)
        # serve calls act() from a thread pool: the counters and the running total are updated
        # under this lock so that concurrent calls lose no count
        self._lock = threading.Lock()

    def act(self, turns: list[Turn], info: dict[str, Any], *, fallback_action: str) -> TeacherReply:
        fmt = self.prompt_format or format_for(str(info.get("family") or "textworld"))
        reply = self.chat(fmt.messages(turns))
        error = reply.error
        if reply.content is not None:
            action = fmt.extract_action(reply.content)
            if action:
                with self._lock:
                    self.total += reply.cost
                    self.stats.successes += 1
                return TeacherReply(action, reply.cost, retries=reply.retries)
            error = "the teacher's reply held no action"
        with self._lock:
            self.stats.fallbacks += 1
        logger.warning("teacher %s failed (%s); using the SLM's action", self.url, error)
        return TeacherReply(
            fallback_action, CallCost(), fallback=True, error=error, retries=reply.retries
        )

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> ChatReply:
        """One chat completion for ``messages``, retried as the class says; never raises.
        ``content`` is ``None`` when the endpoint stayed down or answered something unusable
        (``error`` says what). The caller decides whether the reply is used, so ``total`` and
        ``stats.successes`` are left to it."""
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens if max_tokens is None else int(max_tokens),
        }
        try:
            payload, retries = request_json(
                self.url,
                body,
                timeout=self.timeout,
                retry=self.retry,
                rng=self._rng,
                api_key=self.api_key,
                on_attempt=self._count_attempt,
            )
        except HTTPJSONError as exc:
            return ChatReply(None, CallCost(), error=str(exc), retries=exc.retries)
        try:
            content = payload["choices"][0]["message"]["content"]
            usage = payload.get("usage") or {}
            tokens = (int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            error = f"malformed response: {exc!r} in {json.dumps(payload)[:200]}"
            return ChatReply(None, CallCost(), error=error, retries=retries)
        if not isinstance(content, str):
            error = f"malformed response: content is {type(content).__name__}"
            return ChatReply(None, CallCost(), error=error, retries=retries)
        if not content.strip():
            return ChatReply(
                None, CallCost(), error="the teacher's reply was empty", retries=retries
            )
        cost = CallCost(1, tokens[0], tokens[1], self.prices.cost(self.model, *tokens))
        return ChatReply(content, cost, retries=retries)

    def _count_attempt(self, attempt: int) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.retries += int(attempt > 0)

    def spec(self) -> dict[str, Any]:  # the API key is deliberately not saved
        return {
            "type": "OpenAITeacher",
            "base_url": self.url.rsplit("/chat/completions", 1)[0],
            "model": self.model,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }
