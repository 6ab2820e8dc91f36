"""Learning from ranked lists: RRHF, PRO and Stable Alignment (k scored responses per prompt).

Each training example is one prompt with k ≥ 2 responses and a score per response (a
:class:`~alignlab.core.records.RankedRecord`; higher is better). All k candidates of every prompt in a
micro-batch go through the model in ONE forward ([prompt 1: k rows, prompt 2: k rows, ...]); the loss
then sees per-candidate log-probs as ``[batch, k]`` tensors:

- RRHF (Yuan et al. 2023): hinge ranking of length-normalised log-probs + NLL of the best response;
- PRO (Song et al. 2024): Plackett–Luce over the ranking with reward-gap temperatures + SFT on the best;
- Stable Alignment (Liu et al. 2023): NLL of the best-rated response + a rating-gap margin hinge;
- A-LoL (Baheti et al. 2024): every above-average response weighted by its advantage over the list's mean
  reward and a clipped importance weight against the starting model (weighted offline RL from existing data).

The losses themselves are the pure functions ``rrhf``, ``pro``, ``stable_alignment`` and ``alol`` of
:mod:`alignlab.outer.losses`; only A-LoL needs a reference, whose log-probs of every candidate are computed once,
before training, by the starting model. Lists of different lengths may share a batch
(the loss is evaluated per list length). A list whose scores are all tied carries no ranking signal and
only contributes its SFT term.

Example::

    >>> from alignlab.outer.ranked import RRHFConfig, train_ranked
    >>> cfg = RRHFConfig()                                                        # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "ranked.jsonl"        # doctest: +SKIP
    >>> train_ranked(cfg)                                                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.logprobs import sequence_logprobs
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.records import RankedRecord
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import CompletionCollator, encode_completion, ensure_chat_template
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.errors import DataError
from alignlab.outer.losses import LossOutput, alol, pro, rrhf, stable_alignment


@dataclass
class RankedConfig(RunConfig):
    """Shared settings of the ranked-list methods (use RRHFConfig, PROConfig or StableAlignmentConfig).

    The data are ranked lists, {prompt, responses, scores} rows (or raw UltraFeedback completions);
    ``train.batch_size`` counts prompts, each bringing all its k responses.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, batch_size=4))
    output: str = "runs/ranked"
    uses_reference: ClassVar[bool] = False  # the starting model's log-prob of every candidate goes to the loss

    def loss(self, logps: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor,
             ref_logps: torch.Tensor | None = None) -> LossOutput:
        """Per-list losses from summed log-probs, token counts, rewards (and reference log-probs), each [batch, k]."""
        raise NotImplementedError


@dataclass
class RRHFConfig(RankedConfig):
    """RRHF: rank responses by length-normalised log-prob to match their scores, plus NLL on the best one."""

    output: str = "runs/rrhf"
    rrhf_weight: float = 100.0
    """weight of the ranking loss against the NLL of the best response (the authors' default)"""
    length_penalty: float = 1.0
    """α in p_i = Σ_t log π(y_i,t) / |y_i|^α (1 = mean token log-prob, as the authors train)"""

    def loss(self, logps: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor,
             ref_logps: torch.Tensor | None = None) -> LossOutput:
        scores = logps / lengths ** self.length_penalty  # Eq. 1
        best = rewards.argmax(dim=1, keepdim=True)
        best_nll = -(logps / lengths).gather(1, best).squeeze(1)  # Eq. 3, mean over the best response's tokens
        return rrhf(scores, rewards, best_nll, rrhf_weight=self.rrhf_weight)


@dataclass
class PROConfig(RankedConfig):
    """PRO: Plackett–Luce ranking over all k responses with reward-gap temperatures, plus SFT on the best."""

    output: str = "runs/pro"
    sft_weight: float = 0.05
    """β in Σ_k L_k + β·(n−1)²·NLL(best) (the authors' default)"""

    def loss(self, logps: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor,
             ref_logps: torch.Tensor | None = None) -> LossOutput:
        best = rewards.argmax(dim=1, keepdim=True)
        best_nll = -logps.gather(1, best).squeeze(1)  # token-summed, as the authors compute it
        return pro(logps / lengths, rewards, best_nll, sft_weight=self.sft_weight)


@dataclass
class StableAlignmentConfig(RankedConfig):
    """Stable Alignment: NLL on the best-rated response plus a hinge that keeps worse responses less likely."""

    output: str = "runs/stable-alignment"
    ratio: float = 0.5
    """weight of the contrastive hinge"""
    margin: float = 1.0
    """margin per unit of rating gap (divided by rating_scale)"""
    rating_scale: float = 7.0
    """the ratings' range (7 for the authors' 1-7 scale)"""
    max_flow: bool = False
    """penalise the worst violation instead of the mean over the worse responses"""

    def loss(self, logps: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor,
             ref_logps: torch.Tensor | None = None) -> LossOutput:
        return stable_alignment(-logps / lengths, rewards, ratio=self.ratio, margin=self.margin,
                                rating_scale=self.rating_scale, max_flow=self.max_flow)


