"""The llama.cpp SLM backend: one prompt pass, the K candidates decoded as one batch.

Through llama-cpp-python's low-level API (its high-level API needs ``logits_all`` for
log-probs, many times slower, and its server ignores ``n``):

1. the prompt's tokens -- the transformers tokenizer's own ids, so both backends see the same
   prompt -- are decoded once, every prompt cell shared by the K sequences (a token may belong to
   several sequences in one llama.cpp batch), with logits for the last token only. With
   ``prefix_cache`` the cells of the longest prefix shared with the previous call's prompt are
   kept (an episode's prompt grows by appending turns), so only the new suffix is computed;
   ``SampleResult.computed_prompt_tokens`` says how many were;
2. each step decodes one token for every candidate still running, in one batch;
3. log-probs and entropies come from the full logits (the model's untempered distribution), as
   in :class:`~r2v_agent.policy.sampler.TransformersPolicy`, so the router's features mean the
   same on both backends; sampling (at ``temperature``) draws from a seeded NumPy generator.

Stopping is the transformers backend's rule: an end-of-generation token, or -- for one-line
actions -- a line break once the candidate has text (leading line breaks are skipped).

Reproducibility: a seed gives the same candidates for the same prompt after the same earlier
calls. With ``prefix_cache`` the earlier calls decide how much of the prompt is computed, and in
what batch; llama.cpp's kernels depend on the batch size, so the logits differ in float rounding
(~1e-4) and a sampled token can differ now and then (1 call in 120-150 measured on a tiny random
model, whose distributions are near-uniform). Turn it off for bit-exact reruns in another order.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import (
    Candidate,
    SampleResult,
    line_break_tokens,
    prompt_ids,
    stop_token_ids,
    top_k_entropy,
)

__all__ = ["LlamaCppPolicy"]


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            "the llamacpp backend needs llama-cpp-python: pip install 'r2v-agent[llamacpp]' "
            "(it compiles llama.cpp, a few minutes)"
        ) from exc
    return llama_cpp


class LlamaCppPolicy:
    """Samples K candidate actions from a GGUF model with llama.cpp.

    Args:
        gguf_path: the model (see :func:`r2v_agent.policy.gguf.export_gguf`).
        tokenizer: the transformers tokenizer of the same model (chat template, token ids,
            decoding).
        k, temperature, max_new_tokens, seed: as for ``TransformersPolicy``.
        n_ctx: context cells shared by the K sequences (prompt once + K x new tokens).
        n_threads: CPU threads (default: torch's intra-op thread count, which ``r2v eval`` sets to
            cores / workers in each worker; every core without torch).
        prefix_cache: keep the previous prompt's cells and compute only what is new.
        entropy_top_k: ``None``: full-vocabulary entropy; N: over the top N tokens.
    """

    quantize: str | None = None
    base_model: Any = None  #: the transformers model it was exported from, if kept
    source: Path | None = None  #: the weights folder it was exported from, if any

    def __init__(
        self,
        gguf_path: str | Path,
        tokenizer: Any,
        *,
        k: int = 5,
        temperature: float = 1.0,
        max_new_tokens: int = 24,
        seed: int = 0,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        prefix_cache: bool = True,
        entropy_top_k: int | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        self.lib = lib = _import_llama_cpp().llama_cpp
        self.gguf_path = Path(gguf_path)
        if not self.gguf_path.is_file():
            raise ConfigError(f"no GGUF model at {self.gguf_path}")
        self.tokenizer = tokenizer
        self.k = int(k)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.entropy_top_k = None if entropy_top_k is None else int(entropy_top_k)
        self.rng = np.random.default_rng(seed)
        lib.llama_backend_init()
        lib.llama_log_set(_QUIET, ctypes.c_void_p(0))
        model_params = lib.llama_model_default_params()
        self._model = lib.llama_model_load_from_file(str(self.gguf_path).encode(), model_params)
        if not self._model:
            raise ConfigError(f"llama.cpp could not load {self.gguf_path}")
        threads = n_threads or _default_threads()
        params = lib.llama_context_default_params()
        params.n_ctx = int(n_ctx)
        params.n_batch = int(n_ctx)
        params.n_ubatch = min(int(n_ctx), 512)
        params.n_seq_max = self.k
        params.n_threads = params.n_threads_batch = threads
        if hasattr(params, "kv_unified"):
            params.kv_unified = True  # the K sequences share the prompt's cells
        self._ctx = lib.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise ConfigError(f"llama.cpp could not create a context for {self.gguf_path}")
        self.n_ctx = int(n_ctx)
        self._memory = lib.llama_get_memory(self._ctx)
        vocab = lib.llama_model_get_vocab(self._model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(vocab))
        # The transformers backend's stop tokens, and whatever llama.cpp marks end-of-generation.
        self._stop = np.array(
            [bool(lib.llama_vocab_is_eog(vocab, token)) for token in range(self.n_vocab)]
        )
        self._stop[[t for t in stop_token_ids(tokenizer) if t < self.n_vocab]] = True
        self._newline = line_break_tokens(tokenizer, self.n_vocab)
        self._batch = lib.llama_batch_init(self.n_ctx, 0, self.k)
        self.prefix_cache = bool(prefix_cache)
        self._cached: list[int] = []  # prompt tokens whose cells all K sequences share now
        self._cached_k = 0

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    # ------------------------------------------------------------------------------ decoding
    def _fill(self, entries: list[tuple[int, int, list[int], bool]]) -> None:
        """Put ``(token, position, sequence ids, wants logits)`` entries in the batch."""
        batch = self._batch
        for i, (token, pos, seqs, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = len(seqs)
            for j, seq in enumerate(seqs):
                batch.seq_id[i][j] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)

    def _decode(self) -> None:
        code = self.lib.llama_decode(self._ctx, self._batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code} (context full?)")

    def _logits(self, index: int) -> np.ndarray:
        pointer = self.lib.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)

    def _draw(self, logits: np.ndarray, greedy: bool) -> tuple[np.ndarray, ...]:
        """One token per row of ``logits`` (candidates x vocabulary), with its log-prob and the
        row's entropy under the untempered distribution -- all rows at once."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        entropy = top_k_entropy(logp, self.entropy_top_k)
        if greedy:
            chosen = logp.argmax(axis=1)
        else:  # inverse-CDF sampling at the temperature, one uniform draw per row
            scaled = np.exp(shifted / max(self.temperature, 1e-5))
            cdf = np.cumsum(scaled, axis=1)
            u = self.rng.random(len(logits)) * cdf[:, -1]
            chosen = np.minimum((cdf < u[:, None]).sum(axis=1), self.n_vocab - 1)
        return chosen, logp[np.arange(len(logits)), chosen], entropy

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
        if k > self.k:
            raise ValueError(f"k={k} is more than the {self.k} sequences this context holds")
        limit = max_new_tokens or self.max_new_tokens
        start = time.perf_counter()
        prompt = self.encode(messages)
        if len(prompt) + k * limit > self.n_ctx:
            raise ValueError(
                f"prompt of {len(prompt)} tokens + {k} x {limit} new ones exceeds n_ctx={self.n_ctx}"
            )
        kept = self._keep_prefix(prompt, k)
        sequences = list(range(k))
        self._fill(
            [(prompt[p], p, sequences, p == len(prompt) - 1) for p in range(kept, len(prompt))]
        )
        self._decode()
        self._cached, self._cached_k = prompt, k
        logits = np.repeat(self._logits(len(prompt) - kept - 1)[None, :], k, axis=0)
        tokens: list[list[int]] = [[] for _ in range(k)]
        logps: list[list[float]] = [[] for _ in range(k)]
        ents: list[list[float]] = [[] for _ in range(k)]
        running = list(range(k))  # the candidates whose rows `logits` holds, in order
        steps = 0
        for position in range(len(prompt), len(prompt) + limit):
            chosen, token_logp, entropy = self._draw(logits, greedy)
            next_running, next_entries = [], []
            for row, i in enumerate(running):
                token = int(chosen[row])
                if self._stop[token] or (single_line and self._newline[token] and tokens[i]):
                    continue  # this candidate's action is complete
                if not (single_line and self._newline[token]):  # skip leading line breaks
                    tokens[i].append(token)
                    logps[i].append(float(token_logp[row]))
                    ents[i].append(float(entropy[row]))
                next_running.append(i)
                next_entries.append((token, position, [i], True))
            running = next_running
            steps += 1
            if not running or position == len(prompt) + limit - 1:
                break
            self._fill(next_entries)
            self._decode()
            logits = np.stack([self._logits(j) for j in range(len(next_entries))])
        candidates = [
            Candidate(self.tokenizer.decode(t, skip_special_tokens=True).strip(), lp, en, t)
            for t, lp, en in zip(tokens, logps, ents, strict=True)
        ]
        return SampleResult(
            candidates,
            len(prompt),
            steps,
            time.perf_counter() - start,
            computed_prompt_tokens=len(prompt) - kept,
        )

    def _keep_prefix(self, prompt: list[int], k: int) -> int:
        """Drop every cached cell past the prefix ``prompt`` shares with the last prompt (the
        last call's candidates included); return how many prompt tokens are kept."""
        kept = 0
        if self.prefix_cache and k == self._cached_k:
            limit = min(len(self._cached), len(prompt) - 1)  # >= 1 token decodes, for logits
            while kept < limit and self._cached[kept] == prompt[kept]:
                kept += 1
        if kept and self.lib.llama_memory_seq_rm(self._memory, -1, kept, -1):
            return kept
        self.lib.llama_memory_clear(self._memory, True)
        return 0

    def close(self) -> None:
        lib = self.lib
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        # At interpreter shutdown modules (contextlib too) may already be torn down.
        try:  # noqa: SIM105
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _default_threads() -> int:
    try:
        import torch
    except ImportError:
        return os.cpu_count() or 1
    return int(torch.get_num_threads())


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _QUIET(level: int, text: bytes, data: Any) -> None:
    """llama.cpp's log callback: silent (it logs every load to stderr otherwise)."""
