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

from r2v_agent.router.features import Candidate

__all__ = ["Policy", "SampleResult", "BACKENDS"]

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
