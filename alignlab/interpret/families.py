"""Where each TransformerLens hook point lives in a Hugging Face model, one small table per family.

A :class:`Family` names the plain ``transformers`` submodules (dotted paths) whose inputs and outputs *are*
the activations TransformerLens names: ``blocks.{L}.hook_resid_pre`` is the input of decoder layer ``L``,
``blocks.{L}.attn.hook_z`` is the input of the attention output projection, and so on. Nothing is converted
or copied; :mod:`alignlab.interpret.hooks` registers PyTorch hooks on these modules.

Adding a family is one :class:`Family` entry in :data:`FAMILIES` keyed by the config's ``model_type``
(``model.config.model_type``); the test suite then runs every hook point on a tiny random config of it.

Example:
    >>> family_for_model_type("qwen2").attn_out
    'self_attn'
    >>> family_for_model_type("gpt2").fused_qkv
    'c_attn'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from alignlab.errors import InterpretError


@dataclass(frozen=True)
class Family:
    """Dotted module paths of one architecture family; block-level paths are relative to a decoder layer."""

    layers: str
    """The ``nn.ModuleList`` of decoder layers (``model.layers``)."""
    embed: str
    """Token embedding (its output is ``hook_embed``)."""
    final_norm: str
    """The norm before the unembedding (``ln_final``)."""
    unembed: str
    """The output projection to the vocabulary (its output is the logits, ``unembed.hook_out``)."""
    ln1: str
    """Norm before attention (``blocks.L.ln1``)."""
    attn: str
    """The attention module (its ``forward`` computes q/k/v, calls the attention function, projects)."""
    o_proj: str
    """Attention output projection inside ``attn``; its input is ``hook_z`` reshaped."""
    attn_out: str
    """Module whose output is what attention adds to the residual stream (``hook_attn_out``)."""
    ln2: str
    """Norm before the MLP (``blocks.L.ln2``); its input is the residual mid-block."""
    mlp: str
    """The MLP module (input ``hook_mlp_in``)."""
    mlp_pre: str
    """Inside ``mlp``: the projection whose output goes through the activation (``mlp.hook_pre``)."""
    mlp_down: str
    """Inside ``mlp``: the output projection; its input is ``mlp.hook_post``."""
    mlp_out: str
    """Module whose output is what the MLP adds to the residual stream (``hook_mlp_out``)."""
    q_proj: str | None = None
    """Separate query/key/value projections inside ``attn`` (None when fused)."""
    k_proj: str | None = None
    v_proj: str | None = None
    fused_qkv: str | None = None
    """One projection producing query, key and value concatenated (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``)."""
    mlp_up: str | None = None
    """Inside ``mlp``: the linear (ungated) branch of a gated MLP (``mlp.hook_pre_linear``)."""
    fused_gate_up: bool = False
    """``mlp_pre`` outputs gate and up halves concatenated (Phi-3 ``gate_up_proj``)."""
    pos_embed: str | None = None
    """Learned absolute position embedding (GPT-2 ``wpe``; ``hook_pos_embed``)."""
    conv1d: bool = False
    """Projections are GPT-2 ``Conv1D`` (weight ``[in, out]``) rather than ``nn.Linear`` (``[out, in]``)."""
    rotary: bool = True
    """Queries and keys are rotated inside attention (``hook_rot_q``/``hook_rot_k`` exist)."""


_LLAMA = Family(
    layers="model.layers", embed="model.embed_tokens", final_norm="model.norm", unembed="lm_head",
    ln1="input_layernorm", attn="self_attn", o_proj="o_proj", attn_out="self_attn",
    ln2="post_attention_layernorm", mlp="mlp", mlp_pre="gate_proj", mlp_up="up_proj", mlp_down="down_proj",
    mlp_out="mlp", q_proj="q_proj", k_proj="k_proj", v_proj="v_proj",
)
# Gemma 2/3 normalise each sublayer's output before adding it to the residual: what attention and the MLP
# *add* is the output of those post-norms, and the MLP's input norm is pre_feedforward_layernorm.
_GEMMA2 = Family(
    layers="model.layers", embed="model.embed_tokens", final_norm="model.norm", unembed="lm_head",
    ln1="input_layernorm", attn="self_attn", o_proj="o_proj", attn_out="post_attention_layernorm",
    ln2="pre_feedforward_layernorm", mlp="mlp", mlp_pre="gate_proj", mlp_up="up_proj", mlp_down="down_proj",
    mlp_out="post_feedforward_layernorm", q_proj="q_proj", k_proj="k_proj", v_proj="v_proj",
)
_PHI3 = Family(
    layers="model.layers", embed="model.embed_tokens", final_norm="model.norm", unembed="lm_head",
    ln1="input_layernorm", attn="self_attn", o_proj="o_proj", attn_out="self_attn",
    ln2="post_attention_layernorm", mlp="mlp", mlp_pre="gate_up_proj", fused_gate_up=True,
    mlp_down="down_proj", mlp_out="mlp", fused_qkv="qkv_proj",
)
_GPT2 = Family(
    layers="transformer.h", embed="transformer.wte", pos_embed="transformer.wpe", final_norm="transformer.ln_f",
    unembed="lm_head", ln1="ln_1", attn="attn", o_proj="c_proj", attn_out="attn", ln2="ln_2", mlp="mlp",
    mlp_pre="c_fc", mlp_down="c_proj", mlp_out="mlp", fused_qkv="c_attn", conv1d=True, rotary=False,
)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA2,
    "phi3": _PHI3,
    "gpt2": _GPT2,
}
"""``config.model_type`` → module map. Families with the same layout share one entry."""


def family_for_model_type(model_type: str) -> Family:
    """The :class:`Family` of a ``config.model_type``; an unmapped type raises InterpretError saying how to add it."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        close = difflib.get_close_matches(model_type, FAMILIES, n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise InterpretError(
            f"no hook mapping for model family '{model_type}'{hint}; mapped: {', '.join(sorted(FAMILIES))}. "
            "To add one, put a Family(...) naming its decoder-layer, attention and MLP submodules into "
            "alignlab.interpret.families.FAMILIES under its config.model_type"
        ) from None


def tiny_model(model_type: str, *, seed: int = 0, vocab_size: int = 64):
    """A tiny random causal LM of a mapped family (hidden 32, 2 layers, 4 query and 2 key/value heads where
    the family has grouped queries, MLP 48), in eval mode: for tests, parity checks and examples.

    Example:
        >>> tiny_model("qwen2").config.num_key_value_heads
        2
    """
    import torch
    import transformers as T

    family_for_model_type(model_type)
    shared = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    configs = {
        "llama": lambda: T.LlamaConfig(**shared), "mistral": lambda: T.MistralConfig(**shared),
        "qwen2": lambda: T.Qwen2Config(**shared), "gemma": lambda: T.GemmaConfig(**shared, head_dim=8),
        "gemma2": lambda: T.Gemma2Config(**shared, head_dim=8), "phi3": lambda: T.Phi3Config(**shared, pad_token_id=0),
        "gpt2": lambda: T.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                                     n_inner=48, bos_token_id=0, eos_token_id=0),
    }
    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(configs[model_type]()).eval()
