"""A small byte-level BPE tokenizer with a chat template: the toy world's, and alignlab's one tokenizer builder.

The world, the tests' tiny models (``tests/conftest.py``), :func:`alignlab.evaluate.fixtures.build_tiny_lm` and
the benchmarks (``benchmarks/common.py``) all build their tokenizer with :func:`train_tokenizer`, each on its
own texts, so every tiny model in the project tokenises and renders chats the same way.

Trained with Hugging Face ``tokenizers`` on the world's corpus and wrapped as a
``transformers.PreTrainedTokenizerFast``, so it saves with ``save_pretrained`` and loads with
``AutoTokenizer.from_pretrained(dir)`` like any hub tokenizer.

The chat template renders ``<|bos|>`` once, then each turn as ``<|user|>text<|end|>`` (likewise
``<|system|>``) or ``<|assistant|>text<|eos|>``; ``add_generation_prompt`` appends ``<|assistant|>``.
Every turn marker is a special token, so nothing merges across the prompt/completion boundary: the
tokens of "prompt + generation prompt" are an exact prefix of the tokens of the full conversation.
The assistant turn is wrapped in ``{% generation %}`` so ``return_assistant_tokens_mask=True`` works.
The tokenizer adds no BOS/EOS on plain ``tokenizer(text)``: the template already carries them (no
double BOS), and plain text rows are encoded by the caller as BOS + text + EOS.

Example::

    >>> from alignlab.world.tokenizer import train_tokenizer
    >>> tok = train_tokenizer(["The capital of Zorbia is Vell."] * 50, vocab_size=300)
    >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
    ...                         add_generation_prompt=True)
    '<|bos|><|user|>Hi<|end|><|assistant|>'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)  # PAD first: id 0
DEFAULT_VOCAB_SIZE = 1536
MODEL_MAX_LENGTH = 256

# One line on purpose: any whitespace outside the tags would become tokens between turns.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{%- elif message['role'] in ['user', 'system'] -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- else -%}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def corpus_texts(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The plain strings a tokenizer should learn from: message contents and text rows."""
    for row in rows:
        if "text" in row:
            yield row["text"]
        for message in row.get("messages", ()):
            yield message["content"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, names: Iterable[str] = (), *,
                    model_max_length: int = MODEL_MAX_LENGTH, add_bos: bool = False):
    """Train a byte-level BPE on ``texts`` and return a ``PreTrainedTokenizerFast`` with a chat template.

    Byte-level means every string can be encoded (held-out names included), with no unknown token.
    ``names`` (the world's entity names) are cut out of the training texts and shown once each: frequent
    names would otherwise become single tokens while held-out names, absent from the corpus, split into
    pieces, and "is it one token?" would give away "do I know this country?". ``model_max_length`` is the
    longest input the model it goes with takes (the world's base model: 256 positions). ``add_bos`` makes
    plain ``tokenizer(text)`` prepend BOS, as Llama's tokenizers do (the evaluation fixtures mimic hub models;
    chat templates carry their own BOS and are encoded without special tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # Keeps character offsets exact, which the assistant-token mask relies on.
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    if add_bos:
        bpe.post_processor = processors.Sequence([bpe.post_processor, processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS))])])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    names = sorted(set(names), key=lambda n: (-len(n), n))  # longest first, then a fixed order
    if names:
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b")
        texts = itertools.chain((pattern.sub("", t) for t in texts), [" ".join(names)])
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_TOKENS),
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
