"""KTO on unpaired labels: each completion is only marked desirable or undesirable (Ethayarajh et al. 2024).

The loss is :func:`alignlab.outer.losses.kto` (Eq. 7). Its reference point z0 is an estimate of
KL(π‖π_ref), taken as TRL takes it: the mean of log π(y'|x) − log π_ref(y'|x) over *mismatched*
(prompt, completion) pairs of the batch, clamped at 0, with no gradient. The mismatched completion of
each example is fixed when the data is encoded (another example's completion, for a different prompt
whenever the data has one), so the reference log-probs of both can be precomputed and cached like DPO's.

Per micro-batch: one forward with gradient over the labelled completions, one forward without gradient
over the mismatched ones; the reference comes precomputed, from the LoRA-disabled policy, or from a
separate frozen model (``reference``, as in :mod:`alignlab.outer.preference`).

A dataset whose labels are all the same is an error (KTO needs both kinds); preference pairs are read as
two unpaired examples (chosen desirable, rejected undesirable).

Example::

    >>> from alignlab.outer.kto import KTOConfig, train_kto
    >>> cfg = KTOConfig(beta=0.1)                                                 # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "unpaired.jsonl"      # doctest: +SKIP
    >>> train_kto(cfg)                                                            # doctest: +SKIP
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.logprobs import sequence_logprobs
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.records import UnpairedRecord
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import CompletionCollator, encode_completion, ensure_chat_template
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.errors import DataError
from alignlab.outer.losses import kto
from alignlab.outer.preference import ReferenceFn, prepare_reference


@dataclass
class KTOConfig(RunConfig):
    """KTO on (prompt, completion, desirable?) examples; pairs are split into one good and one bad example.

    ``train.batch_size`` should be at least 2, so that the KL estimate sees several prompts.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-6))
    output: str = "runs/kto"

    beta: float = 0.1
    """KL-regularisation strength β"""
    desirable_weight: float = 1.0
    """λ_D, the weight of desirable examples' losses"""
    undesirable_weight: float = 1.0
    """λ_U, the weight of undesirable examples' losses"""
    reference: Literal["precompute", "adapter", "model"] = "precompute"
    """where reference log-probs come from: cached once, the LoRA-disabled policy, or a separate frozen model"""
    reference_model: str | None = None
    """reference model path (default: the starting policy)"""
    reference_cache_dir: str | None = None
    """where precomputed reference log-probs are cached (default: the user cache directory)"""

    def __post_init__(self) -> None:
        if self.reference == "adapter" and self.model.lora_r <= 0:
            raise ValueError("reference=adapter needs a LoRA adapter: set model.lora_r > 0")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ValueError("desirable_weight and undesirable_weight must be positive")


