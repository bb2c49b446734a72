"""``r2v train bc``: supervised fine-tuning of the SLM on (context -> teacher action).

A plain, readable loop (CleanRL style): each example is the chat prompt the agent would see at
that step followed by the teacher's action and the end-of-turn token; the loss is the mean
cross-entropy over the action tokens only. Clean and perturbed trajectories are both used.
Full fine-tuning by default; ``lora: true`` trains peft LoRA adapters and merges them, so the
saved policy is a plain transformers model either way.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2v_agent.config import BCConfig, PipelineConfig
from r2v_agent.errors import StageError
from r2v_agent.training import components
from r2v_agent.training.datasets import StepView, chat_prompt

__all__ = ["run", "Example", "build_examples", "train_bc", "save_policy"]

logger = logging.getLogger(__name__)

Example = tuple[list[int], list[int]]  # (input ids, labels with -100 on the prompt)


def action_ids(tokenizer: Any, action: str) -> list[int]:
    """The tokens the policy must produce for ``action``: the text, then end-of-turn."""
    ids = tokenizer(action, add_special_tokens=False)["input_ids"]
    return [*ids, int(tokenizer.eos_token_id)]


def build_examples(
    views: list[StepView], tokenizer: Any, *, max_tokens: int, label: str = "action"
) -> list[Example]:
    """(prompt, action) token examples; ``label`` names the step field the policy must
    produce: the action taken (the teacher's, in collected episodes) or, for DAgger rounds,
    ``expert_action`` at a state the policy reached itself. Steps without one are skipped."""
    examples = []
    for view in views:
        action = (view.step.get(label) or "").strip()
        if not action:
            continue
        prompt = tokenizer(chat_prompt(tokenizer, view.messages), add_special_tokens=False)[
            "input_ids"
        ]
        target = action_ids(tokenizer, action)
        prompt = prompt[-max(1, max_tokens - len(target)) :]  # keep the prompt's end
        examples.append((prompt + target, [-100] * len(prompt) + target))
    return examples


def _batches(examples: list[Example], size: int, pad_id: int, rng: random.Random) -> Any:
    import torch

    order = list(range(len(examples)))
    rng.shuffle(order)
    for start in range(0, len(order), size):
        chunk = [examples[i] for i in order[start : start + size]]
        width = max(len(ids) for ids, _ in chunk)
        # Left padding puts every row's action at the end, so logits are needed only there.
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (x, y) in enumerate(chunk):
            ids[row, width - len(x) :] = torch.tensor(x)
            labels[row, width - len(y) :] = torch.tensor(y)
            mask[row, width - len(x) :] = 1
        yield ids, labels, mask


def action_loss(model: Any, ids: Any, labels: Any, mask: Any) -> Any:
    """Mean cross-entropy of the labelled (action) tokens of a left-padded batch.

    Only the last positions' logits are computed (``logits_to_keep``): the vocabulary
    projection over the whole prompt would be a fifth of a small model's compute."""
    import torch

    action_len = int((labels != -100).sum(1).max())
    keep = action_len + 1
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    logits = logits[:, :-1, :].float()
    target = labels[:, -action_len:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
    )


def freeze_below(model: Any, train_layers: int | None) -> None:
    """Train only the top ``train_layers`` decoder blocks and the final norm: backward then
    stops there, which is most of the speed-up on a CPU (embeddings stay frozen)."""
    if train_layers is None:
        return
    layers = model.get_decoder().layers
    keep = {id(p) for block in layers[len(layers) - train_layers :] for p in block.parameters()}
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        keep |= {id(p) for p in norm.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def train_bc(
    model: Any, tokenizer: Any, examples: list[Example], config: BCConfig, *, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` in place (or through LoRA); return the trained model and stats."""
    import torch

    if not examples:
        raise StageError("bc: no training examples (did collection record any actions?)")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    if config.max_examples is not None and len(examples) > config.max_examples:
        examples = rng.sample(examples, config.max_examples)
    freeze_below(model, config.train_layers)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_rank,
                lora_alpha=2 * config.lora_rank,
                target_modules="all-linear",  # attention and MLP projections
                lora_dropout=0.0,
                task_type="CAUSAL_LM",
            ),
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    pad_id = int(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    steps_per_epoch = -(-len(examples) // config.batch_size)
    losses: list[float] = []
    start = time.perf_counter()
    with tqdm(total=config.epochs * steps_per_epoch, desc="bc", unit="batch") as bar:
        for epoch in range(config.epochs):
            for ids, labels, mask in _batches(examples, config.batch_size, pad_id, rng):
                loss = action_loss(model, ids, labels, mask)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimiser.step()
                losses.append(float(loss.detach()))  # float() of a grad tensor warns
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
                bar.update(1)
    if config.lora:
        model = model.merge_and_unload()
    model.eval()
    first = losses[: max(1, steps_per_epoch)]
    last = losses[-max(1, steps_per_epoch) :]
    return model, {
        "examples": len(examples),
        "epochs": config.epochs,
        "optimiser_steps": len(losses),
        "loss_first_epoch": sum(first) / len(first),
        "loss_last_epoch": sum(last) / len(last),
        "seconds": time.perf_counter() - start,
        "lora": config.lora,
    }


def save_policy(model: Any, tokenizer: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def run(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.training.bc import build_examples, save_policy, train_bc
    from r2v_agent.training.datasets import step_views

    model, tokenizer = components.load_model(config.policy.base, config.seed)
    views = list(step_views(components.episodes(config), components.prompt_format_of(config)))
    examples = build_examples(views, tokenizer, max_tokens=config.bc.max_tokens)
    model, stats = train_bc(model, tokenizer, examples, config.bc, seed=config.seed)
    save_policy(model, tokenizer, out / "policy")
    if config.bc.dagger_rounds:
        from r2v_agent.training.dagger import run_rounds

        stats["dagger"] = run_rounds(config, model, tokenizer, examples, out)
    return stats
