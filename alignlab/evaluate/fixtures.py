"""Tiny random models with a real tokenizer, for tests, benchmarks and smoke-checking a new task.

A byte-level BPE tokenizer is trained on the texts given (:func:`alignlab.world.tokenizer.train_tokenizer`,
prepending BOS like Llama's, with EOS and pad tokens and a chat template), and a random Llama is saved beside
it with ``save_pretrained``, so the directory loads like any hub model.

Example::

    >>> path = build_tiny_lm("/tmp/tiny", ["some text", "more text"], vocab_size=300)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def build_tiny_lm(
    path: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 32,
    layers: int = 1,
    heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
) -> str:
    """Train a tokenizer on ``texts``, build a random Llama for it, save both in ``path``; return ``path``."""
    from alignlab.core.models import tiny_llama
    from alignlab.world.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, vocab_size, model_max_length=max_positions, add_bos=True)  # like hub models
    model = tiny_llama(
        len(tok),
        hidden_size=hidden_size,
        layers=layers,
        heads=heads,
        max_positions=max_positions,
        seed=seed,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Deprecated: use :func:`alignlab.world.tokenizer.train_tokenizer` (``add_bos=True`` for this one's BOS)."""
    import warnings

    from alignlab.world.tokenizer import train_tokenizer as build

    warnings.warn("alignlab.evaluate.fixtures.train_tokenizer is deprecated: use "
                  "alignlab.world.tokenizer.train_tokenizer(texts, vocab_size, add_bos=True)", DeprecationWarning,
                  stacklevel=2)
    return build(texts, vocab_size, add_bos=True)
