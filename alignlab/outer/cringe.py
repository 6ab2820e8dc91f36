"""CRINGE: learn from negative examples too (Adolphs et al. 2022, "The CRINGE Loss").

Positive sequences get ordinary token cross-entropy; for every token y of a negative sequence the
model's own top-(k+1) predictions, minus y, give a sampled positive token y⁺, and a two-way
cross-entropy pushes y below y⁺ (:func:`alignlab.outer.losses.cringe`). No reference model.

Data are unpaired labels (``label`` true = positive); preference pairs are read as a positive chosen and
a negative rejected. Positives and negatives share each forward.

A rejected answer usually differs from its chosen one in a few tokens ("The capital of Zorbia is Paris."
against "... is Vell."; a correct answer with an insult appended against the same answer without it).
By default (``negative_tokens="first_difference"``) the contrastive term covers a pair's rejected answer
only at its first token that departs from the chosen one: the tokens before it are the chosen answer's
too, and the tokens after it continue a choice already made (after "Pa", "ris" is the right
continuation; pushing it below the model's second guess only teaches it to garble). A pairwise loss
treats the shared opening the same way (DPO's gradients on it cancel). The paper penalises every token of
a negative (``negative_tokens="all"``). On the toy world (``alignlab bench methods``, 100 steps, 8 answers
per prompt) that gives true reward 3.37 against the SFT model's 3.63, with answers garbled (KL to SFT
16.5); penalising every token after the departure, 3.44 (KL 22.8); only the first departing token, 3.66
(KL 0.06). Unpaired negatives have no chosen answer to compare with and are penalised whole either way.

Example::

    >>> from alignlab.outer.cringe import CringeConfig, train_cringe
    >>> cfg = CringeConfig(ct_weight=1.0)                                         # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "labelled.jsonl"      # doctest: +SKIP
    >>> train_cringe(cfg)                                                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.logprobs import forward_logits
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.records import UnpairedRecord
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import (
    IGNORE_INDEX,
    CompletionCollator,
    common_prefix_length,
    encode_completion,
    ensure_chat_template,
)
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.outer.losses import cringe


@dataclass
class CringeConfig(RunConfig):
    """CRINGE: cross-entropy on positive examples, a token-level contrastive loss on negative ones.

    The data are unpaired examples {prompt, completion, label}, or preference pairs (the chosen answer a
    positive, the rejected one a negative).
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    output: str = "runs/cringe"

    ct_weight: float = 1.0
    """weight of the contrastive loss on negatives (the paper's α)"""
    num_pos_predictions: int = 1
    """k: the positive token is sampled from the model's top-k predictions other than the negative token"""
    negative_tokens: Literal["all", "first_difference"] = "first_difference"
    """which tokens of a pair's rejected answer the contrastive term covers: all (the paper), or only the
    first one that departs from the chosen answer (unpaired negatives are always covered whole)"""

    def __post_init__(self) -> None:
        if self.num_pos_predictions < 1:
            raise ValueError(f"num_pos_predictions must be >= 1, got {self.num_pos_predictions}")


def encode_labelled(tokenizer, records: list[UnpairedRecord], data: DataConfig, source: str,
                    negative_tokens: str = "first_difference") -> list[dict[str, Any]]:
    """Encode each record as a completion with ``positive`` = its label; with ``first_difference``, a
    negative from a pair (``meta["chosen"]``) is labelled only at its first token that the chosen answer
    does not share."""

    def encode(record: UnpairedRecord) -> dict[str, Any] | None:
        def completion(text: str) -> dict[str, list[int]]:
            return encode_completion(tokenizer, record.prompt, text, max_length=data.max_length,
                                     max_prompt_length=data.max_prompt_length)

        enc = completion(record.completion)
        if not record.label and negative_tokens == "first_difference" and "chosen" in record.meta:
            # EOS ends both encodings, so a rejected answer that stops early is labelled at its EOS
            shared = common_prefix_length(enc["completion_ids"], completion(record.meta["chosen"])["completion_ids"])
            first = len(enc["prompt_ids"]) + shared
            enc["labels"] = [label if i == first else IGNORE_INDEX for i, label in enumerate(enc["labels"])]
        if all(label == IGNORE_INDEX for label in enc["labels"]):
            return None
        return {**enc, "positive": bool(record.label)}

    return encode_all(records, encode, source=source)


@dataclass
class LabelledCollator:
    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = CompletionCollator(self.pad_token_id)(examples)
        batch["positive"] = torch.tensor([e["positive"] for e in examples])
        return batch


class CringeObjective:
    """Per-sequence mean token loss (CE or contrastive), summed over the batch; items are sequences."""

    def __init__(self, config: CringeConfig):
        self.config = config
        self.generator: torch.Generator | None = None  # seeded on first use, on the logits' device

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["positive"].numel()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logits, targets = forward_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        if self.generator is None or self.generator.device != logits.device:
            self.generator = torch.Generator(logits.device).manual_seed(self.config.train.seed)
        losses, metrics = cringe(logits.float(), targets, batch["positive"], ct_weight=self.config.ct_weight,
                                 num_pos_predictions=self.config.num_pos_predictions, generator=self.generator)
        # Both terms are logged over every sequence, so every process logs the same keys each step.
        return ObjectiveOutput(loss_sum=losses.sum(), metrics={"ce_loss": metrics["ce_loss"],
                                                               "ct_loss": metrics["ct_loss"]})


def train_cringe(config: CringeConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a policy with CRINGE on labelled examples; the model is saved in ``config.output``."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "unpaired", seed=config.train.seed)
    train_examples = encode_labelled(tokenizer, train_records, config.data, config.data.path, config.negative_tokens)
    eval_examples = (encode_labelled(tokenizer, eval_records, config.data, "eval data", config.negative_tokens)
                     if eval_records else None)
    model = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                    trust_remote_code=config.model.trust_remote_code, lora=config.model.lora())
    result = train(model, CringeObjective(config), train_examples, LabelledCollator(tokenizer.pad_token_id),
                   config.train, out, eval_examples=eval_examples)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result
