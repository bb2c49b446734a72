"""What an SLM backend provides: the :class:`Policy` protocol every backend implements.

=================  ========================================  =====================================
backend            class                                     runs
=================  ========================================  =====================================
``transformers``   :class:`~.sampler.TransformersPolicy`     CPU or GPU; also what the pipeline
                                                             trains
``llamacpp``       :class:`~.llamacpp.LlamaCppPolicy`        CPU (a BF16 GGUF written from the
                                                             same weights, :mod:`.gguf`)
``vllm``           :class:`~.vllm.VLLMPolicy`                vLLM in this process (CPU or CUDA
                                                             build), on the safetensors folder
``openai``         :class:`~.openai_compat.OpenAIPolicy`     any OpenAI-compatible
                                                             ``/v1/completions`` server that
                                                             honours ``n`` and ``logprobs``
                                                             (``vllm serve``); many clients, one
                                                             engine
=================  ========================================  =====================================

Every backend reports each sampled token's log-prob under the model's untempered distribution.
The per-token *entropy* has two definitions (:func:`entropy_definition`): ``"full"``, over the
whole vocabulary (transformers, llamacpp), and ``"topN"``, the same sum over the N most likely
tokens only -- what a server returning top-N log-probs can compute, and what every backend can
compute. A router is trained on features of one definition; an agent records it and refuses a
backend that cannot give it (:func:`check_entropy_support`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Candidate",
    "Policy",
    "SampleResult",
    "BACKENDS",
    "prompt_ids",
    "stop_token_ids",
    "line_break_tokens",
    "entropy_definition",
    "parse_entropy_definition",
    "check_entropy_support",
    "top_k_entropy",
    "cut_action",
    "TOP_K_ONLY",
    "DEFAULT_TOP_K",
    "TokenRules",
]

#: The SLM backends ``RoutedAgent.from_pretrained(..., backend=...)`` and ``r2v eval
#: --backend`` accept.
BACKENDS: tuple[str, ...] = ("transformers", "llamacpp", "vllm", "openai")

#: Backends that see only the top-N log-probs of each step, so only a ``"topN"`` entropy.
TOP_K_ONLY: frozenset[str] = frozenset({"vllm", "openai"})

#: The ``entropy_top_k`` a top-N-only backend uses when none is asked for (vLLM's default cap
#: on log-probs per token is 20).
DEFAULT_TOP_K = 20


@dataclass
class Candidate:
    """One sampled action with its per-token log-probs and entropies."""

    text: str
    token_logprobs: list[float] = field(default_factory=list)
    token_entropies: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  #: the generated tokens, when known

    @property
    def seq_logprob(self) -> float:
        return float(sum(self.token_logprobs))


@dataclass
class SampleResult:
    """One step's K candidates and what producing them cost."""

    candidates: list[Candidate]
    prompt_tokens: int
    new_tokens: int
    seconds: float
    #: prompt tokens run through the model this call (fewer than ``prompt_tokens`` when a
    #: backend reused a cached prefix); ``None``: all of them.
    computed_prompt_tokens: int | None = None


@runtime_checkable
class Policy(Protocol):
    """An SLM that samples K candidate actions for a chat prompt.

    ``sample`` returns K :class:`Candidate` s (one when ``greedy``), each with one log-prob and
    one entropy (nats, untempered distribution) per generated token; a one-line action ends at
    its first line break after some text; the same ``reseed`` seed gives the same candidates.
    """

    k: int
    temperature: float
    quantize: str | None
    entropy_top_k: int | None  #: ``None``: full-vocabulary entropy; N: over the top N tokens
    base_model: Any  #: the full-precision transformers model, when the backend keeps one
    tokenizer: Any

    def reseed(self, seed: int) -> None: ...

    def sample(
        self,
        messages: list[dict[str, str]],
        *,
        k: int | None = None,
        greedy: bool = False,
        single_line: bool = True,
        max_new_tokens: int | None = None,
    ) -> SampleResult: ...


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The token ids of the chat ``messages`` with the assistant's turn opened -- the prompt
    every backend decodes, so all of them see the same tokens."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tokenizer: Any) -> set[int]:
    """The tokens that end a candidate: end of sequence and the chat format's end-of-turn."""
    stop = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            stop.add(token_id)
    return stop


