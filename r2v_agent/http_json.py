"""One JSON-over-HTTP call with bounded retries: the transport under the OpenAI-compatible SLM
backend (:class:`~r2v_agent.policy.openai_compat.OpenAIPolicy`) and the HTTP teacher
(:class:`~r2v_agent.teacher.openai_http.OpenAITeacher`), so that both treat a flaky server alike.

What is retried: connection failures, timeouts, an answer cut short, HTTP 429 and 5xx -- a
server that is starting, overloaded or restarting. What is not: any other HTTP status and an
answer that is not a JSON object -- asking again would get the same answer. The delay before retry ``i`` (0-based) is
``backoff * 2**i`` with jitter (x0.5-1.0), capped at ``max_backoff``; a ``Retry-After`` header
in seconds replaces it (capped too). Every wait is bounded, so a dead server costs at most
``(max_retries + 1) * timeout`` plus the backoff, never a hang.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["RetryPolicy", "HTTPJSONError", "request_json"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        max_retries: further attempts after the first.
        backoff: the first retry's delay in seconds, doubled each retry (jittered).
        max_backoff: the cap on any one delay, ``Retry-After`` included.
    """

    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"a retry policy's values are >= 0, got {self}")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 is the first retry)."""
        if retry_after is not None:
            return min(self.max_backoff, max(0.0, retry_after))
        base = min(self.max_backoff, self.backoff * (2**retry))
        return base * (0.5 + rng.random() / 2)


class HTTPJSONError(RuntimeError):
    """The call gave no JSON object: ``retryable`` says whether the last failure was of the kind
    that is retried (so the server stayed down), ``retries`` how many retries were made."""

    def __init__(self, message: str, *, retryable: bool, retries: int) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retries = retries


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def request_json(
    url: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float,
    retry: RetryPolicy,
    rng: random.Random,
    api_key: str | None = None,
    max_bytes: int = 4 * 1024 * 1024,
    on_attempt: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], int]:
    """GET ``url`` (``body`` is ``None``) or POST ``body`` as JSON; returns the answer's JSON
    object and the number of retries it took. Raises :class:`HTTPJSONError` when every attempt
    failed or the answer is unusable. ``on_attempt(i)`` is called before attempt ``i`` (for
    request counters); ``rng`` draws the jitter, so a caller's own sampling stream is untouched.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    error = "no attempt made"
    for attempt in range(retry.max_retries + 1):
        if on_attempt is not None:
            on_attempt(attempt)
        try:
            raw = _send(url, data, headers, timeout, max_bytes)
        except HTTPJSONError as exc:
            exc.retries = attempt
            raise
        except _Retry as exc:
            error = str(exc)
            if attempt < retry.max_retries:
                time.sleep(retry.delay(attempt, exc.retry_after, rng))
            continue
        try:
            payload = json.loads(raw)
        except ValueError:
            raise HTTPJSONError(
                f"{url}: not JSON: {raw[:200]!r}", retryable=False, retries=attempt
            ) from None
        if not isinstance(payload, dict):
            raise HTTPJSONError(
                f"{url}: not a JSON object: {raw[:200]!r}", retryable=False, retries=attempt
            )
        return payload, attempt
    raise HTTPJSONError(
        f"{url} failed after {retry.max_retries + 1} tries ({error})",
        retryable=True,
        retries=retry.max_retries,
    )


def _send(
    url: str, data: bytes | None, headers: dict[str, str], timeout: float, limit: int
) -> bytes:
    method = "GET" if data is None else "POST"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = bytes(response.read(limit))
            promised = response.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise _Retry(f"HTTP {exc.code}", _retry_after(exc.headers)) from None
        detail = exc.read(300).decode(errors="replace")
        raise HTTPJSONError(
            f"{url}: HTTP {exc.code}: {detail}", retryable=False, retries=0
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    # a connection dropped mid-answer reads as a short body, not as an error
    if promised and promised.isdigit() and len(raw) < min(int(promised), limit):
        raise _Retry(f"the answer was cut short ({len(raw)} of {promised} bytes)")
    return raw


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: our own backoff instead
