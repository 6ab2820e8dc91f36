"""Chain of Hindsight: learn from rated pairs as feedback-conditioned text (Liu et al. 2023, "Chain of
Hindsight Aligns Language Models with Feedback", Sec. 2).

Each preference pair becomes one conversation in which feedback phrases ask for the answers::

    user: <question> A good answer is:    assistant: <chosen>
    user: A bad answer is:                assistant: <rejected>        (or the bad one first)

rendered with the model's own chat template and trained with the ordinary LM loss on the two answers
(each with its end of turn, as an SFT answer ends) but not on the question or the feedback phrases, so
the model learns what each phrase predicts rather than to emit phrases. At inference the model is
conditioned on the positive phrase (:func:`hindsight_generate`): the question with "A good answer is:"
appended, and the answer is an ordinary assistant turn. Pretraining text can be mixed in as a
regulariser (``pretrain_data``, ``pretrain_fraction``), as in the paper.

Why a conversation, rather than both answers inside one assistant turn behind the phrases: every answer
then starts right after the template's assistant header, where the SFT model already starts answers, and
is token for token the text an SFT answer is, so its likelihood compares with the SFT model's; the text
is a conversation any chat template renders (plus an EOS after each answer where the template ends turns
without one); and no separator is needed between a phrase and its answer. (Inside one turn, on the toy
world: a line break after each phrase — a token its corpus never has, so its embedding is untrained —
made the model start answers mid-word; a space made every answer
start with a token SFT answers never start with: KL to the SFT model 20 against 1.6 as turns, for the
same true reward, at 1,000 steps and lr 3e-4.)

The model must learn what the phrases mean. A pretrained LLM knows "good" from "bad"; the toy world's
model has never seen feedback, and after 100 steps it gives either answer the same likelihood under
either phrase (within 0.2 nats), so Chain of Hindsight then only learns the rejected answers alongside
the chosen ones; after 1,000 steps each phrase moves each answer's log-likelihood by about 3 nats. The
bench trains it that long (``alignlab.experiments.bench.PASSES``); the gain over SFT it then shows on one world
does not replicate on another (README), and the same texts with the rejected answers out of the loss
gain more: on the toy world, learning the rejected answers costs more than the contrast teaches.

Example::

    >>> from alignlab.outer.hindsight import HindsightConfig, train_hindsight
    >>> cfg = HindsightConfig()                                                   # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "pairs.jsonl"         # doctest: +SKIP
    >>> train_hindsight(cfg)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from alignlab.core.data import encode_all, load_records
from alignlab.core.generation import GenerationConfig, generate
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.readers import read_records
from alignlab.core.records import Message, PairRecord
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import (
    IGNORE_INDEX,
    CompletionCollator,
    completion_ids_ending_with_eos,
    encode_completion,
    ensure_chat_template,
    render_prompt,
    split_rendering,
)
from alignlab.core.trainer import TrainConfig, TrainResult, train
from alignlab.errors import DataError
from alignlab.outer.sft import SFTObjective


@dataclass
class HindsightConfig(RunConfig):
    """Chain of Hindsight: SFT on feedback-conditioned conversations built from preference pairs.

    A pair whose conversation is longer than ``data.max_length`` is skipped with a warning, since cutting it
    would cut an answer.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    output: str = "runs/hindsight"

    good_phrase: str = "A good answer is:"
    """feedback phrase that asks for the preferred answer (appended to the question at inference too)"""
    bad_phrase: str = "A bad answer is:"
    """feedback phrase that asks for the dispreferred answer"""
    separator: str = " "
    """text between the question and the feedback phrase appended to it (a space: the toy world's corpus has
    no line breaks, and a token a model never saw has an untrained embedding)"""
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


def with_feedback(prompt: list[Message], phrase: str, separator: str = HindsightConfig.separator) -> list[Message]:
    """``prompt`` with the feedback ``phrase`` appended to its last user turn (or as a user turn of its own).

    Example::

        >>> with_feedback([{"role": "user", "content": "Capital of Zorbia?"}], "A good answer is:")
        [{'role': 'user', 'content': 'Capital of Zorbia? A good answer is:'}]
    """
    if prompt and prompt[-1]["role"] == "user":
        return [*prompt[:-1], {"role": "user", "content": prompt[-1]["content"] + separator + phrase}]
    return [*prompt, {"role": "user", "content": phrase}]


