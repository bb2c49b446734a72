"""``r2v train dpo``: verifier-ranked preference pairs, TRL's DPO loss, plus consistency.

Pairs come from the BC policy's K samples at visited states (drawn in the verifier stage),
ranked by the *trained* verifier: (best, worst) when their scores differ by at least ``margin``.
:class:`ConsistencyDPOTrainer` subclasses TRL's ``DPOTrainer`` and adds ``mu`` times the
Jensen-Shannon divergence between the policy's action-token distributions on the clean and on
the perturbed observation of the same state (the teacher's action, teacher-forced, under both
prompts). The JS term is logged next to TRL's DPO loss and reward margins.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Any

from r2v_agent.training.bc import action_ids
from r2v_agent.training.datasets import StepView, chat_prompt
from r2v_agent.training.losses import js_divergence

__all__ = [
    "preference_pairs",
    "consistency_pairs",
    "consistency_js",
    "consistency_dpo_trainer",
]

logger = logging.getLogger(__name__)


def preference_pairs(
    samples: list[dict[str, Any]], verifier: Any, tokenizer: Any, *, margin: float, limit: int
) -> list[dict[str, str]]:
    """(prompt, chosen, rejected) from verifier-ranked samples, best vs worst with a margin."""
    pairs = []
    for s in samples[:limit]:
        actions = list(dict.fromkeys(a for a in s["actions"] if a.strip()))
        if len(actions) < 2:
            continue
        scores = verifier.score(
            s["observation"], actions, {"admissible_actions": s["admissible_actions"]}
        )
        ranked = sorted(zip(scores, actions, strict=True), reverse=True)
        (best_score, best), (worst_score, worst) = ranked[0], ranked[-1]
        if best_score - worst_score >= margin:
            pairs.append(
                {"prompt": chat_prompt(tokenizer, s["messages"]), "chosen": best, "rejected": worst}
            )
    return pairs


def consistency_pairs(views: list[StepView], *, limit: int, seed: int) -> list[dict[str, Any]]:
    """(clean messages, perturbed messages, teacher action) at the same underlying state,
    keeping only states whose perturbed observation differs from the clean one."""
    clean: dict[tuple[Any, Any], StepView] = {}
    perturbed: dict[tuple[Any, Any], list[StepView]] = defaultdict(list)
    for view in views:
        if view.step.get("state_index") is None:
            continue
        if view.episode["perturbation"] is None:
            clean[view.key] = view
        else:
            perturbed[view.key].append(view)
    out = []
    for key, clean_view in clean.items():
        for view in perturbed.get(key, []):
            if view.step["observation"] != clean_view.step["observation"]:
                out.append(
                    {
                        "clean": clean_view.messages,
                        "perturbed": view.messages,
                        "action": clean_view.step["action"],
                    }
                )
    random.Random(seed).shuffle(out)
    return out[:limit]


def _action_logprobs(
    model: Any, tokenizer: Any, messages: list[dict[str, str]], action: str
) -> Any:
    """Log-distributions over the vocabulary at each action-token position (teacher-forced)."""
    import torch

    prompt = tokenizer(chat_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    target = action_ids(tokenizer, action)
    ids = torch.tensor([prompt + target])
    logits = model(input_ids=ids, logits_to_keep=len(target) + 1).logits[0, :-1, :].float()
    return torch.log_softmax(logits, dim=-1)


def pair_js(model: Any, tokenizer: Any, pair: dict[str, Any]) -> Any:
    logp = _action_logprobs(model, tokenizer, pair["clean"], pair["action"])
    logq = _action_logprobs(model, tokenizer, pair["perturbed"], pair["action"])
    return js_divergence(logp, logq).mean()


def consistency_js(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> float:
    """Mean JS divergence (nats) over the pairs; the before/after figure of the report."""
    import torch

    if not pairs:
        return float("nan")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = [float(pair_js(model, tokenizer, p)) for p in pairs]
    model.train(was_training)
    return sum(values) / len(values)


def consistency_dpo_trainer() -> type:
    """The :class:`ConsistencyDPOTrainer` class (built on first use: TRL is imported only then)."""
    from trl import DPOTrainer

    class ConsistencyDPOTrainer(DPOTrainer):
        """TRL's DPO plus ``mu`` x JS(clean, perturbed) on a cycling batch of state pairs."""

        def __init__(
            self,
            *args: Any,
            consistency: list[dict[str, Any]],
            mu: float,
            consistency_batch: int = 2,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.consistency = consistency
            self.mu = float(mu)
            self.consistency_batch = consistency_batch
            self._cursor = 0

        def compute_loss(
            self,
            model: Any,
            inputs: Any,
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if not (self.mu > 0 and self.consistency and model.training):
                return result
            batch = []
            for _ in range(self.consistency_batch):
                batch.append(self.consistency[self._cursor % len(self.consistency)])
                self._cursor += 1
            js = sum(pair_js(model, self.processing_class, p) for p in batch) / len(batch)
            self._metrics["train"]["consistency/js"].append(float(js.detach()))
            if return_outputs:
                loss, outputs = result
                return loss + self.mu * js, outputs
            return result + self.mu * js

    return ConsistencyDPOTrainer
