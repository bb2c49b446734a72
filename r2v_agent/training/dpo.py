"""``r2v train dpo``: verifier-ranked preference pairs, TRL's DPO loss, plus consistency.

Pairs come from the BC policy's K samples at visited states (drawn in the verifier stage),
ranked by the *trained* verifier: (best, worst) when their scores differ by at least ``margin``.
``ConsistencyDPOTrainer`` (:func:`consistency_dpo`, beside its ``ConsistencyDPOConfig``, a
subclass of TRL's ``DPOConfig``) subclasses TRL's ``DPOTrainer`` and adds ``mu`` times the
Jensen-Shannon divergence between the policy's action-token distributions on the clean and on
the perturbed observation of the same state (the teacher's action, teacher-forced, under both
prompts). The JS term is logged next to TRL's DPO loss and reward margins.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2v_agent.config import PipelineConfig
from r2v_agent.errors import StageError
from r2v_agent.training import components
from r2v_agent.training.bc import action_ids
from r2v_agent.training.datasets import StepView, chat_prompt
from r2v_agent.training.losses import js_divergence

__all__ = [
    "run",
    "preference_pairs",
    "consistency_pairs",
    "consistency_js",
    "consistency_dpo",
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


@functools.cache
def consistency_dpo() -> tuple[type, type]:
    """``(ConsistencyDPOConfig, ConsistencyDPOTrainer)``: TRL's ``DPOConfig`` with the consistency
    term's settings, and TRL's ``DPOTrainer`` that adds it. Built on first use (and once), since
    importing TRL is slow and only this stage needs it."""
    from trl import DPOConfig, DPOTrainer

    @dataclass
    class ConsistencyDPOConfig(DPOConfig):
        """TRL's DPO settings plus the Jensen-Shannon consistency term's."""

        mu: float = field(
            default=0.5,
            metadata={
                "help": "Weight of JS(clean, perturbed) added to the DPO loss (0: plain DPO)."
            },
        )
        consistency_batch: int = field(
            default=2, metadata={"help": "State pairs in the JS term of each optimiser step."}
        )

    class ConsistencyDPOTrainer(DPOTrainer):
        """TRL's DPO plus ``args.mu`` x JS(clean, perturbed) on a cycling batch of state pairs."""

        def __init__(self, *args: Any, consistency: list[dict[str, Any]], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.consistency = consistency
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
            mu = float(getattr(self.args, "mu", 0.0))
            if not (mu > 0 and self.consistency and model.training):
                return result
            batch = []
            for _ in range(int(getattr(self.args, "consistency_batch", 2))):
                batch.append(self.consistency[self._cursor % len(self.consistency)])
                self._cursor += 1
            js = sum(pair_js(model, self.processing_class, p) for p in batch) / len(batch)
            self._metrics["train"]["consistency/js"].append(float(js.detach()))
            if return_outputs:
                loss, outputs = result
                return loss + mu * js, outputs
            return result + mu * js

    return ConsistencyDPOConfig, ConsistencyDPOTrainer


def run(config: PipelineConfig, out: Path) -> dict[str, Any]:
    import copy

    import torch
    from datasets import Dataset

    from r2v_agent.training.bc import freeze_below, save_policy
    from r2v_agent.training.datasets import step_views
    from r2v_agent.training.dpo import (
        consistency_dpo,
        consistency_js,
        consistency_pairs,
        preference_pairs,
    )
    from r2v_agent.training.fit_verifier import load_samples

    cfg = config.dpo
    model, tokenizer = components.load_model(str(config.run_dir / "bc" / "policy"), config.seed)
    verifier = components.verifier(config)
    samples = load_samples(config.run_dir / "verifier" / "samples.jsonl")
    pairs = preference_pairs(samples, verifier, tokenizer, margin=cfg.margin, limit=cfg.states)
    if not pairs:
        raise StageError(
            f"dpo: no candidate pair differs by the margin {cfg.margin} in verifier score over "
            f"{min(cfg.states, len(samples))} states (the BC policy's candidates score alike); "
            "lower dpo.margin, or raise verifier.states (the stage that samples them) and "
            "dpo.states"
        )
    views = list(step_views(components.episodes(config), components.prompt_format_of(config)))
    consistency = consistency_pairs(views, limit=cfg.consistency_pairs, seed=config.seed)
    js_before = consistency_js(model, tokenizer, consistency)
    reference = copy.deepcopy(model).eval()
    freeze_below(model, config.bc.train_layers)
    config_class, trainer_class = consistency_dpo()
    # The stage's section names the few settings a run changes; TRL's defaults do the rest.
    args = config_class(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        mu=cfg.mu,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        max_length=1024,
    )
    trainer = trainer_class(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        consistency=consistency,
    )
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    model = trainer.model.eval()
    js_after = consistency_js(model, tokenizer, consistency)
    save_policy(model, tokenizer, out / "policy")
    shutil.rmtree(out / "trl", ignore_errors=True)

    def mean_of(key: str, rows: list[dict[str, Any]]) -> float:
        values = [float(r[key]) for r in rows if key in r]
        return sum(values) / len(values) if values else math.nan

    head, tail = logs[: max(1, len(logs) // 4)], logs[-max(1, len(logs) // 4) :]
    return {
        "pairs": len(pairs),
        "consistency_pairs": len(consistency),
        "optimiser_steps": len(logs),
        "mu": cfg.mu,
        "beta": cfg.beta,
        "js_before": js_before,
        "js_after": js_after,
        "dpo_loss_first": mean_of("loss", head),
        "dpo_loss_last": mean_of("loss", tail),
        "reward_margin_first": mean_of("rewards/margins", head),
        "reward_margin_last": mean_of("rewards/margins", tail),
        "reward_accuracy_last": mean_of("rewards/accuracies", tail),
        "js_term_first": mean_of("consistency/js", head),
        "js_term_last": mean_of("consistency/js", tail),
    }
