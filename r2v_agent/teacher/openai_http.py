"""OpenAITeacher: any OpenAI-compatible chat endpoint (vLLM's server, Ollama, llama.cpp, a
hosted API), over the standard library's HTTP client.

Failures never escape :meth:`OpenAITeacher.act`: timeouts, connection errors, HTTP 5xx and 429
are retried with exponential backoff (honouring ``Retry-After``); when the endpoint stays down,
or answers something unusable (malformed JSON, an empty reply, HTTP 4xx), the SLM's best
candidate is used instead and the reply says so (``fallback=True``, ``error``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

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


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
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
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens if max_tokens is None else int(max_tokens),
            }
        ).encode()
        error = "no attempt made"
        retries = 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                retries += 1
                with self._lock:
                    self.stats.retries += 1
            try:
                content, usage = self._post(body)
            except _Retryable as exc:
                error = str(exc)
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt, exc.retry_after))
                continue
            except ValueError as exc:  # a usable-looking answer that is not: do not retry
                error = str(exc)
                break
            if not content.strip():
                error = "the teacher's reply was empty"
                break
            cost = CallCost(1, usage[0], usage[1], self.prices.cost(self.model, *usage))
            return ChatReply(content, cost, retries=retries)
        return ChatReply(None, CallCost(), error=error, retries=retries)

    def _post(self, body: bytes) -> tuple[str, tuple[int, int]]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._lock:
            self.stats.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(4 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}", _retry_after(exc.headers)) from None
            raise ValueError(f"HTTP {exc.code}: {exc.read(300)!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
            usage = payload.get("usage") or {}
            tokens = (int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"malformed response: {exc!r} in {raw[:200]!r}") from None
        if not isinstance(content, str):
            raise ValueError(f"malformed response: content is {type(content).__name__}")
        return content, tokens

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, max(0.0, retry_after))
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + self._rng.random() / 2)

    def spec(self) -> dict[str, Any]:  # the API key is deliberately not saved
        return {
            "type": "OpenAITeacher",
            "base_url": self.url.rsplit("/chat/completions", 1)[0],
            "model": self.model,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
