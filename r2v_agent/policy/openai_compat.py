"""The OpenAI-compatible SLM backend: a client of any ``/v1/completions`` server that honours
``n`` and ``logprobs`` -- ``vllm serve`` on the policy's folder, or SGLang.

Every episode, worker process or machine that points at the same server shares its one engine
(it batches their concurrent requests and keeps one prefix cache): this is how ``r2v eval
--workers N`` runs many episodes against one model copy.

Each step is one request: the prompt as the transformers tokenizer's token ids (no server-side
chat template, so every backend sees the same tokens), ``n=K``, ``logprobs=N`` (the entropy
definition, :func:`~r2v_agent.policy.base.top_k_entropy`), a seed drawn from this policy's own
seeded generator, and -- vLLM's extensions, ignored elsewhere -- ``return_tokens_as_token_ids``
and ``stop_token_ids``. The one-line rule is applied to the returned tokens. A server that does
not return token ids, or that is down, gives a clear error (bounded by ``timeout`` and
``max_retries``), never a hang.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.errors import ConfigError
from r2v_agent.http_json import HTTPJSONError, RetryPolicy, request_json
from r2v_agent.policy.base import (
    DEFAULT_TOP_K,
    SampleResult,
    TokenRules,
    prompt_ids,
)

__all__ = ["OpenAIPolicy", "SLMServerError"]


class SLMServerError(RuntimeError):
    """The SLM server could not give a step's candidates (down, timed out, or a bad answer)."""


class OpenAIPolicy:
    """Samples K candidate actions from an OpenAI-compatible completions server.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        tokenizer: the transformers tokenizer of the served model (chat template, decoding).
        model: the served model's name (default: the first the server lists).
        k, temperature, max_new_tokens, seed: as for ``TransformersPolicy``.
        entropy_top_k: log-probs requested per step; the entropy definition.
        timeout: seconds per request (connect and read).
        max_retries: further tries after a connection failure, 429 or 5xx.
        api_key: sent as a bearer token when given.
    """

    quantize: str | None = None
    base_model: Any = None
    source: Path | None = None

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        model: str | None = None,
        k: int = 5,
        temperature: float = 1.0,
        max_new_tokens: int = 24,
        seed: int = 0,
        entropy_top_k: int | None = DEFAULT_TOP_K,
        timeout: float = 60.0,
        max_retries: int = 2,
        api_key: str | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if entropy_top_k is None or entropy_top_k < 1:
            raise ConfigError("the openai backend computes top-N entropies: entropy_top_k >= 1")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the SLM server URL must be http(s)://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.k = int(k)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.entropy_top_k: int | None = int(entropy_top_k)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.api_key = api_key
        self.rng = np.random.default_rng(seed)
        self.retry = RetryPolicy(self.max_retries, backoff=1.0, max_backoff=5.0)
        self._jitter = random.Random(seed)  # retry delays; the sampling stream stays untouched
        self.rules = TokenRules(tokenizer)
        self.model = model or self._first_model()

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------------------ HTTP
    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            payload, _ = request_json(
                url,
                body,
                timeout=self.timeout,
                retry=self.retry,
                rng=self._jitter,
                api_key=self.api_key,
                max_bytes=64 * 1024 * 1024,
            )
        except HTTPJSONError as exc:
            hint = "; is it running? (e.g. `vllm serve MODEL_DIR --port 8000`)"
            raise SLMServerError(f"SLM server: {exc}{hint if exc.retryable else ''}") from None
        return payload

    def _first_model(self) -> str:
        listing = self._request("/models")
        try:
            return str(listing["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise SLMServerError(f"{self.base_url}/models lists no model: {listing}") from None

    # ------------------------------------------------------------------------------ sampling
    def _token_id(self, token: Any) -> int:
        if isinstance(token, str) and token.startswith("token_id:"):
            return int(token.split(":", 1)[1])
        raise SLMServerError(
            f"the SLM server returned the token {token!r}, not a token id: the openai backend "
            "needs a server that honours return_tokens_as_token_ids (vLLM does)"
        )

    def sample(
        self,
        messages: list[dict[str, str]],
        *,
        k: int | None = None,
        greedy: bool = False,
        single_line: bool = True,
        max_new_tokens: int | None = None,
    ) -> SampleResult:
        """K candidates (1 when ``greedy``) for the chat ``messages``."""
        k = 1 if greedy else (k or self.k)
        limit = max_new_tokens or self.max_new_tokens
        start = time.perf_counter()
        prompt = prompt_ids(self.tokenizer, messages)
        reply = self._request(
            "/completions",
            {
                "model": self.model,
                "prompt": prompt,
                "n": k,
                "max_tokens": limit,
                "temperature": 0.0 if greedy else self.temperature,
                "logprobs": self.entropy_top_k,
                "seed": int(self.rng.integers(2**31)),
                "return_tokens_as_token_ids": True,
                "stop_token_ids": sorted(self.rules.stop),
                "skip_special_tokens": True,
            },
        )
        try:
            choices = sorted(reply["choices"], key=lambda c: int(c.get("index", 0)))
            if len(choices) != k:
                raise SLMServerError(
                    f"the SLM server gave {len(choices)} choices for n={k}: it must honour `n`"
                )
            candidates, new_tokens = [], 0
            for choice in choices:
                logprobs = choice.get("logprobs")
                if not logprobs:
                    raise SLMServerError("the SLM server returned no logprobs: it must honour them")
                tokens = [self._token_id(t) for t in logprobs["tokens"]]
                logps = [float(v) for v in logprobs["token_logprobs"]]
                tops = [[float(v) for v in row.values()] for row in logprobs["top_logprobs"]]
                candidates.append(
                    self.rules.candidate(
                        tokens, logps, tops, top_k=self.entropy_top_k, single_line=single_line
                    )
                )
                new_tokens = max(new_tokens, len(tokens))
            details = (reply.get("usage") or {}).get("prompt_tokens_details") or {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SLMServerError(f"malformed completion from the SLM server: {exc!r}") from None
        cached = int(details.get("cached_tokens") or 0)
        return SampleResult(
            candidates,
            len(prompt),
            new_tokens,
            time.perf_counter() - start,
            computed_prompt_tokens=len(prompt) - cached if details else None,
        )
