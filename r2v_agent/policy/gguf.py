"""Write a transformers Llama-family policy as a GGUF file that llama.cpp loads.

The llama.cpp backend (:mod:`r2v_agent.policy.llamacpp`) serves the same weights the pipeline
trains and saves as safetensors, so a trained agent's policy is exported here -- once, cached
beside its weights -- in BF16 (norms in F32). Measured against the fp32 transformers model on
SmolLM2-135M (6 TextWorld Cooking prompts, next-token distribution): BF16 KL <= 3.3e-4 with the
same argmax, 0.55 s per K=5 step; Q8_0 KL up to 7.1e-3 and no faster (0.63 s) on this CPU.

Layout facts this follows (llama.cpp's GGUF conventions for the ``llama`` architecture):

* tensor names ``token_embd``, ``blk.N.attn_{q,k,v,output,norm}``, ``blk.N.ffn_{gate,up,down,norm}``,
  ``output_norm``, ``output`` (absent when the embeddings are tied);
* the query and key projections are stored with their rows permuted for llama.cpp's rotary
  layout (pairs of halves interleaved per head) -- transformers undoes this when it loads a GGUF;
* the tokenizer travels as metadata (``tokenizer.ggml.*``). The backend feeds token ids from the
  transformers tokenizer, so llama.cpp's own tokenizer only has to load, not to agree.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from r2v_agent.errors import ConfigError

__all__ = ["export_gguf", "GGUF_NAME"]

#: The file name of a policy's GGUF export, beside its safetensors.
GGUF_NAME = "model.bf16.gguf"

_LAYER = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder a q/k projection's rows from transformers' rotary layout to llama.cpp's."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _tensor_name(name: str) -> str | None:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")
    if len(parts) >= 5 and parts[:2] == ["model", "layers"]:
        inner = ".".join(parts[3:-1])
        if inner in _LAYER:
            return f"blk.{parts[2]}.{_LAYER[inner]}.{parts[-1]}"
    return None


def _tokenizer_metadata(writer: Any, tokenizer: Any) -> None:
    import gguf

    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    specials = set(tokenizer.all_special_ids)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    merges = backend.get("model", {}).get("merges", [])
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    if not merges:  # llama.cpp refuses a BPE vocabulary without merges (a bytes-only one has none)
        merges = [f"{tokens[-2]} {tokens[-1]}"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(n)]
    )
    writer.add_token_merges(merges)
    for key, token_id in (
        ("bos", tokenizer.bos_token_id),
        ("eos", tokenizer.eos_token_id),
        ("pad", tokenizer.pad_token_id),
    ):
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(int(token_id))
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def export_gguf(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Write ``model`` (a transformers ``LlamaForCausalLM``-like model) and its tokenizer to
    ``path`` as a BF16 GGUF; the file appears atomically. Other architectures raise
    :class:`ConfigError` naming the architecture."""
    import gguf
    import torch

    config = model.config
    if config.model_type not in ("llama", "mistral"):
        raise ConfigError(
            f"GGUF export supports Llama-family policies, not model_type={config.model_type!r}"
        )
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=".gguf-", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(staging, "llama")
        writer.add_name("r2v-policy")
        writer.add_context_length(int(config.max_position_embeddings))
        writer.add_embedding_length(int(config.hidden_size))
        writer.add_block_count(int(config.num_hidden_layers))
        writer.add_feed_forward_length(int(config.intermediate_size))
        writer.add_head_count(int(heads))
        writer.add_head_count_kv(int(kv_heads))
        writer.add_rope_dimension_count(int(head_dim))
        rope = getattr(config, "rope_theta", None) or (
            (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
        )
        writer.add_rope_freq_base(float(rope))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(int(config.vocab_size))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
        _tokenizer_metadata(writer, tokenizer)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if tied and name == "lm_head.weight":
                    continue
                target = _tensor_name(name)
                if target is None:
                    if name.endswith("rotary_emb.inv_freq"):
                        continue  # recomputed by llama.cpp from the rope metadata
                    raise ConfigError(f"GGUF export: no llama.cpp name for tensor {name!r}")
                data = tensor.detach().float().cpu().numpy()
                if ".attn_q." in target:
                    data = _rotary_rows(data, heads)
                elif ".attn_k." in target:
                    data = _rotary_rows(data, kv_heads)
                if data.ndim == 1:  # norms stay F32, as llama.cpp expects
                    writer.add_tensor(target, data.astype(np.float32))
                else:
                    # quantize() returns the raw bytes; the writer derives the shape from them.
                    bf16 = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
                    writer.add_tensor(target, bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return path
