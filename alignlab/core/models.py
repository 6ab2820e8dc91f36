"""Loading policies, references, reward models and tokenizers with `transformers`.

Everything loads the way a hub model loads (``from_pretrained(name_or_path)``), so a toy-world model
saved on disk and a hub model go through one path. ``trust_remote_code`` stays off unless asked.

Example::

    >>> from alignlab.core.models import load_tokenizer, load_causal_lm
    >>> tok = load_tokenizer("runs/sft")            # doctest: +SKIP
    >>> model = load_causal_lm("runs/sft", dtype="float32")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignlab.errors import ModelError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def _dtype(name: str) -> Any:
    if name not in DTYPES:
        raise ModelError(f"unknown dtype '{name}'; choose one of {sorted(DTYPES)}")
    if name == "float16" and not torch.cuda.is_available():
        # fp16 matmuls run ~100x slower than fp32 on a CPU (DESIGN.md section 4).
        raise ModelError("dtype float16 is only supported on a GPU; use bfloat16 or float32 on a CPU")
    return DTYPES[name]


def _check_exists(name_or_path: str) -> None:
    """Fail early with a clear message for a local path that does not exist.

    A string that looks like a path (starts with '.', '/', '~', has more than one '/', or starts with a
    folder that exists here, as ``runs/x`` does beside ``runs/``) and is missing cannot be a hub name
    either, so say so instead of letting the hub client fail obscurely.
    """
    if "://" in name_or_path:
        raise ModelError(f"'{name_or_path}' is a URL; this command needs a local model directory or a hub name "
                         "(eval and judge take server URLs)")
    path = Path(os.path.expanduser(name_or_path))
    looks_local = (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
                   or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))
    if looks_local and not path.exists():
        raise ModelError(f"model path '{name_or_path}' does not exist")


def _check_weights(name_or_path: str) -> None:
    """Refuse a local model whose weights are pickles only: unpickling can run code, so only safetensors load."""
    path = Path(os.path.expanduser(name_or_path))
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in path.glob(pattern))
    if pickles:
        raise ModelError(f"'{name_or_path}' holds pickle weights only ({', '.join(pickles)}); alignlab loads "
                         "safetensors weights only, because loading a pickle can run code. Convert the "
                         "checkpoint to model.safetensors with a tool you trust")


def _from_pretrained(cls: Any, name_or_path: str, **kwargs: Any) -> Any:
    from safetensors import SafetensorError

    from alignlab.core import activations  # noqa: F401  (registers alignlab's activations, e.g. "solu")

    _check_exists(name_or_path)
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except SafetensorError as err:
        raise ModelError(f"'{name_or_path}': the safetensors weights are truncated or corrupt ({err})") from None
    except (OSError, ValueError, EOFError) as err:
        local = Path(os.path.expanduser(name_or_path)).exists()
        where = "" if local else " (no such local path, and not loadable from the hub)"
        raise ModelError(f"cannot load '{name_or_path}'{where} with {cls.__name__}: "
                         + " ".join(str(err).split())) from None


def _warn_custom_code(name_or_path: str, model: nn.Module, trust_remote_code: bool) -> None:
    if getattr(model.config, "auto_map", None) and not trust_remote_code:
        warnings.warn(f"'{name_or_path}' ships custom model code (auto_map in config.json); it is not loaded "
                      f"(trust_remote_code is off): the standard {type(model).__name__} class is used, and "
                      "auto_map is not written into saved models", stacklevel=3)


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False, padding_side: str = "right"):
    """Load a tokenizer and make sure it can pad (pad falls back to EOS, as is usual for decoders)."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, name_or_path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"tokenizer of '{name_or_path}' has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_causal_lm(name_or_path: str, *, dtype: str = "float32", trust_remote_code: bool = False,
                   lora: dict | None = None) -> nn.Module:
    """Load a causal LM; with ``lora`` (peft ``LoraConfig`` kwargs) wrap it in a trainable adapter."""
    from transformers import AutoModelForCausalLM

    _check_weights(name_or_path)
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, dtype=_dtype(dtype),
                             trust_remote_code=trust_remote_code)
    _warn_custom_code(name_or_path, model, trust_remote_code)
    if lora:
        model = add_lora(model, lora)
    return model


