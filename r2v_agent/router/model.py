"""The learned router: a small MLP from the 15 features to P(the SLM fails at this step).

Features are standardised with stored statistics, then 15 -> H -> H -> 1 with GELU (H = 96,
about 11k parameters, for an untrained router; the pipeline trains H = 16, 545 parameters, since
a few hundred logged steps overfit the wider one); a temperature divides the logit and optional isotonic knots map the
result (calibration, :mod:`r2v_agent.router.calibration`). Untrained, the
statistics are identity and the weights random: scores lie in (0, 1), so tau = 0 always
escalates and tau = 1 never does.

A trained router clamps every feature to the range it saw in training before standardising. A
feature with no spread there (``escalation_share`` is always 0 in SLM-only rollouts) would
otherwise be divided by a tiny spread and reach the MLP hundreds of standard deviations out at
run time; clamped, it cannot move the output at all, and in general the MLP is never asked to
extrapolate. ``spec()`` records the rule and the features that were constant in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.router.baselines import Router
from r2v_agent.router.features import FEATURE_NAMES, N_FEATURES

__all__ = ["MLPRouter"]

logger = logging.getLogger(__name__)


class MLPRouter(Router):
    def __init__(self, hidden: int = 96, seed: int = 0) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.hidden = hidden
        self.net = nn.Sequential(
            nn.Linear(N_FEATURES, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        ).eval()
        self.mean = torch.zeros(N_FEATURES)
        self.std = torch.ones(N_FEATURES)
        self.temperature = torch.ones(())
        # Isotonic calibration knots (empty: none).
        self.iso_x = torch.zeros(0)
        self.iso_y = torch.zeros(0)
        # The training range of each feature; inputs are clamped to it (untrained: no clamp).
        self.lo = torch.full((N_FEATURES,), -torch.inf)
        self.hi = torch.full((N_FEATURES,), torch.inf)
        # Which features the router reads (1) or ignores (0: an ablation's left-out features).
        self.mask = torch.ones(N_FEATURES)

    def use_features(self, names: Sequence[str]) -> None:
        """Read only ``names`` (the others enter the network as a constant 0)."""
        import torch

        unknown = set(names) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}")
        self.mask = torch.tensor([1.0 if n in names else 0.0 for n in FEATURE_NAMES])

    @property
    def features(self) -> list[str]:
        """The features this router reads."""
        return [n for n, m in zip(FEATURE_NAMES, self.mask.tolist(), strict=True) if m]

    def fit_input_range(self, features: Any) -> None:
        """Standardisation statistics and clamp range from the training features ``(n, 15)``."""
        self.mean = features.mean(0)
        self.std = features.std(0).clamp_min(1e-3)
        self.lo = features.min(0).values
        self.hi = features.max(0).values

    @property
    def constant_features(self) -> list[str]:
        """Features with no spread in training: clamped to their one value at run time."""
        return [n for n, lo, hi in zip(FEATURE_NAMES, self.lo, self.hi, strict=True) if lo == hi]

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def logits(self, features: Any) -> Any:
        x = features.clamp(self.lo.to(features.dtype), self.hi.to(features.dtype))
        x = (x - self.mean) / self.std.clamp_min(1e-6) * self.mask.to(x.dtype)
        return self.net(x).squeeze(-1) / self.temperature

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(features, dtype=np.float32))
            # float64: a sharp temperature puts many scores within float32's rounding of 1.0,
            # where they would tie and lose their ranking.
            p = torch.sigmoid(self.logits(x).double()).numpy()
        if self.iso_x.numel():
            p = np.interp(p, self.iso_x.numpy(), self.iso_y.numpy())
        return p

    def state_dict(self) -> dict[str, Any]:
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        state.update(
            mean=self.mean,
            std=self.std,
            temperature=self.temperature,
            iso_x=self.iso_x,
            iso_y=self.iso_y,
            lo=self.lo,
            hi=self.hi,
            mask=self.mask,
        )
        return state

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(path),
            metadata={"features": ",".join(FEATURE_NAMES), "hidden": str(self.hidden)},
        )

    @classmethod
    def load(cls, path: str | Path) -> MLPRouter:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if meta.get("features") and meta["features"] != ",".join(FEATURE_NAMES):
            raise ValueError(f"router at {path} was trained on other features: {meta['features']}")
        router = cls(hidden=int(meta.get("hidden", 96)))
        state = load_file(str(path))
        router.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        router.mean, router.std, router.temperature = (
            state["mean"],
            state["std"],
            state["temperature"],
        )
        router.iso_x = state.get("iso_x", router.iso_x)
        router.iso_y = state.get("iso_y", router.iso_y)
        router.mask = state.get("mask", router.mask)  # older files: every feature
        if "lo" in state:
            router.lo, router.hi = state["lo"], state["hi"]
        else:
            logger.warning(
                "router at %s predates input clamping: features outside the training range "
                "reach the MLP unclamped (retrain it to clamp them)",
                path,
            )
        return router

    def spec(self) -> dict[str, Any]:
        return {
            "type": "MLPRouter",
            "hidden": self.hidden,
            "parameters": self.n_parameters,
            "temperature": float(self.temperature),
            "isotonic_knots": int(self.iso_x.numel()),
            "input_range": "clamped to the training range"
            if bool(self.lo.isfinite().all())
            else "unclamped",
            "constant_features": self.constant_features,
            "features": self.features,
        }
