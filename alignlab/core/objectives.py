"""Objectives more than one area trains with; method-specific objectives live beside their method.

The token NLL serves SFT (``alignlab.outer.sft``, loss on the completion) and the toy world's base-model
pretraining (``alignlab.world.base_model``, loss on every token): which tokens count is decided by the
``labels`` the encoder wrote, not by the objective.

    L_NLL(θ) = − Σ_t m_t · log π_θ(y_t | y_<t),   m_t = 1 where labels_t ≠ IGNORE_INDEX

The trainer divides the summed loss by the step's item count (:meth:`TokenNLLObjective.num_items`), so
the mean is over all label tokens of an optimiser step and long texts weigh by their length.

Example::

    >>> from alignlab.core.objectives import TokenNLLObjective
    >>> from alignlab.core.trainer import train
    >>> train(model, TokenNLLObjective(), examples, collate, config, "runs/x")   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.logprobs import forward_logits
from alignlab.core.tokenize import IGNORE_INDEX
from alignlab.core.trainer import ObjectiveOutput


class TokenNLLObjective:
    """Summed token NLL over label tokens; logs per-example NLL and token accuracy."""

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logits, targets = forward_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        mask = targets != IGNORE_INDEX  # [batch, n]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="none").view_as(targets)  # [batch, n]
        n_tokens = mask.sum(-1).clamp(min=1)
        correct = (logits.argmax(-1) == targets) & mask
        return ObjectiveOutput(
            loss_sum=nll.sum(),
            metrics={"nll": (nll.sum(-1) / n_tokens).detach(), "token_accuracy": (correct.sum(-1) / n_tokens).detach()},
        )
