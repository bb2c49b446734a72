"""Saving and loading any router with the :class:`~r2v_agent.router.baselines.Router` interface.

A router is saved as a spec (its type and parameters, in the agent's ``config.json``) plus, for
learned routers, a weights file in the agent directory:

==================  =============================  ============================
type                parameters in the spec         file
==================  =============================  ============================
``MLPRouter``       ``path``                       ``router.safetensors``
``PPORouter``       ``path``                       ``router_ppo.zip`` (SB3)
``RandomRouter``    ``rate``, ``seed``             --
``EntropyRouter``,  --                             --
``VerifierRouter``,
``NeverEscalate``,
``AlwaysEscalate``
==================  =============================  ============================

The hindsight oracle reads the environment's ground truth, so it is an evaluation reference and
cannot be saved into a deployable agent.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.router.baselines import (
    AlwaysEscalate,
    EntropyRouter,
    NeverEscalate,
    RandomRouter,
    Router,
    VerifierRouter,
)

__all__ = ["save_router", "load_router", "SAVABLE_ROUTERS"]

_STATELESS: dict[str, type[Router]] = {
    cls.__name__: cls for cls in (NeverEscalate, AlwaysEscalate, EntropyRouter, VerifierRouter)
}
_FILES = {"MLPRouter": "router.safetensors", "PPORouter": "router_ppo.zip"}
_PPO_ENTRY_POINT = "r2v_agent.evaluation.ppo:PPORouter"

#: Every router type :func:`save_router` writes and :func:`load_router` reads.
SAVABLE_ROUTERS: tuple[str, ...] = (*_FILES, "RandomRouter", *_STATELESS)


def save_router(router: Router, directory: Path) -> dict[str, Any]:
    """Write ``router``'s weights (if any) into ``directory``; return the spec that rebuilds it."""
    from r2v_agent.router.model import MLPRouter

    name = type(router).__name__
    if isinstance(router, MLPRouter):
        router.save(directory / _FILES[name])
        return {**router.spec(), "path": _FILES[name]}
    if name == "PPORouter":
        router.save(directory / _FILES[name])  # type: ignore[attr-defined]
        return {"type": name, "path": _FILES[name]}
    if isinstance(router, RandomRouter):
        return {"type": name, "rate": router.rate, "seed": router.seed}
    if _STATELESS.get(name) is type(router):
        return {"type": name}
    raise ConfigError(
        f"save_pretrained cannot save a {name} router; savable routers: "
        f"{', '.join(SAVABLE_ROUTERS)}"
    )


def load_router(spec: dict[str, Any], directory: Path) -> Router:
    """Rebuild the router ``spec`` describes; files are read from ``directory``.

    Errors name the agent's ``config.json`` field or the file that is wrong."""
    config = directory / "config.json"
    name = spec.get("type")
    if name in _STATELESS:
        return _STATELESS[name]()
    if name == "RandomRouter":
        rate, seed = spec.get("rate"), spec.get("seed", 0)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise ConfigError(f"{config}: router.rate must be a number in [0, 1], got {rate!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"{config}: router.seed must be an integer, got {seed!r}")
        return RandomRouter(float(rate), seed=seed)
    if name not in _FILES:
        raise ConfigError(
            f"{config}: router.type {name!r} is not one of {', '.join(SAVABLE_ROUTERS)}"
        )
    filename = spec.get("path", _FILES[name])
    if not isinstance(filename, str):
        raise ConfigError(f"{config}: router.path must be a file name, got {filename!r}")
    path = directory / filename
    if not path.is_file():
        raise ConfigError(f"{config}: router.path {filename!r}: no such file in {directory}")
    try:
        if name == "MLPRouter":
            from r2v_agent.router.model import MLPRouter

            return MLPRouter.load(path)
        # The PPO baseline lives in evaluation (above this layer): found by its entry point,
        # as Gymnasium finds an env, so loading an MLP agent never imports it.
        module, _, attr = _PPO_ENTRY_POINT.partition(":")
        ppo_router = getattr(importlib.import_module(module), attr)
        return ppo_router.load(path)
    except Exception as exc:  # a torn or foreign file: name it, whatever the library raised
        raise ConfigError(f"{path}: cannot load the {name} router ({exc})") from exc
