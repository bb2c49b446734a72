"""The transformers SLM backend: K candidates from one prompt in one batched decode.

The prompt is encoded and run through the model once; its key/value cache is then repeated K
times and the K candidates are decoded together, one batched forward per new token. Each
candidate stops at the end of its action (a line break for one-line actions, or the end-of-turn
token), and the loop ends when all have stopped. Per-token log-probs and entropies (of the
model's untempered distribution) are kept for the router's features.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from r2v_agent.policy.base import (
    Candidate,
    SampleResult,
    line_break_tokens,
    prompt_ids,
    stop_token_ids,
)

__all__ = ["TransformersPolicy", "SampleResult"]


class TransformersPolicy:
    """Samples K candidate actions from a causal LM.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer (with a chat template).
        k: candidates per step.
        temperature: sampling temperature (log-probs and entropies are reported at T = 1).
        max_new_tokens: cap on each candidate's length.
        seed: seed of the sampling generator (same seed, same candidates).
        quantize: ``"int8"`` runs inference on a copy whose output head (the vocabulary
            projection, the largest matrix of a small model) is dynamically int8-quantised per
            output channel; ``None`` uses the model as is. The blocks stay in full precision:
            int8 there wrecks a 135M model (see :func:`_int8`).
        keep_base: with ``quantize``, keep the full-precision weights as ``base_model`` (for
            saving or training); ``False`` quantises in place and frees them (less memory).
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...); ``None`` leaves
            it where it is. Only the forward passes run there: sampling draws from the CPU
            generator, so a seed gives the same draws on every device. int8 is CPU-only.
        entropy_top_k: ``None`` reports each token's entropy over the whole vocabulary; N, over
            the N most likely tokens (what a top-N server backend reports, see
            :func:`~r2v_agent.policy.base.top_k_entropy`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        k: int = 5,
        temperature: float = 1.0,
        max_new_tokens: int = 24,
        seed: int = 0,
        quantize: str | None = None,
        keep_base: bool = True,
        device: str | None = None,
        entropy_top_k: int | None = None,
    ) -> None:
        import torch

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if device is not None:
            model.to(torch.device(device))
        self.device = next(model.parameters()).device
        if quantize == "int8" and self.device.type != "cpu":
            raise ValueError(
                f"quantize='int8' runs on CPU only (torch's dynamic quantisation); the model is "
                f"on {self.device}: use quantize=None there"
            )
        self.torch = torch
        self.tokenizer = tokenizer
        self.vocab_rows = int(model.get_output_embeddings().weight.shape[0])
        self.quantize = quantize
        if quantize == "int8":
            self.model = _int8(model, inplace=not keep_base)
            self.base_model = model if keep_base else None
        else:
            self.model = self.base_model = model
        self.tokenizer = tokenizer
        self.k = int(k)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.entropy_top_k = None if entropy_top_k is None else int(entropy_top_k)
        self.generator = torch.Generator().manual_seed(seed)
        self._newline: Any = None
        self.stop_ids = torch.tensor(sorted(stop_token_ids(tokenizer)))
        # transformers 5 names the cache argument `cache`; 4.x called it `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def encode(self, messages: list[dict[str, str]]) -> Any:
        """The prompt as a ``(1, length)`` tensor of token ids."""
        return self.torch.tensor([prompt_ids(self.tokenizer, messages)], dtype=self.torch.long)

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
        torch = self.torch
        k = 1 if greedy else (k or self.k)
        limit = max_new_tokens or self.max_new_tokens
        start = time.perf_counter()
        input_ids = self.encode(messages).to(self.device)
        newline = self._newline_mask() if single_line else None
        tokens: list[list[int]] = [[] for _ in range(k)]
        logps: list[list[float]] = [[] for _ in range(k)]
        ents: list[list[float]] = [[] for _ in range(k)]
        finished = torch.zeros(k, dtype=torch.bool)
        has_text = torch.zeros(k, dtype=torch.bool)
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, use_cache=True)
            cache = out["cache"] if "cache" in out else out["past_key_values"]
            logits = out.logits[:, -1, :].float().cpu()
            if k > 1:  # share the prompt's cache across the K candidates
                cache.batch_repeat_interleave(k)
                logits = logits.expand(k, -1)
            steps = 0
            for _ in range(limit):
                logp = torch.log_softmax(logits, dim=-1)
                top = logp if self.entropy_top_k is None else logp.topk(self.entropy_top_k).values
                entropy = -(top.exp() * top).sum(-1)
                if greedy:
                    nxt = logp.argmax(-1)
                else:
                    probs = torch.softmax(logits / max(self.temperature, 1e-5), dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
                token_logp = logp.gather(1, nxt[:, None]).squeeze(1)
                is_stop = torch.isin(nxt, self.stop_ids)
                if newline is not None:
                    # A line break ends an action once it has text; leading ones are skipped.
                    is_stop |= newline[nxt] & has_text
                for i in range(k):
                    if finished[i] or is_stop[i]:
                        continue
                    if newline is not None and newline[nxt[i]]:
                        continue  # a leading line break
                    tokens[i].append(int(nxt[i]))
                    logps[i].append(float(token_logp[i]))
                    ents[i].append(float(entropy[i]))
                    has_text[i] = True
                finished |= is_stop
                steps += 1
                if bool(finished.all()):
                    break
                step_ids = nxt[:, None].to(self.device)
                out = self.model(input_ids=step_ids, use_cache=True, **{self._cache_arg: cache})
                logits = out.logits[:, -1, :].float().cpu()
        candidates = [
            Candidate(self.tokenizer.decode(t, skip_special_tokens=True).strip(), lp, en, t)
            for t, lp, en in zip(tokens, logps, ents, strict=True)
        ]
        return SampleResult(candidates, int(input_ids.shape[1]), steps, time.perf_counter() - start)

    def _newline_mask(self) -> Any:
        if self._newline is None:
            self._newline = self.torch.from_numpy(
                line_break_tokens(self.tokenizer, self.vocab_rows)
            )
        return self._newline


def _int8(model: Any, *, inplace: bool) -> Any:
    """Quantise the output head to int8 (dynamic, per output channel).

    Measured on SmolLM2-135M after BC on TextWorld (6 prompts, next-token distribution against
    fp32): quantising every linear layer gave KL 1.5-7.9 nats and turned "go north" into noise
    (per-channel: KL up to 8.9); the MLP projections are the culprits (activation outliers),
    the attention projections cost little, and the head alone KL <= 0.004 with the same greedy
    action on all 6 -- the head alone is also what speeds decoding up (0.84 s vs 0.99 s for 5
    candidates x 16 tokens), so only the head is quantised.
    """
    import copy
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    target = model if inplace else copy.deepcopy(model)
    head = target.get_output_embeddings()
    names = [name for name, module in target.named_modules() if module is head]
    if not names or not isinstance(head, torch.nn.Linear):
        return target  # nothing to quantise (an unusual head): keep full precision
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's migration notice
        return quantize_dynamic(target, {names[0]: per_channel_dynamic_qconfig}, inplace=True)
