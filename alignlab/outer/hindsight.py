"""Chain of Hindsight: learn from rated pairs as feedback-conditioned text (Liu et al. 2023, "Chain of
Hindsight Aligns Language Models with Feedback", Sec. 2).

Each preference pair becomes one assistant turn that contains both answers behind feedback phrases::

    A good answer is:\\n<chosen><eos>A bad answer is:\\n<rejected><eos>        (or the bad one first)

trained with the ordinary LM loss on the *answers* and on where each ends but not on the feedback
phrases, so the model learns what each phrase predicts rather than to emit phrases. Each answer ends
with the chat template's end of turn (EOS), the way the SFT model already ends an answer, so at inference
generation stops where an SFT answer would. (Ending the first answer with a line break instead, as a
plain-text rendering would, leaves the model two different stops to learn — a line break when the good
answer comes first, EOS when it comes second — and a tiny model then runs on past the answer: true reward
3.09 against SFT's 3.63 in ``alignlab bench methods``, 8 answers per prompt.) Pretraining text can be mixed in as a regulariser
(``pretrain_data``, ``pretrain_fraction``). At inference the model is conditioned on the positive phrase
(:func:`hindsight_generate`): the prompt, then "A good answer is:", and the answer is read up to its end
(EOS; a line break or a feedback phrase, should one be generated, also ends it).

Each piece (phrase, answer, phrase, answer) is tokenised on its own and the ids are concatenated, so
the boundary between the positive phrase and the answer is the one :func:`hindsight_generate` feeds.

Example::

    >>> from alignlab.outer.hindsight import HindsightConfig, train_hindsight
    >>> cfg = HindsightConfig()                                                   # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "pairs.jsonl"         # doctest: +SKIP
    >>> train_hindsight(cfg)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer
from alignlab.core.readers import read_records
from alignlab.core.records import Message, PairRecord
from alignlab.core.run import finish_run, start_run
from alignlab.core.tokenize import (
    IGNORE_INDEX,
    CompletionCollator,
    encode_completion,
    ensure_chat_template,
    render_prompt,
    split_rendering,
)
from alignlab.core.trainer import TrainConfig, TrainResult, train
from alignlab.errors import DataError
from alignlab.outer.sft import SFTObjective


@dataclass
class HindsightConfig:
    """Chain of Hindsight: SFT on "a good answer is … a bad answer is …" texts built from preference pairs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the model to start from (usually an SFT model)"""
    data: DataConfig = field(default_factory=DataConfig)
    """preference pairs (the rated pairs to turn into hindsight text)"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    """the training loop"""
    output: str = "runs/hindsight"
    """run directory"""
    good_phrase: str = "A good answer is:"
    """feedback phrase before the preferred answer (also the inference-time prefix)"""
    bad_phrase: str = "A bad answer is:"
    """feedback phrase before the dispreferred answer"""
    good_first_fraction: float = 0.5
    """share of examples that put the good answer first (the rest put the bad one first)"""
    pretrain_data: str | None = None
    """text or conversations mixed in as a regulariser (LM loss on their completions)"""
    pretrain_fraction: float = 0.2
    """pretraining examples added per pair (with pretrain_data)"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.good_first_fraction <= 1.0:
            raise ValueError(f"good_first_fraction must be in [0, 1], got {self.good_first_fraction}")
        if self.pretrain_fraction < 0:
            raise ValueError(f"pretrain_fraction must be >= 0, got {self.pretrain_fraction}")
        if not self.good_phrase.strip() or not self.bad_phrase.strip() or self.good_phrase == self.bad_phrase:
            raise ValueError("good_phrase and bad_phrase must be two different, non-empty phrases")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_hindsight(tokenizer, record: PairRecord, config: HindsightConfig, good_first: bool) -> dict[str, list[int]]:
    """Token ids and labels of one pair as hindsight text; labels cover the two answers and the end of turn."""
    answers = [(config.good_phrase, record.chosen), (config.bad_phrase, record.rejected)]
    if not good_first:
        answers.reverse()
    (first_phrase, first), (second_phrase, second) = answers
    # (text, in the loss?); None is the template's end of turn, learned after each answer
    pieces = [(first_phrase + "\n", False), (first, True), (None, True), (second_phrase + "\n", False),
              (second, True), (None, True)]
    text = "".join(t for t, _ in pieces[:-1] if t is not None)
    _, completion_text = split_rendering(tokenizer, record.prompt, text)
    if not completion_text.startswith(text):
        raise DataError("the chat template changes the assistant text, so the feedback phrases cannot be masked",
                        field="chat_template")
    suffix = _ids(tokenizer, completion_text[len(text):])  # the template's end of turn
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in suffix:
        suffix.append(eos)
    prompt_ids = _ids(tokenizer, render_prompt(tokenizer, record.prompt))
    max_prompt = config.data.max_prompt_length if config.data.max_prompt_length is not None else config.data.max_length // 2
    prompt_ids = prompt_ids[-max_prompt:]
    input_ids, labels = list(prompt_ids), [IGNORE_INDEX] * len(prompt_ids)
    for piece, in_loss in pieces:
        ids = _ids(tokenizer, piece) if piece is not None else suffix
        input_ids += ids
        labels += ids if in_loss else [IGNORE_INDEX] * len(ids)
    input_ids, labels = input_ids[:config.data.max_length], labels[:config.data.max_length]
    return {"prompt_ids": prompt_ids, "completion_ids": input_ids[len(prompt_ids):], "input_ids": input_ids,
            "labels": labels}


