"""PPO for language models with a KL penalty to the reference (Ziegler et al. 2019; Ouyang et al. 2022).

Per completion token t, with a scalar score r from the reward source at the last token:

    kl_t      = KL estimator of log π(y_t) − log π_ref(y_t)            (k1, k2 or k3; Schulman 2020)
    reward_t  = −β·kl_t + [t = last]·r                                  (Ziegler et al. eq. 2, per token)
    δ_t       = reward_t + γ·V(s_{t+1}) − V(s_t)
    A_t       = Σ_l (γλ)^l δ_{t+l}                                      (GAE, Schulman et al. 2016 eq. 16)
    L_clip    = E_t[ max(−A_t·ρ_t, −A_t·clip(ρ_t, 1 ± ε)) ],  ρ_t = π(y_t)/π_old(y_t)   (PPO eq. 7)
    L_V       = ½ E_t[ max((V − R)², (clip(V, V_old ± ε_v) − R)²) ],  R_t = A_t + V_old(s_t)
    loss      = L_clip + c_v·L_V

The pure functions (``gae``, ``clipped_policy_loss``, ``kl_estimate``, ...) are in :mod:`alignlab.core.rl`.
β is fixed or adapted towards a target KL (Ziegler et al. Sec. 2.2). The critic is a value head on the
policy (:class:`~alignlab.outer.online.rollout.ActorCritic`). Extra metrics: ``kl`` (mean Σ_t k1 per
completion), ``beta``, ``clipfrac`` (fraction of tokens whose ratio was clipped), ``approx_kl``
(policy change within the step), ``value_error`` (mean (V − R)²), ``value_clipfrac``,
``non_score_reward`` (mean Σ_t −β·kl_t).

Example::

    >>> from alignlab.outer.online.ppo import PPOConfig, train_ppo
    >>> cfg = PPOConfig(output="runs/ppo")                                              # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "prompts.jsonl"             # doctest: +SKIP
    >>> train_ppo(cfg, reward=lambda prompts, completions: [len(c) / 100 for c in completions])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alignlab.core.rl import (
    AdaptiveKLController,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_estimate,
    token_rewards,
    whiten,
)
from alignlab.core.trainer import TrainResult
from alignlab.outer.online.rewards import RewardSource
from alignlab.outer.online.rollout import OnlineConfig, OnlineTrainer, PolicyOutput, Rollout

# The maths lives in alignlab.core.rl; these names stay importable from here.
__all__ = ["PPO", "PPOConfig", "AdaptiveKLController", "RunningMoments", "clipped_policy_loss", "clipped_value_loss",
           "gae", "kl_estimate", "token_rewards", "train_ppo", "whiten"]


@dataclass
class PPOConfig(OnlineConfig):
    """PPO with a value head, GAE, clipped policy and value losses and a KL penalty to the reference."""

    # A field re-declared without a docstring only changes its default; its help stays the parent's.
    output: str = "runs/ppo"
    ppo_epochs: int = 4
    gamma: float = 1.0
    """discount γ over completion tokens"""
    lam: float = 0.95
    """GAE λ"""
    clip_coef: float = 0.2
    """policy ratio clip ε"""
    value_clip: float = 0.2
    """value clip ε_v around the rollout's values"""
    vf_coef: float = 0.1
    """weight c_v of the value loss"""
    kl_target: float | None = None
    """target per-completion KL for the adaptive controller (unset: β stays fixed)"""
    kl_horizon: int = 10000
    """adaptive controller horizon (completions)"""
    scale_rewards: bool = True
    """divide scores by their running std (reward normalisation)"""
    center_rewards: bool = True
    """also subtract the scores' running mean, so the fresh value head starts near its targets (otherwise
    its large early loss flows into the shared trunk and drags the policy: entropy up, reward down)"""
    whiten_advantages: bool = True
    """whiten advantages over each rollout batch"""
    score_clip: float | None = None
    """clip scores to ±score_clip before use"""


class PPO:
    """The PPO algorithm for :class:`OnlineTrainer` (one value head on the reward stream)."""

    sources: tuple[str, ...] = ("reward",)
    value_heads: tuple[str, ...] = ("reward",)
    needs_old_logps = True

    def __init__(self, config: PPOConfig):
        self.config = config
        self.kl_ctl = AdaptiveKLController(config.beta, config.kl_target, config.kl_horizon)
        self.moments = RunningMoments()

    def scaled(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores clipped, centred on their running mean and divided by their running std (when configured)."""
        if self.config.score_clip is not None:
            scores = scores.clamp(-self.config.score_clip, self.config.score_clip)
        if self.config.scale_rewards or self.config.center_rewards:
            self.moments.update(scores)
        if self.config.center_rewards:
            scores = scores - self.moments.mean
        if self.config.scale_rewards:
            scores = scores / self.moments.std
        return scores

    def kl(self, rollout: Rollout) -> torch.Tensor:
        if rollout.ref_logps is None:
            return torch.zeros_like(rollout.mask)
        return kl_estimate(rollout.old_logps, rollout.ref_logps, self.config.kl_estimator) * rollout.mask

    def advantages(self, rollout: Rollout) -> dict[str, float]:
        cfg, mask = self.config, rollout.mask
        kl = self.kl(rollout)
        beta = self.kl_ctl.beta
        rewards = token_rewards(self.scaled(rollout.scores["reward"]), kl, mask, beta)
        adv, ret = gae(rewards, rollout.values["reward"], mask, cfg.gamma, cfg.lam)
        rollout.advantages = whiten(adv, mask) if cfg.whiten_advantages else adv
        rollout.returns = {"reward": ret}
        seq_kl = float(kl.sum(-1).mean())
        self.kl_ctl.update(seq_kl, len(rollout.texts))
        return {"kl": seq_kl, "beta": beta, "non_score_reward": -beta * seq_kl}

    def loss(self, out: PolicyOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = batch["mask"]
        pg, stats = clipped_policy_loss(out.logps, batch["old_logps"], batch["advantages"], mask, self.config.clip_coef)
        vf, vstats = clipped_value_loss(out.values["reward"], batch["values"]["reward"], batch["returns"]["reward"],
                                        mask, self.config.value_clip)
        return pg + self.config.vf_coef * vf, {"policy_loss": pg.detach(), "value_loss": vf.detach(), **stats, **vstats}

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.kl_ctl.beta, "moments": [self.moments.mean, self.moments.var, self.moments.count]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.kl_ctl.beta = state["beta"]
            self.moments = RunningMoments(*state["moments"])


def train_ppo(config: PPOConfig, *, model: nn.Module | None = None, tokenizer=None,
              reward: RewardSource | Callable | None = None,
              monitors: dict[str, RewardSource | Callable] | None = None) -> TrainResult:
    """Train ``config.model`` with PPO; ``reward`` overrides ``config.reward`` (a source or a plain function).

    ``monitors`` are scored on every rollout and logged as ``monitor/<name>`` without being learned from.
    The policy is saved in ``config.output`` (value head beside it as ``value_head_reward.safetensors``).
    """
    sources = {"reward": reward} if reward is not None else None
    return OnlineTrainer(config, PPO(config), model=model, tokenizer=tokenizer, sources=sources,
                         monitors=monitors).train()
