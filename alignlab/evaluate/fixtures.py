"""Tiny random models with a real tokenizer, for tests, benchmarks and smoke-checking a new task.

A byte-level BPE tokenizer is trained on the texts given (a Llama-style one: BOS added in front, EOS,
a pad token and a small chat template), and a random Llama is saved beside it with ``save_pretrained``,
so the directory loads like any hub model.

Example::

    >>> path = build_tiny_lm("/tmp/tiny", ["some text", "more text"], vocab_size=300)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE ``PreTrainedTokenizerFast`` that prepends ``<s>`` like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", core.token_to_id("<s>"))]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


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

    tok = train_tokenizer(texts, vocab_size)
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