def encode_hindsight(tokenizer, record: PairRecord, config: HindsightConfig, good_first: bool) -> dict[str, list[int]]:
    """Token ids and labels of one pair as a hindsight conversation; labels cover the two answers only.

    Only the prompt is truncated (to its end, as :func:`~alignlab.core.tokenize.encode_completion` does); the
    caller decides what to do with a conversation longer than ``max_length`` (:func:`build_examples` skips it).
    """
    answers = [(config.good_phrase, record.chosen), (config.bad_phrase, record.rejected)]
    if not good_first:
        answers.reverse()
    (first_phrase, first), (second_phrase, second) = answers
    first_turns = with_feedback(record.prompt, first_phrase, config.separator)
    prompt_text, first_text = split_rendering(tokenizer, first_turns, first)
    second_prompt, second_text = split_rendering(
        tokenizer, [*first_turns, {"role": "assistant", "content": first}, {"role": "user", "content": second_phrase}],
        second)
    if not second_prompt.startswith(prompt_text + first_text):
        raise DataError("the chat template renders the first turns differently when more follow, so the hindsight "
                        "conversation cannot be split into turns", field="chat_template")
    max_prompt = config.data.max_prompt_length if config.data.max_prompt_length is not None else config.data.max_length // 2
    prompt_ids = _ids(tokenizer, prompt_text)[-max_prompt:]
    # (ids, in the loss?): the first answer, the second feedback turn, the second answer
    pieces = [(completion_ids_ending_with_eos(tokenizer, first_text), True),
              (_ids(tokenizer, second_prompt[len(prompt_text + first_text):]), False),
              (completion_ids_ending_with_eos(tokenizer, second_text), True)]
    input_ids, labels = list(prompt_ids), [IGNORE_INDEX] * len(prompt_ids)
    for ids, in_loss in pieces:
        input_ids += ids
        labels += ids if in_loss else [IGNORE_INDEX] * len(ids)
    return {"prompt_ids": prompt_ids, "completion_ids": input_ids[len(prompt_ids):], "input_ids": input_ids,
            "labels": labels}


def build_examples(tokenizer, records: list[PairRecord], config: HindsightConfig, source: str,
                   seed: int) -> list[dict[str, Any]]:
    """Each pair as a hindsight conversation, good or bad answer first at random (``good_first_fraction``).

    A conversation longer than ``data.max_length`` is skipped, with a warning: cut, it would lose the second
    answer or part of it, and a bad-first pair would then teach only its rejected answer.
    """
    rng = random.Random(seed)
    order = [rng.random() < config.good_first_fraction for _ in records]
    too_long = []

    def encode(item: tuple[bool, PairRecord]) -> dict[str, Any] | None:
        enc = encode_hindsight(tokenizer, item[1], config, item[0])
        if len(enc["input_ids"]) > config.data.max_length:
            too_long.append(len(enc["input_ids"]))
            return None
        return enc

    examples = encode_all(list(zip(order, records)), encode, source=source)
    if too_long:
        warnings.warn(f"{source}: {len(too_long)} of {len(records)} pairs are longer than data.max_length="
                      f"{config.data.max_length} as hindsight conversations (up to {max(too_long)} tokens) and were "
                      "skipped", stacklevel=2)
    return examples


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


def hindsight_prompt_ids(tokenizer, prompt: list[Message], good_phrase: str = HindsightConfig.good_phrase,
                         separator: str = HindsightConfig.separator) -> list[int]:
    """The prompt conditioned on the positive feedback phrase, tokenised exactly as a good-first training
    conversation starts (whole: training keeps only the end of a prompt longer than ``max_prompt_length``)."""
    return _ids(tokenizer, render_prompt(tokenizer, with_feedback(prompt, good_phrase, separator)))


def hindsight_answer(text: str, bad_phrase: str = HindsightConfig.bad_phrase,
                     good_phrase: str = HindsightConfig.good_phrase) -> str:
    """The answer in text generated after the positive phrase (which stops at its end of turn), cut before a
    feedback phrase should the model write one."""
    return text.split(bad_phrase)[0].split(good_phrase)[0].strip()


def hindsight_generate(model: nn.Module, tokenizer, prompts: list[list[Message]], *,
                       good_phrase: str = HindsightConfig.good_phrase, bad_phrase: str = HindsightConfig.bad_phrase,
                       separator: str = HindsightConfig.separator, max_new_tokens: int = 64,
                       batch_size: int = 16) -> list[str]:
    """Greedy answers conditioned on ``good_phrase``; text from a ``bad_phrase`` on is cut off.

    Example::

        >>> hindsight_generate(model, tok, [[{"role": "user", "content": "Capital of Zorbia?"}]])  # doctest: +SKIP
        ['Vell.']
    """
    rows = [hindsight_prompt_ids(tokenizer, p, good_phrase, separator) for p in prompts]
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
    return [hindsight_answer(text, bad_phrase, good_phrase) for text in generate(model, tokenizer, rows, config).texts]


def train_hindsight(config: HindsightConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train on hindsight conversations built from ``config.data`` pairs; the model is saved in ``config.output``.

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
               results={"hindsight": {"good_phrase": config.good_phrase, "bad_phrase": config.bad_phrase,
                                       "separator": config.separator}})
    return result
