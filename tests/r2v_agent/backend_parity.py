"""Shared checks for SLM backends that generate with another engine (vLLM in process or behind
a server, llama.cpp): the Policy contract, and parity with the transformers model on the same
tokens."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from r2v_agent.policy.base import Candidate, prompt_ids
from r2v_agent.policy.prompts import FORMATS, Turn
from r2v_agent.router.features import compute_features

#: A TextWorld prompt of about 200 tokens, like the benchmark's.
MESSAGES = FORMATS["textworld"].messages(
    [
        Turn(
            "-= Kitchen =-\nYou are in a kitchen. A fridge stands in the corner; on the table "
            "lie a knife and a red apple. A wooden door leads north and an open passage east. "
            "Your task: find the key, unlock the chest in the bedroom and take the coin."
        )
    ]
)
#: per-token tolerances of a float32 engine against the float32 transformers model (nats)
LOGPROB_TOL = 1e-3
ENTROPY_TOL = 1e-3


def marked(messages: list[dict[str, str]], marker: str) -> list[dict[str, str]]:
    """``messages`` with ``marker`` at the very start of the prompt, so no cached prefix of an
    earlier call matches it."""
    return [{**messages[0], "content": f"[{marker}] {messages[0]['content']}"}, *messages[1:]]


def check_contract(policy: Any, vocab: int) -> None:
    """K candidates with one log-prob and entropy per token, one-line actions, seeded."""
    out = policy.sample(MESSAGES, max_new_tokens=12)
    assert len(out.candidates) == policy.k and out.prompt_tokens > 100
    assert 1 <= out.new_tokens <= 12
    for c in out.candidates:
        assert "\n" not in c.text
        assert len(c.token_logprobs) == len(c.token_entropies) == len(c.token_ids) <= 12
        assert all(lp <= 1e-6 for lp in c.token_logprobs)
        assert all(0.0 <= h <= math.log(vocab) + 1e-6 for h in c.token_entropies)
    assert len(policy.sample(MESSAGES, greedy=True, max_new_tokens=4).candidates) == 1
    check_seeded(policy, MESSAGES)


def check_seeded(policy: Any, messages: list[dict[str, str]]) -> None:
    """The same seed gives the same candidates, another seed others. A policy with a prefix
    cache runs without it: the cache decides how much of the prompt each call computes, and in
    what batch, so its logits differ in float rounding between the two seeded calls, which
    flips a draw of a near-uniform model now and then (see ``LlamaCppPolicy``)."""
    cached = getattr(policy, "prefix_cache", None)
    if cached is not None:
        policy.prefix_cache = False
    try:
        policy.reseed(7)
        first = [c.text for c in policy.sample(messages, max_new_tokens=8).candidates]
        policy.reseed(7)
        again = [c.text for c in policy.sample(messages, max_new_tokens=8).candidates]
        policy.reseed(8)
        other = [c.text for c in policy.sample(messages, max_new_tokens=8).candidates]
    finally:
        if cached is not None:
            policy.prefix_cache = cached
    assert first == again and first != other


def reference(model: Any, tokenizer: Any, candidate: Candidate, top_k: int) -> Candidate:
    """The same tokens scored by the transformers model: log-probs and top-k entropies."""
    import torch

    prompt = prompt_ids(tokenizer, MESSAGES)
    ids = torch.tensor([prompt + candidate.token_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    rows = logp[len(prompt) - 1 : len(prompt) - 1 + len(candidate.token_ids)]
    top = rows.topk(top_k, dim=-1).values
    return Candidate(
        candidate.text,
        [float(rows[j, t]) for j, t in enumerate(candidate.token_ids)],
        [float(v) for v in -(top.exp() * top).sum(-1)],
        list(candidate.token_ids),
    )


def check_parity(policy: Any, model: Any, tokenizer: Any) -> dict[str, float]:
    """Candidate log-probs, entropies and the router's 15 features against transformers on the
    same tokens; returns the largest deviations seen."""
    policy.reseed(11)
    candidates = policy.sample(MESSAGES, max_new_tokens=16).candidates
    references = [reference(model, tokenizer, c, policy.entropy_top_k) for c in candidates]
    worst = {"logprob": 0.0, "entropy": 0.0, "feature": 0.0}
    for ours, ref in zip(candidates, references, strict=True):
        worst["logprob"] = max(
            [worst["logprob"], *np.abs(np.subtract(ours.token_logprobs, ref.token_logprobs))]
        )
        worst["entropy"] = max(
            [worst["entropy"], *np.abs(np.subtract(ours.token_entropies, ref.token_entropies))]
        )
    scores = [0.9, 0.4, 0.4, 0.1, 0.7][: len(candidates)]
    kwargs = dict(
        step=3, max_steps=15, tool_error=False, observation="x" * 50, escalations_so_far=1
    )
    for chosen in range(len(candidates)):
        a = compute_features(candidates, chosen, scores, **kwargs)
        b = compute_features(references, chosen, scores, **kwargs)
        worst["feature"] = max(worst["feature"], float(np.abs(a - b).max()))
    assert worst["logprob"] <= LOGPROB_TOL, worst
    assert worst["entropy"] <= ENTROPY_TOL, worst
    assert worst["feature"] <= 1e-3, worst
    return worst
