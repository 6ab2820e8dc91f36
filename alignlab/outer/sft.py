"""Supervised fine-tuning: token cross-entropy on the completion only (or on all text, for pretraining).

    L_SFT(θ) = − Σ_t m_t · log π_θ(y_t | y_<t) / Σ_t m_t,   m_t = 1 on completion tokens

The mean is over all completion tokens of the optimiser step (see the trainer), so long answers weigh
by their length, as in TRL's SFT and in pretraining.

Example::

    >>> from alignlab.outer.sft import SFTConfig, train_sft
    >>> cfg = SFTConfig()                                                        # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/base", "demos.jsonl"        # doctest: +SKIP
    >>> train_sft(cfg)                                                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from alignlab.core.data import encode_all, load_records
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.objectives import TokenNLLObjective
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import (
    CompletionCollator,
    encode_completion,
    ensure_chat_template,
    pack,
)
from alignlab.core.trainer import TrainConfig, TrainResult, train


@dataclass
class SFTConfig(RunConfig):
    """Supervised fine-tuning on conversations (loss on the assistant's answer)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5))
    output: str = "runs/sft"

    completion_only: bool = True
    """loss on completion tokens only (false: on the prompt too)"""
    packing: bool = False
    """concatenate examples into full blocks of max_length tokens (no padding)"""


SFTObjective = TokenNLLObjective  # SFT's objective is the token NLL over the completion's labels


def encode_sft(tokenizer, records, config: SFTConfig, source: str) -> list[dict]:
    def encode(record):
        enc = encode_completion(tokenizer, record.prompt, record.completion, max_length=config.data.max_length,
                                max_prompt_length=config.data.max_prompt_length)
        if not config.completion_only:
            enc["labels"] = list(enc["input_ids"])
        return enc if enc["completion_ids"] else None

    examples = encode_all(records, encode, source=source)
    return pack(examples, config.data.max_length) if config.packing else examples


def train_sft(config: SFTConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; returns the result, the model is saved in ``config.output``.

    ``model`` / ``tokenizer`` may be passed in directly (e.g. a freshly built model) instead of loaded.
    """
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "conversation", seed=config.train.seed)
    train_examples = encode_sft(tokenizer, train_records, config, config.data.path)
    eval_examples = encode_sft(tokenizer, eval_records, config, "eval data") if eval_records else None
    model = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                    trust_remote_code=config.model.trust_remote_code, lora=config.model.lora())
    collate = CompletionCollator(tokenizer.pad_token_id)
    result = train(model, SFTObjective(), train_examples, collate, config.train, out, eval_examples=eval_examples)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result
