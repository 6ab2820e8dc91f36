"""Critic-free policy gradients with group baselines: GRPO, RLOO and a REINFORCE baseline.

Each prompt gets G completions (``group_size``); a completion's score r_i is compared with the others':

    GRPO       A_i = (r_i − mean_g r) / (std_g r + ε)          (Shao et al. 2024, DeepSeekMath eq. 3)
    RLOO       A_i = r_i − 1/(G−1) Σ_{j≠i} r_j                  (Ahmadian et al. 2024, eq. 7; Kool et al. 2019)
    REINFORCE  A_i = r_i − mean over the whole batch             (Williams 1992 with a batch-mean baseline)

(:func:`alignlab.core.rl.group_advantages`) and A_i is applied to every token of completion i in PPO's clipped surrogate (with one epoch and one
minibatch the ratio is 1 and this is exactly REINFORCE). The KL to the reference is either a loss term
β·k3 per token (GRPO, ``kl_in_reward=false``) or subtracted from the score as r − β·Σ_t k1_t before the
baseline (RLOO, REINFORCE; ``kl_in_reward=true``). Metrics: ``kl``, ``clipfrac``, ``approx_kl``,
``advantage/std``.

Example::

    >>> scores = torch.tensor([1.0, 0.0, 3.0, 3.0])
    >>> group_advantages(scores, 2, "rloo")
    tensor([ 1., -1.,  0.,  0.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alignlab.core.rl import (
    Baseline,
    KLEstimator,
    clipped_policy_loss,
    group_advantages,
    kl_estimate,
    masked_mean,
)
from alignlab.core.trainer import TrainResult
from alignlab.outer.online.rewards import RewardSource
from alignlab.outer.online.rollout import OnlineConfig, OnlineTrainer, PolicyOutput, Rollout

__all__ = ["GRPOConfig", "GroupPolicyGradient", "RLOOConfig", "ReinforceConfig", "group_advantages", "train_grpo",
           "train_reinforce", "train_rloo"]


@dataclass
class GRPOConfig(OnlineConfig):
    """GRPO: group-normalised advantages, clipped surrogate, per-token k3 KL penalty in the loss."""

    # A field re-declared without a docstring only changes its default; its help stays the parent's.
    output: str = "runs/grpo"
    group_size: int = 4
    beta: float = 0.04
    kl_estimator: KLEstimator = "k3"
    baseline: Baseline = "grpo"
    """grpo: group mean/std; rloo: leave-one-out mean; reinforce: batch mean"""
    kl_in_reward: bool = False
    """subtract β·Σ_t KL from the score (RLOO style) instead of adding β·KL to the loss (GRPO style)"""
    scale_rewards: bool = True
    """divide GRPO's centred scores by the group std (false: Dr. GRPO)"""
    clip_coef: float = 0.2
    """policy ratio clip ε"""


@dataclass
class RLOOConfig(GRPOConfig):
    """RLOO: REINFORCE with a leave-one-out baseline over each prompt's group; KL folded into the reward."""

    output: str = "runs/rloo"
    baseline: Baseline = "rloo"
    kl_in_reward: bool = True
    kl_estimator: KLEstimator = "k1"
    beta: float = 0.05


@dataclass
class ReinforceConfig(RLOOConfig):
    """REINFORCE with a batch-mean baseline (the simplest critic-free policy gradient)."""

    output: str = "runs/reinforce"
    baseline: Baseline = "reinforce"


class GroupPolicyGradient:
    """GRPO / RLOO / REINFORCE for :class:`OnlineTrainer` (no critic)."""

    sources: tuple[str, ...] = ("reward",)
    value_heads: tuple[str, ...] = ()

    def __init__(self, config: GRPOConfig):
        self.config = config
        one_update = config.ppo_epochs == 1 and config.minibatch_size == config.prompts_per_step * config.group_size
        # With one update per rollout the behaviour policy IS the current one: skip a forward pass, unless the
        # KL-in-reward needs the log-probs before the update.
        self.needs_old_logps = not one_update or (config.kl_in_reward and config.beta > 0)

    def advantages(self, rollout: Rollout) -> dict[str, float]:
        cfg, mask = self.config, rollout.mask
        scores = rollout.scores["reward"]
        metrics: dict[str, float] = {}
        if cfg.kl_in_reward and rollout.ref_logps is not None:
            seq_kl = (kl_estimate(rollout.old_logps, rollout.ref_logps, cfg.kl_estimator) * mask).sum(-1)
            scores = scores - cfg.beta * seq_kl
            metrics["kl"] = float(seq_kl.mean())
        adv = group_advantages(scores, cfg.group_size, cfg.baseline, scale=cfg.scale_rewards)
        rollout.advantages = adv[:, None] * mask  # the sequence's advantage on each of its tokens
        metrics["advantage/std"] = float(adv.std(unbiased=False))
        return metrics

    def loss(self, out: PolicyOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, mask = self.config, batch["mask"]
        old = batch["old_logps"] if batch["old_logps"] is not None else out.logps.detach()
        loss, stats = clipped_policy_loss(out.logps, old, batch["advantages"], mask, cfg.clip_coef)
        if not cfg.kl_in_reward and batch["ref_logps"] is not None:
            kl = masked_mean(kl_estimate(out.logps, batch["ref_logps"], cfg.kl_estimator), mask)
            loss = loss + cfg.beta * kl
            stats["kl"] = (kl * mask.sum(-1).mean()).detach()  # per completion, like the other methods
        return loss, {"policy_loss": loss.detach(), **stats}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def train_grpo(config: GRPOConfig, *, model: nn.Module | None = None, tokenizer=None,
               reward: RewardSource | Callable | None = None) -> TrainResult:
    """Train with GRPO (or RLOO / REINFORCE, by ``config.baseline``); the policy is saved in ``config.output``."""
    sources = {"reward": reward} if reward is not None else None
    return OnlineTrainer(config, GroupPolicyGradient(config), model=model, tokenizer=tokenizer, sources=sources).train()


train_rloo = train_grpo
train_reinforce = train_grpo