def load_reward_model(name_or_path: str, *, dtype: str = "float32", trust_remote_code: bool = False,
                      num_labels: int = 1) -> nn.Module:
    """Load a sequence-classification model with a scalar head (a reward or cost model).

    A causal LM checkpoint gets a freshly initialised score head, as TRL's reward trainer does. That
    expected difference (``score.*`` new, ``lm_head.*`` unused) passes silently; any other missing or
    unexpected weight is a warning that names them.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    _check_weights(name_or_path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' load report: a table per load, expected or not
    try:
        model, info = _from_pretrained(AutoModelForSequenceClassification, name_or_path, dtype=_dtype(dtype),
                                       trust_remote_code=trust_remote_code, num_labels=num_labels,
                                       output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    _warn_custom_code(name_or_path, model, trust_remote_code)
    missing = [k for k in info["missing_keys"] if not k.startswith("score.")]
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith("lm_head.")]
    if missing or unexpected or info["mismatched_keys"]:
        warnings.warn(f"loading '{name_or_path}' as a reward model: newly initialised {missing}, unused "
                      f"{unexpected}, shape-mismatched {info['mismatched_keys']}", stacklevel=2)
    if model.config.pad_token_id is None:
        # Sequence classifiers pool the last non-pad token, so they must know the pad id.
        model.config.pad_token_id = model.config.eos_token_id
    return model


def add_lora(model: nn.Module, lora: dict) -> nn.Module:
    """Wrap ``model`` with a peft LoRA adapter; ``lora`` holds ``LoraConfig`` keyword arguments."""
    from peft import LoraConfig, get_peft_model

    defaults = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
    return get_peft_model(model, LoraConfig(**{**defaults, **lora}))


class ValueHead(nn.Module):
    """A scalar head on a causal LM's last hidden state: per-token values (PPO) or rewards.

    Example::

        >>> head = ValueHead(hidden_size=64)
        >>> head(torch.zeros(2, 5, 64)).shape
        torch.Size([2, 5])
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.bias)
        nn.init.normal_(self.summary.weight, std=1.0 / (hidden_size + 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [batch, seq, hidden] -> [batch, seq]
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def tiny_llama(vocab_size: int, *, hidden_size: int = 64, layers: int = 2, heads: int = 4,
               intermediate_size: int | None = None, max_positions: int = 512, seed: int = 0,
               bos_token_id: int | None = None, eos_token_id: int | None = None,
               pad_token_id: int | None = None, hidden_act: str = "silu") -> nn.Module:
    """A randomly initialised Llama-architecture causal LM (for tests, benchmarks and the toy world)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignlab.core import activations  # noqa: F401  (so hidden_act may be "solu")

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads,
        intermediate_size=intermediate_size or 4 * hidden_size, max_position_embeddings=max_positions,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        tie_word_embeddings=False, hidden_act=hidden_act,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@dataclass
class ModelConfig:
    """Which model to start from and how to load it."""

    name_or_path: str = ""
    """a local directory saved with save_pretrained, or a hub name"""
    dtype: str = "float32"
    """weights dtype: float32, bfloat16 (float16 only on a GPU); bf16 autocast is a training option"""
    trust_remote_code: bool = False
    """run code shipped with the model (off unless you trust it)"""
    lora_r: int = 0
    """LoRA rank; 0 trains all weights"""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / r)"""
    lora_target_modules: str = "all-linear"
    """modules LoRA adapts (peft syntax)"""
    merge_lora: bool = True
    """merge the adapter into the weights when saving, so the result loads as a plain model"""

    def lora(self) -> dict | None:
        if self.lora_r <= 0:
            return None
        return {"r": self.lora_r, "lora_alpha": self.lora_alpha, "target_modules": self.lora_target_modules}


def save_pretrained_atomic(model: nn.Module, tokenizer, output_dir: str | Path, *, merge_lora: bool = True) -> None:
    """``save_pretrained`` model and tokenizer into ``output_dir`` without ever leaving half a model there.

    Files are written to a temp directory beside it, then moved in one by one with ``os.replace``. An
    ``auto_map`` (custom code the model was not loaded with) is dropped from the JSON configs written.
    """
    import json
    import shutil
    import tempfile

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".save-") as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name in ("config.json", "tokenizer_config.json"):
            written = Path(tmp) / name
            if written.exists() and "auto_map" in (data := json.loads(written.read_text())):
                del data["auto_map"]
                written.write_text(json.dumps(data, indent=2) + "\n")
        for item in Path(tmp).iterdir():
            target = output_dir / item.name
            if item.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(item, target)