def build_examples(tokenizer, records: list[PairRecord], config: HindsightConfig, source: str,
                   seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    order = [rng.random() < config.good_first_fraction for _ in records]

    def encode(item: tuple[bool, PairRecord]) -> dict[str, Any] | None:
        enc = encode_hindsight(tokenizer, item[1], config, item[0])
        return enc if any(label != IGNORE_INDEX for label in enc["labels"]) else None

    return encode_all(list(zip(order, records)), encode, source=source)


def pretraining_examples(tokenizer, config: HindsightConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` examples drawn (with a seeded shuffle, cycling if needed) from ``pretrain_data``."""
    records = read_records(config.pretrain_data, "conversation")
    random.Random(seed).shuffle(records)

    def encode(record) -> dict[str, Any] | None:
        enc = encode_completion(tokenizer, record.prompt, record.completion, max_length=config.data.max_length,
                                max_prompt_length=config.data.max_prompt_length)
        return enc if enc["completion_ids"] else None

    examples = encode_all(records, encode, source=config.pretrain_data)
    return [examples[i % len(examples)] for i in range(n)]


def hindsight_prompt_ids(tokenizer, prompt: list[Message], good_phrase: str = HindsightConfig.good_phrase) -> list[int]:
    """The prompt conditioned on the positive feedback phrase, tokenised exactly as in training."""
    return _ids(tokenizer, render_prompt(tokenizer, prompt)) + _ids(tokenizer, good_phrase + "\n")


def hindsight_answer(text: str, bad_phrase: str = HindsightConfig.bad_phrase) -> str:
    """The answer in text generated after the positive phrase (which stops at EOS): never past a line
    break or a feedback phrase."""
    return text.split("\n")[0].split(bad_phrase)[0].strip()


@torch.no_grad()
def hindsight_generate(model: nn.Module, tokenizer, prompts: list[list[Message]], *,
                       good_phrase: str = HindsightConfig.good_phrase, bad_phrase: str = HindsightConfig.bad_phrase,
                       max_new_tokens: int = 64, batch_size: int = 16) -> list[str]:
    """Greedy answers conditioned on ``good_phrase``; text from a following ``bad_phrase`` on is cut off.

    Example::

        >>> hindsight_generate(model, tok, [[{"role": "user", "content": "Capital of Zorbia?"}]])  # doctest: +SKIP
        ['Vell.']
    """
    model.eval()
    device = next(model.parameters()).device
    answers = []
    for lo in range(0, len(prompts), batch_size):
        rows = [hindsight_prompt_ids(tokenizer, p, good_phrase) for p in prompts[lo:lo + batch_size]]
        width = max(map(len, rows))
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for ids in out[:, width:]:
            text = tokenizer.decode(ids, skip_special_tokens=True)
            answers.append(hindsight_answer(text, bad_phrase))
    return answers


def train_hindsight(config: HindsightConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train on hindsight text built from ``config.data`` pairs; the model is saved in ``config.output``.

    ``results.json`` records the feedback phrases, which :func:`hindsight_generate` needs at inference.
    """
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    seed = config.train.seed
    train_records, eval_records = load_records(config.data, "pair", seed=seed)
    train_examples = build_examples(tokenizer, train_records, config, config.data.path, seed)
    if config.pretrain_data:
        train_examples += pretraining_examples(tokenizer, config, round(config.pretrain_fraction * len(train_records)),
                                               seed)
    eval_examples = build_examples(tokenizer, eval_records, config, "eval data", seed + 1) if eval_records else None
    model = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                    trust_remote_code=config.model.trust_remote_code, lora=config.model.lora())
    result = train(model, SFTObjective(), train_examples, CompletionCollator(tokenizer.pad_token_id), config.train,
                   out, eval_examples=eval_examples)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora,
               results={"hindsight": {"good_phrase": config.good_phrase, "bad_phrase": config.bad_phrase}})
    return result
