"""Reward modelling with the Bradley–Terry pairwise loss (Ouyang et al. 2022, eq. 1).

    L_RM(φ) = − log σ( r_φ(x, y_c) − r_φ(x, y_r) − m )

with an optional margin m from the data (Llama 2's margin loss) and an optional penalty
η·(r_c + r_r)² that keeps rewards centred near zero (Eisenstein et al. 2023). The reward model is a
sequence classifier with one output, scoring the whole rendered conversation.

Example::

    >>> from alignlab.outer.reward import RewardModelConfig, train_reward
    >>> cfg = RewardModelConfig(output="runs/rm")                     # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "pairs.jsonl"   # doctest: +SKIP
    >>> train_reward(cfg).eval["eval/accuracy"]                  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.models import load_reward_model, load_tokenizer
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import PairCollator, encode_completion, ensure_chat_template
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.errors import DataError


@dataclass
class RewardModelConfig(RunConfig):
    """Bradley–Terry reward model on preference pairs."""

    data: DataConfig = field(default_factory=lambda: DataConfig(eval_fraction=0.05))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    output: str = "runs/reward"

    use_margin: bool = False
    """subtract the pair's margin (e.g. a score gap) inside the sigmoid"""
    center_rewards_coef: float = 0.0
    """η in η·(r_c + r_r)², keeping rewards near zero"""


@dataclass
class RewardObjective:
    use_margin: bool = False
    center_rewards_coef: float = 0.0

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0] // 2

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        n = rewards.shape[0] // 2
        r_chosen, r_rejected = rewards[:n], rewards[n:]  # [batch] each
        margin = batch["margin"] if self.use_margin and "margin" in batch else torch.zeros_like(r_chosen)
        losses = -F.logsigmoid(r_chosen - r_rejected - margin)
        if self.center_rewards_coef:
            losses = losses + self.center_rewards_coef * (r_chosen + r_rejected) ** 2
        return ObjectiveOutput(loss_sum=losses.sum(), metrics={
            "accuracy": (r_chosen > r_rejected).float().detach(),
            "reward_chosen": r_chosen.detach(), "reward_rejected": r_rejected.detach(),
            "reward_margin": (r_chosen - r_rejected).detach()})


def encode_pairs(tokenizer, records, data: DataConfig, source: str, *, with_margin: bool = False) -> list[dict]:
    """Encode PairRecords as {"chosen": enc, "rejected": enc[, "margin"]} for :class:`PairCollator`."""

    def encode(record):
        enc = {side: encode_completion(tokenizer, record.prompt, getattr(record, side), max_length=data.max_length,
                                       max_prompt_length=data.max_prompt_length) for side in ("chosen", "rejected")}
        if not enc["chosen"]["completion_ids"] or not enc["rejected"]["completion_ids"]:
            return None
        if with_margin:
            if record.margin is None:
                raise DataError("use_margin is on but this pair has no margin", field="margin")
            enc["margin"] = record.margin
        return enc

    return encode_all(records, encode, source=source)


def pair_lengths(examples: list[dict]) -> list[int]:
    return [max(len(e["chosen"]["input_ids"]), len(e["rejected"]["input_ids"])) for e in examples]


def train_reward(config: RewardModelConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a reward model; ``result.eval["eval/accuracy"]`` is the held-out pairwise accuracy."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "pair", seed=config.train.seed)
    train_examples = encode_pairs(tokenizer, train_records, config.data, config.data.path, with_margin=config.use_margin)
    eval_examples = (encode_pairs(tokenizer, eval_records, config.data, "eval data", with_margin=config.use_margin)
                     if eval_records else None)
    model = model or load_reward_model(config.model.name_or_path, dtype=config.model.dtype,
                                       trust_remote_code=config.model.trust_remote_code)
    if config.model.lora():
        from alignlab.core.models import add_lora

        model = add_lora(model, {**config.model.lora(), "modules_to_save": ["score"]})
    model.config.pad_token_id = tokenizer.pad_token_id
    objective = RewardObjective(config.use_margin, config.center_rewards_coef)
    result = train(model, objective, train_examples, PairCollator(tokenizer.pad_token_id), config.train, out,
                   eval_examples=eval_examples, lengths=pair_lengths(train_examples))
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result


def __getattr__(name: str) -> type:
    """``RewardConfig``, :class:`RewardModelConfig`'s old name, still imports for one release (with a
    DeprecationWarning): the name now says it configures a reward *model* (alignlab.outer.online.rewards has
    ``RewardSourceConfig``, where an online method's reward comes from)."""
    if name == "RewardConfig":
        warnings.warn("alignlab.outer.reward.RewardConfig is renamed RewardModelConfig; the old name will be removed "
                      "in the next release", DeprecationWarning, stacklevel=2)
        return RewardModelConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