def line_break_tokens(tokenizer: Any, size: int) -> np.ndarray:
    """A boolean mask over ``size`` token ids: which decode to text holding a line break (rows
    past the tokenizer's vocabulary -- padded embeddings -- never do)."""
    vocab = min(len(tokenizer), size)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)])
    mask = np.zeros(size, dtype=bool)
    mask[:vocab] = ["\n" in text for text in texts]
    return mask


def entropy_definition(top_k: int | None) -> str:
    """The name a config records for an entropy definition: ``"full"`` or ``"topN"``."""
    return "full" if top_k is None else f"top{int(top_k)}"


def parse_entropy_definition(name: str) -> int | None:
    """Inverse of :func:`entropy_definition`; a clear ``ValueError`` for anything else."""
    if name == "full":
        return None
    if isinstance(name, str) and name.startswith("top") and name[3:].isdigit() and int(name[3:]):
        return int(name[3:])
    raise ValueError(f"entropy definition must be 'full' or 'topN' (N >= 1), got {name!r}")


def check_entropy_support(backend: str, top_k: int | None) -> None:
    """Refuse a backend that cannot compute the entropy definition features were made with."""
    from r2v_agent.errors import ConfigError

    if top_k is None and backend in TOP_K_ONLY:
        raise ConfigError(
            f"the {backend} backend returns top-N log-probs only, but this agent's router was "
            f"trained on full-vocabulary entropies: its features would mean something else. "
            f"Use the transformers or llamacpp backend, or train with policy.entropy_top_k "
            f"(e.g. {DEFAULT_TOP_K}) so every backend computes the same features"
        )


def top_k_entropy(logp_rows: np.ndarray, top_k: int | None) -> np.ndarray:
    """Per-row entropy (nats) of full-vocabulary log-probs: over every token (``top_k=None``)
    or over the ``top_k`` most likely only, ``-sum p log p`` without renormalising."""
    logp_rows = np.asarray(logp_rows, dtype=np.float64)
    if top_k is not None and top_k < logp_rows.shape[-1]:
        logp_rows = np.partition(logp_rows, -top_k, axis=-1)[..., -top_k:]
    return -(np.exp(logp_rows) * logp_rows).sum(axis=-1)


def cut_action(
    token_ids: list[int],
    logps: list[float],
    entropies: list[float],
    *,
    is_stop: Any,
    is_line_break: Any,
    single_line: bool,
) -> tuple[list[int], list[float], list[float]]:
    """Apply the transformers backend's stopping rule to a sequence a server generated whole:
    stop at an end-of-generation token, and -- for one-line actions -- drop leading line
    breaks and stop at the first line break after some text. Returns the kept tokens with
    their log-probs and entropies."""
    kept: tuple[list[int], list[float], list[float]] = ([], [], [])
    for token, logp, entropy in zip(token_ids, logps, entropies, strict=True):
        if is_stop(token):
            break
        if single_line and is_line_break(token):
            if kept[0]:
                break
            continue
        kept[0].append(token)
        kept[1].append(logp)
        kept[2].append(entropy)
    return kept


class TokenRules:
    """A tokenizer's stop tokens and line-break tokens, for backends whose engine generates a
    candidate whole and cuts it afterwards (:func:`cut_action`)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.stop = stop_token_ids(tokenizer)
        self.line_break = line_break_tokens(tokenizer, len(tokenizer))

    def is_stop(self, token: int) -> bool:
        return token in self.stop

    def is_line_break(self, token: int) -> bool:
        return 0 <= token < len(self.line_break) and bool(self.line_break[token])

    def candidate(
        self,
        token_ids: list[int],
        logps: list[float],
        tops: list[list[float]],
        *,
        top_k: int | None,
        single_line: bool,
    ) -> Candidate:
        """A :class:`Candidate` from a generated sequence, its tokens' log-probs and, per
        position, the log-probs an engine returned for its most likely tokens (the sampled one
        may be among them though not in the top ``top_k``: only the ``top_k`` largest count)."""
        entropies = [float(top_k_entropy(np.asarray(row), top_k)) for row in tops]
        kept, kept_logps, kept_ents = cut_action(
            token_ids,
            logps,
            entropies,
            is_stop=self.is_stop,
            is_line_break=self.is_line_break,
            single_line=single_line,
        )
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return Candidate(text, kept_logps, kept_ents, kept)