@dataclass
class ALoLConfig(RankedConfig):
    """A-LoL: advantage-weighted NLL of the above-average responses, times a clipped importance weight."""

    output: str = "runs/alol"
    uses_reference: ClassVar[bool] = True
    clip_epsilon: float = 0.2
    """ε of the importance weight's clip to [1 − ε, 1 + ε] (PPO's default)"""

    def loss(self, logps: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor,
             ref_logps: torch.Tensor | None = None) -> LossOutput:
        return alol(logps, ref_logps, rewards, clip_epsilon=self.clip_epsilon)


def encode_ranked(tokenizer, records: list[RankedRecord], data: DataConfig, source: str) -> list[dict[str, Any]]:
    """Encode ranked lists as {"candidates": [enc, ...], "scores": [...]}; a response truncated to nothing is
    dropped, and a list left with fewer than 2 responses is skipped."""

    def encode(record: RankedRecord) -> dict[str, Any] | None:
        seen: dict[str, float] = {}
        for text, score in zip(record.responses, record.scores):
            if seen.setdefault(text, score) != score:
                raise DataError(f"the same response appears with scores {seen[text]} and {score}",
                                field="responses")
        candidates, scores = [], []
        for text, score in zip(record.responses, record.scores):
            enc = encode_completion(tokenizer, record.prompt, text, max_length=data.max_length,
                                    max_prompt_length=data.max_prompt_length)
            if enc["completion_ids"]:
                candidates.append(enc)
                scores.append(float(score))
        return {"candidates": candidates, "scores": scores} if len(candidates) >= 2 else None

    return encode_all(records, encode, source=source)


@dataclass
class RankedCollator:
    """All candidates of all lists as rows of one batch (list by list), with each list's size and scores."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = CompletionCollator(self.pad_token_id)([c for e in examples for c in e["candidates"]])
        batch["list_sizes"] = torch.tensor([len(e["candidates"]) for e in examples])
        batch["scores"] = torch.tensor([s for e in examples for s in e["scores"]], dtype=torch.float32)
        if "ref_logps" in examples[0]:
            batch["ref_logps"] = torch.tensor([s for e in examples for s in e["ref_logps"]], dtype=torch.float32)
        return batch


class RankedObjective:
    """One forward over every candidate, then the method's loss per group of lists with the same size."""

    def __init__(self, config: RankedConfig):
        self.config = config

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["list_sizes"].numel()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logps, lengths = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        sizes = batch["list_sizes"].tolist()
        starts = torch.tensor([0, *sizes]).cumsum(0)[:-1].tolist()
        loss_sum = logps.new_zeros(())
        metrics: dict[str, list[torch.Tensor]] = {}
        for k in sorted(set(sizes)):
            rows = torch.tensor([s + j for s, n in zip(starts, sizes) if n == k for j in range(k)])
            ref = batch["ref_logps"][rows].view(-1, k) if "ref_logps" in batch else None
            losses, values = self.config.loss(logps[rows].float().view(-1, k), lengths[rows].float().view(-1, k),
                                              batch["scores"][rows].view(-1, k), ref)
            loss_sum = loss_sum + losses.sum()
            for name, value in values.items():
                metrics.setdefault(name, []).append(value.detach().float())
        return ObjectiveOutput(loss_sum=loss_sum, metrics={k: torch.cat(v) for k, v in metrics.items()})


@torch.no_grad()
def add_reference_logps(model: nn.Module, examples: list[dict[str, Any]], pad_token_id: int,
                        batch_size: int = 16) -> None:
    """Write each candidate's summed log-prob under ``model`` (the not-yet-trained policy) into its example."""
    collate = RankedCollator(pad_token_id)
    was_training = model.training
    model.eval()
    for lo in range(0, len(examples), batch_size):
        chunk = examples[lo : lo + batch_size]
        batch = collate(chunk)
        logps, _ = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        start = 0
        for example in chunk:
            example["ref_logps"] = logps[start : start + len(example["candidates"])].float().tolist()
            start += len(example["candidates"])
    model.train(was_training)


def train_ranked(config: RankedConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a policy on ranked lists with the method ``config`` names; the model is saved in ``config.output``."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "ranked", seed=config.train.seed)
    train_examples = encode_ranked(tokenizer, train_records, config.data, config.data.path)
    eval_examples = encode_ranked(tokenizer, eval_records, config.data, "eval data") if eval_records else None
    model = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                    trust_remote_code=config.model.trust_remote_code, lora=config.model.lora())
    if config.uses_reference:  # the starting model, before any update, is the reference
        for examples in filter(None, [train_examples, eval_examples]):
            add_reference_logps(model, examples, tokenizer.pad_token_id)
    lengths = [max(len(c["input_ids"]) for c in e["candidates"]) for e in train_examples]
    result = train(model, RankedObjective(config), train_examples, RankedCollator(tokenizer.pad_token_id),
                   config.train, out, eval_examples=eval_examples, lengths=lengths)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result
