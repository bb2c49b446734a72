"""What an SLM backend provides: the :class:`Policy` protocol every backend implements.

=================  ========================================  =====================================
backend            class                                     runs
=================  ========================================  =====================================
``transformers``   :class:`~.sampler.TransformersPolicy`     CPU or GPU; also what the pipeline
                                                             trains
``llamacpp``       :class:`~.llamacpp.LlamaCppPolicy`        CPU (a BF16 GGUF written from the
                                                             same weights, :mod:`.gguf`)
=================  ========================================  =====================================

Both report per-token log-probs and entropies of the model's *full* next-token distribution,
so the router's features mean the same thing whichever backend produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from r2v_agent.router.features import Candidate

__all__ = [
    "Policy",
    "SampleResult",
    "BACKENDS",
    "prompt_ids",
    "stop_token_ids",
    "line_break_tokens",
]

#: The SLM backends ``RoutedAgent.from_pretrained(..., backend=...)`` and ``r2v eval
#: --backend`` accept.
BACKENDS: tuple[str, ...] = ("transformers", "llamacpp")


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
