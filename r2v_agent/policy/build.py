"""Build the SLM policy of a backend from a loaded transformers model (see :mod:`.base`)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError
from r2v_agent.policy.base import BACKENDS, Policy
from r2v_agent.policy.models import model_cache_dir

__all__ = ["build_policy", "gguf_for"]

logger = logging.getLogger(__name__)


def gguf_for(model: Any, tokenizer: Any, source: str | Path | None) -> Path:
    """The BF16 GGUF of ``model``, exported once: beside the weights when ``source`` is a
    writable model folder, else in the model cache under a hash of the weights."""
    from r2v_agent.policy.gguf import GGUF_NAME, export_gguf

    if source is not None and Path(source).is_dir():
        folder = Path(source)
        target = folder / GGUF_NAME
        weights = [p for p in folder.glob("*.safetensors")]
        newest = max((p.stat().st_mtime for p in weights), default=0.0)
        if target.is_file() and target.stat().st_mtime >= newest:
            return target
        if os.access(folder, os.W_OK):
            logger.info("writing %s (once) for the llamacpp backend", target)
            return export_gguf(model, tokenizer, target)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    target = model_cache_dir() / "gguf" / f"{digest.hexdigest()[:20]}.gguf"
    if not target.is_file():
        export_gguf(model, tokenizer, target)
    return target


def build_policy(
    backend: str,
    model: Any,
    tokenizer: Any,
    *,
    source: str | Path | None = None,
    k: int = 5,
    temperature: float = 1.0,
    seed: int = 0,
    quantize: str | None = None,
    keep_base: bool = True,
    device: str | None = None,
) -> Policy:
    """A :class:`Policy` of ``backend`` over ``model``. ``source`` is where the weights came from
    (a folder is also where the llamacpp backend caches its GGUF, and what a saved agent copies).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "llamacpp":
        if device not in (None, "cpu"):
            raise ConfigError(f"the llamacpp backend runs on the CPU, not device={device!r}")
        from r2v_agent.policy.llamacpp import LlamaCppPolicy

        path = gguf_for(model, tokenizer, source)
        policy = LlamaCppPolicy(path, tokenizer, k=k, temperature=temperature, seed=seed)
        # Saving copies the source folder (or re-exports the model kept here) -- no duplicate
        # weights in the context are needed for that.
        policy.base_model = model if keep_base else None
        policy.source = Path(source) if source is not None and Path(source).is_dir() else None
        return policy
    from r2v_agent.policy.sampler import TransformersPolicy

    return TransformersPolicy(
        model,
        tokenizer,
        k=k,
        temperature=temperature,
        seed=seed,
        quantize=quantize,
        keep_base=keep_base,
        device=device,
    )