def encode_unpaired(tokenizer, records: list[UnpairedRecord], data: DataConfig, source: str, *,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Encode {"completion", "kl", "label"}: ``kl`` is this prompt with another example's completion."""
    labels = {r.label for r in records}
    if len(labels) < 2:
        kind = "desirable" if True in labels else "undesirable"
        raise DataError(f"every example is {kind}; KTO needs both desirable and undesirable examples "
                        "(the label field)", source=source, field="label")
    if len(records) < 2:
        raise DataError("KTO needs at least 2 examples for its KL estimate", source=source)
    # The mismatched partner of each record: the next one in a seeded shuffle with a different prompt
    # (pairs read as unpaired put both answers to one prompt side by side, so "the next row" would not do).
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    partner = {}
    for m, i in enumerate(order):
        candidates = [order[(m + d) % len(order)] for d in range(1, len(order))]
        partner[i] = next((j for j in candidates if records[j].prompt != records[i].prompt), candidates[0])

    def enc(prompt, completion):
        return encode_completion(tokenizer, prompt, completion, max_length=data.max_length,
                                 max_prompt_length=data.max_prompt_length)

    def encode(item: tuple[int, UnpairedRecord]) -> dict[str, Any] | None:
        i, record = item
        completion = enc(record.prompt, record.completion)
        kl = enc(record.prompt, records[partner[i]].completion)
        if not completion["completion_ids"] or not kl["completion_ids"]:
            return None
        return {"completion": completion, "kl": kl, "label": bool(record.label)}

    return encode_all(list(enumerate(records)), encode, source=source)


@dataclass
class UnpairedCollator:
    """Rows [completions..., mismatched completions...], with labels and any precomputed reference log-probs."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = CompletionCollator(self.pad_token_id)([e["completion"] for e in examples] + [e["kl"] for e in examples])
        batch["label"] = torch.tensor([e["label"] for e in examples])
        for key in ("ref_completion_logp", "ref_kl_logp"):
            if key in examples[0]:
                batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.float32)
        return batch


def _rows(batch: dict[str, torch.Tensor], part: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, labels of the completions (part 0) or mismatched ones (part 1), without
    the padding columns the other half needed."""
    n = batch["label"].shape[0]
    rows = slice(part * n, (part + 1) * n)
    width = int(batch["attention_mask"][rows].sum(1).max())
    return batch["input_ids"][rows, :width], batch["attention_mask"][rows, :width], batch["labels"][rows, :width]


def unpaired_logprobs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sequence log-probs of completions and mismatched completions in one forward (for the reference)."""
    logps, _ = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    n = batch["label"].shape[0]
    return {"completion_logp": logps[:n], "kl_logp": logps[n:]}


def _global_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over all processes' values (TRL gathers the KL estimate the same way)."""
    total = torch.stack([values.sum(), values.new_tensor(values.numel())]).float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    return total[0] / total[1]


class KTOObjective:
    def __init__(self, config: KTOConfig, reference_fn: ReferenceFn | None = None):
        self.config, self.reference_fn = config, reference_fn

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["label"].shape[0]

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        cfg = self.config
        policy_logps, _ = sequence_logprobs(model, *_rows(batch, 0))
        with torch.no_grad():
            policy_kl_logps, _ = sequence_logprobs(model, *_rows(batch, 1))
            if "ref_completion_logp" in batch:
                ref = {"completion_logp": batch["ref_completion_logp"], "kl_logp": batch["ref_kl_logp"]}
            else:
                ref = self.reference_fn(model, batch)
        # z0: KL(π‖π_ref) estimated on mismatched pairs (Sec. 4.1); kto() clamps it at 0 and detaches it.
        kl = _global_mean(policy_kl_logps.float() - ref["kl_logp"].float())
        losses, metrics = kto(policy_logps.float(), ref["completion_logp"].float(), batch["label"], kl,
                              beta=cfg.beta, desirable_weight=cfg.desirable_weight,
                              undesirable_weight=cfg.undesirable_weight)
        return ObjectiveOutput(loss_sum=losses.sum(), metrics=metrics)


def _check_weights(config: KTOConfig, examples: list[dict[str, Any]]) -> None:
    n_desirable = sum(e["label"] for e in examples)
    ratio = config.desirable_weight * n_desirable / (config.undesirable_weight * max(1, len(examples) - n_desirable))
    if not 1.0 <= ratio <= 4 / 3:
        warnings.warn(f"KTO: λ_D·n_D / (λ_U·n_U) = {ratio:.2f} lies outside the paper's recommended [1, 4/3] "
                      f"({n_desirable} desirable, {len(examples) - n_desirable} undesirable); consider adjusting "
                      "desirable_weight / undesirable_weight", stacklevel=3)


def train_kto(config: KTOConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a policy with KTO on unpaired labels; the model is saved in ``config.output``."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "unpaired", seed=config.train.seed)
    seed = config.train.seed
    train_examples = encode_unpaired(tokenizer, train_records, config.data, config.data.path, seed=seed)
    eval_examples = (encode_unpaired(tokenizer, eval_records, config.data, "eval data", seed=seed)
                     if eval_records else None)
    _check_weights(config, train_examples)
    load = dict(dtype=config.model.dtype, trust_remote_code=config.model.trust_remote_code)
    loaded_here = model is None and config.reference_model in (None, config.model.name_or_path)
    model = model or load_causal_lm(config.model.name_or_path, lora=config.model.lora(), **load)
    reference_fn = prepare_reference(config.reference, config.reference_model or config.model.name_or_path, load,
                                     [train_examples, eval_examples], pad_token_id=tokenizer.pad_token_id,
                                     cache_dir=config.reference_cache_dir, train_config=config.train,
                                     sides=("completion", "kl"), logprobs=unpaired_logprobs,
                                     policy=model if loaded_here else None)
    lengths = [max(len(e["completion"]["input_ids"]), len(e["kl"]["input_ids"])) for e in train_examples]
    result = train(model, KTOObjective(config, reference_fn), train_examples, UnpairedCollator(tokenizer.pad_token_id),
                   config.train, out, eval_examples=eval_examples, lengths=lengths)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result
