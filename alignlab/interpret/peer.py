"""TransformerLens 4.3's ``TransformerBridge`` around an in-memory Hugging Face model, for parity checks and
benchmarks (TransformerLens is a development dependency, imported only here, when called).

The bridge is booted on a *copy* of the model with weight processing off (its default), so it computes the
same Hugging Face model: booting switches the model it wraps to eager attention, which would otherwise change
the caller's model. It needs a tokenizer that was saved to disk (an in-memory one fails on
``name_or_path``), so a word-level tokenizer over ``t0 … t{V-1}`` (``t1`` BOS, ``t2`` EOS) is written to
``folder``: the text ``"t5 t9"`` is the tokens ``[1, 5, 9]`` to ``bridge.to_tokens``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn


def word_tokenizer(folder: str | Path, vocab_size: int):
    """Save and reload a word-level tokenizer whose word ``t{i}`` is token ``i``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="t0", pad_token="t0", bos_token="t1",
                            eos_token="t2").save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def transformer_lens_bridge(model: nn.Module, folder: str | Path):
    """A ``TransformerBridge`` computing ``model`` (a copy of it; ``folder`` receives its config and tokenizer)."""
    from transformer_lens.model_bridge import TransformerBridge

    twin = copy.deepcopy(model)
    twin.config.save_pretrained(folder)
    tokenizer = word_tokenizer(folder, model.config.vocab_size)
    return TransformerBridge.boot_transformers(str(folder), hf_model=twin, tokenizer=tokenizer)
