"""``r2v train verifier``: label the BC policy's samples at visited states, train the head.

At ``states`` visited states (drawn from the collected clean and perturbed trajectories) the BC
policy samples K candidates. A candidate is labelled positive when it is the teacher's action
or when the env's ground truth says it makes progress: the state is rebuilt by replaying the
clean trajectory's actions from the same env seed, the candidate is played, and
:func:`~r2v_agent.rollout.step_progress` judges the step (TextWorld: score up or a
shorter expert plan). The teacher's action itself is added as a positive. The
:class:`~r2v_agent.verifier.learned.LearnedVerifier` head is trained on the frozen encoder's
embeddings plus the rule prior, and scored on held-out tasks (AUROC, Brier, ECE).

The samples are saved (``samples.jsonl``) for the DPO stage, which ranks them with the trained
verifier.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2v_agent import metrics
from r2v_agent.config import PipelineConfig
from r2v_agent.errors import StageError
from r2v_agent.groundtruth import ProgressProbe, same_action
from r2v_agent.policy.prompts import PromptFormat
from r2v_agent.training import components
from r2v_agent.training.datasets import StepView

__all__ = ["run", "sample_states", "train_head"]

logger = logging.getLogger(__name__)


def sample_states(
    views: list[StepView],
    policy: Any,
    fmt: PromptFormat,
    *,
    n_states: int,
    clean_actions: dict[int, list[str]],
    probe: ProgressProbe | None,
    max_new_tokens: int,
    seed: int,
) -> list[dict[str, Any]]:
    """K policy samples at ``n_states`` random visited states, each candidate labelled."""
    rng = random.Random(seed)
    chosen = rng.sample(views, min(n_states, len(views)))
    samples = []
    for view in tqdm(chosen, desc="verifier: sample states", unit="state"):
        step = view.step
        result = policy.sample(
            view.messages, single_line=not fmt.multiline_actions, max_new_tokens=max_new_tokens
        )
        actions = [fmt.extract_action(c.text) for c in result.candidates]
        teacher = step["action"]
        admissible = step.get("admissible_actions")
        allowed = {a.lower() for a in admissible} if admissible else None
        state_index = step.get("state_index")
        env_seed = view.episode["env_seed"]
        labels = []
        verdicts: dict[str, bool] = {}
        for action in actions:
            key = action.strip().lower()
            if key in verdicts:
                labels.append(verdicts[key])
                continue
            if not key:
                label = False
            elif same_action(action, teacher) or same_action(action, step.get("expert_action")):
                label = True
            elif allowed is not None and key not in allowed:
                label = False  # the game cannot do it: no progress
            elif probe is not None and state_index is not None and env_seed in clean_actions:
                label = probe(env_seed, clean_actions[env_seed][:state_index], action)
            else:
                label = False
            verdicts[key] = label
            labels.append(label)
        samples.append(
            {
                "episode_key": view.episode["episode_key"],
                "step": view.index,
                "env_seed": env_seed,
                "state_index": state_index,
                "perturbed": view.episode["perturbation"] is not None,
                "observation": step["observation"],
                "admissible_actions": admissible,
                "teacher_action": teacher,
                "messages": view.messages,
                "actions": actions,
                "seq_logprobs": [c.seq_logprob for c in result.candidates],
                "labels": labels,
            }
        )
    return samples


def _rows(samples: list[dict[str, Any]], verifier: Any) -> tuple[Any, Any, list[int], list[bool]]:
    """Encoder features (+ rule prior), labels, env seeds and is-teacher flags of every
    candidate and teacher action."""
    import torch

    feats: list[Any] = []
    labels: list[float] = []
    groups: list[int] = []
    teacher: list[bool] = []
    for s in tqdm(samples, desc="verifier: embed", unit="state"):
        actions = [*s["actions"], s["teacher_action"]]
        ys = [*s["labels"], True]
        info = {"admissible_actions": s["admissible_actions"]}
        prior = verifier.rules.score(s["observation"], actions, info)
        emb = verifier.embed(s["observation"], actions)
        feats.append(torch.cat([emb, torch.tensor(prior, dtype=torch.float32)[:, None]], dim=-1))
        labels.extend(float(y) for y in ys)
        groups.extend([s["env_seed"]] * len(actions))
        teacher.extend([False] * len(s["actions"]) + [True])
    return torch.cat(feats), torch.tensor(labels), groups, teacher


def train_head(
    verifier: Any,
    samples: list[dict[str, Any]],
    *,
    epochs: int,
    learning_rate: float,
    heldout_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """Fit ``verifier.head`` on the training tasks' samples; report held-out metrics."""
    import torch

    if not samples:
        raise StageError("verifier: no sampled states to learn from")
    x, y, groups, is_teacher = _rows(samples, verifier)
    seeds = sorted(set(groups))
    rng = random.Random(seed)
    rng.shuffle(seeds)
    n_held = max(1, round(heldout_fraction * len(seeds))) if len(seeds) > 1 else 0
    held = set(seeds[:n_held])
    is_held = torch.tensor([g in held for g in groups])
    train_x, train_y = x[~is_held], y[~is_held]
    torch.manual_seed(seed)
    head = verifier.head
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=1e-4)
    # Balance the classes: positives are rarer than negatives for a weak policy.
    pos = float(train_y.sum())
    weight = torch.tensor((len(train_y) - pos) / max(pos, 1.0))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    head.train()
    for _ in tqdm(range(epochs), desc="verifier: train head", unit="epoch"):
        loss = loss_fn(head(train_x).squeeze(-1), train_y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    head.eval()
    verifier.trained = True
    with torch.no_grad():
        scores = torch.sigmoid(head(x).squeeze(-1)).numpy()
    prior = x[:, -1].numpy()
    report: dict[str, Any] = {
        "states": len(samples),
        "labelled_actions": len(y),
        "positive_rate": float(y.mean()),
        "train_tasks": len(seeds) - n_held,
        "heldout_tasks": n_held,
        "final_train_loss": float(loss),
    }
    # Held-out metrics on the policy's own candidates (the added teacher rows are easy).
    mask = is_held.numpy() & ~torch.tensor(is_teacher).numpy()
    if mask.any():
        yh = y.numpy()[mask]
        report.update(
            heldout_actions=int(mask.sum()),
            heldout_auroc=metrics.auroc(scores[mask], yh),
            heldout_brier=metrics.brier(scores[mask], yh),
            heldout_ece=metrics.ece(scores[mask], yh),
            rule_prior_auroc=metrics.auroc(prior[mask], yh),
        )
    return report


def save_samples(samples: list[dict[str, Any]], path: Path) -> None:
    with path.open("w") as handle:
        for s in samples:
            handle.write(json.dumps(s) + "\n")


def load_samples(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from r2v_agent.groundtruth import ProgressProbe
    from r2v_agent.training.datasets import step_views
    from r2v_agent.training.fit_verifier import sample_states, save_samples, train_head
    from r2v_agent.verifier.learned import LearnedVerifier

    episodes = components.episodes(config)
    fmt = components.prompt_format_of(config)
    views = list(step_views(episodes, fmt))
    clean_actions = {
        e["env_seed"]: [s["action"] for s in e["steps"]]
        for e in episodes
        if e["perturbation"] is None
    }
    policy = components.sampler(config, str(config.run_dir / "bc" / "policy"))
    probe = (
        ProgressProbe(config.env.id, config.env.kwargs, config.env.max_steps)
        if fmt.family == "textworld"
        else None
    )
    try:
        samples = sample_states(
            views,
            policy,
            fmt,
            n_states=config.verifier.states,
            clean_actions=clean_actions,
            probe=probe,
            max_new_tokens=fmt.max_new_tokens,
            seed=config.seed,
        )
    finally:
        if probe is not None:
            probe.close()
    save_samples(samples, out / "samples.jsonl")
    verifier = LearnedVerifier(fmt.family, encoder=config.verifier.encoder)
    report = train_head(
        verifier,
        samples,
        epochs=config.verifier.epochs,
        learning_rate=config.verifier.learning_rate,
        heldout_fraction=config.verifier.heldout_fraction,
        seed=config.seed,
    )
    verifier.save(out / "verifier.safetensors")
    report["bc_sample_success_rate"] = sum(sum(s["labels"]) for s in samples) / max(
        1, sum(len(s["labels"]) for s in samples)
    )
    return report
