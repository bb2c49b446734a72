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

__all__ = ["build_policy", "gguf_for", "needs_weights", "BACKEND_OPTIONS"]

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


#: The keys ``backend_options`` may hold, per backend.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "transformers": (),
    "llamacpp": ("n_threads", "prefix_cache"),
    "vllm": ("dtype", "max_model_len", "engine_kwargs"),
    "openai": ("url", "model", "api_key", "timeout", "max_retries"),
}


def needs_weights(backend: str) -> bool:
    """Whether ``backend`` is built from a loaded transformers model (else: the tokenizer and a
    folder or a server are enough)."""
    return backend in ("transformers", "llamacpp")


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
    entropy_top_k: int | None = None,
    backend_options: dict[str, Any] | None = None,
) -> Policy:
    """A :class:`Policy` of ``backend`` over ``model`` (``None`` for the vllm and openai
    backends, which load or serve the weights themselves). ``source`` is where the weights came
    from (a folder is also where the llamacpp backend caches its GGUF, what the vllm backend
    loads, and what a saved agent copies). ``entropy_top_k`` is the entropy definition (see
    :mod:`.base`; a top-N-only backend with ``None`` raises :class:`ConfigError`).
    ``backend_options`` holds the backend's own settings (:data:`BACKEND_OPTIONS`; the openai
    backend needs ``url``)."""
    from r2v_agent.policy.base import check_entropy_support

    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    options = dict(backend_options or {})
    unknown = sorted(set(options) - set(BACKEND_OPTIONS[backend]))
    if unknown:
        allowed = ", ".join(BACKEND_OPTIONS[backend]) or "none"
        raise ConfigError(f"backend {backend!r} takes no option {unknown} (it takes: {allowed})")
    check_entropy_support(backend, entropy_top_k)
    if needs_weights(backend) and model is None:
        raise ConfigError(f"the {backend} backend is built from loaded weights; model is None")
    if not needs_weights(backend) and quantize is not None:
        raise ConfigError(f"quantize={quantize!r} is the transformers backend's; not {backend}")
    if backend == "openai":
        from r2v_agent.policy.openai_compat import OpenAIPolicy

        if not options.get("url"):
            raise ConfigError("the openai backend needs the SLM server's URL (--slm-url)")
        url = options.pop("url")
        return OpenAIPolicy(
            url,
            tokenizer,
            k=k,
            temperature=temperature,
            seed=seed,
            entropy_top_k=entropy_top_k,
            **options,
        )
    if backend == "vllm":
        from r2v_agent.policy.vllm import VLLMPolicy

        if source is None or not Path(source).is_dir():
            raise ConfigError(
                "the vllm backend loads a safetensors folder; this model has none (a preset "
                "built in code: save the agent first)"
            )
        if device not in (None, "cpu", "auto") and not str(device).startswith("cuda"):
            raise ConfigError(f"the vllm backend runs on its build's device, not {device!r}")
        return VLLMPolicy(
            source,
            tokenizer,
            k=k,
            temperature=temperature,
            seed=seed,
            entropy_top_k=entropy_top_k,
            **options,
        )
    if backend == "llamacpp":
        if device not in (None, "cpu"):
            raise ConfigError(f"the llamacpp backend runs on the CPU, not device={device!r}")
        from r2v_agent.policy.llamacpp import LlamaCppPolicy

        path = gguf_for(model, tokenizer, source)
        policy = LlamaCppPolicy(
            path,
            tokenizer,
            k=k,
            temperature=temperature,
            seed=seed,
            entropy_top_k=entropy_top_k,
            **options,
        )
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
        entropy_top_k=entropy_top_k,
    )
