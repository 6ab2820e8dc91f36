"""f-DPG: approximate a target distribution by minimising any f-divergence (Go et al. 2023, "Aligning Language
Models with Preferences through f-divergence Minimization").

The target is the RLHF-optimal policy ``p(y|x) ∝ π_ref(y|x) · exp(r(x, y) / β)`` (Korbak et al.'s "RL with KL
penalties is better viewed as Bayesian inference"), known only up to its normaliser ``Z(x)``. For
``D_f(π_θ ‖ p) = E_p[f(π_θ / p)]`` the gradient is (Go et al., Eq. 4)

    ∇_θ D_f(π_θ ‖ p) = E_{y~π_θ}[ f'(π_θ(y) / p(y)) · ∇_θ log π_θ(y) ]

so a policy gradient whose advantage is ``−f'(t)``, ``t = π_θ / p``, descends the divergence. ``Z(x)`` is
estimated from each prompt's G samples by importance sampling, ``Ẑ = 1/G Σ_i π_ref(y_i) e^{r_i/β} / π_θ(y_i)``,
and the group mean of ``f'`` is subtracted as a baseline (``E_π[∇ log π] = 0``, so it changes only the
variance). The divergences, each by its generator f(t):

    reverse_kl  KL(π‖p)   f = t log t                      f'(t) = log t + 1
    forward_kl  KL(p‖π)   f = −log t                       f'(t) = −1/t
    tv          TV        f = ½|t − 1|                     f'(t) = ½ sign(t − 1)
    js          JS        f = ½[t log t − (t+1) log((t+1)/2)]  f'(t) = ½ log(2t / (t + 1))

With ``reverse_kl``, −f'(t) = r/β − log(π_θ/π_ref) + const: the advantage is RLHF's KL-penalised reward over β
(RLOO/REINFORCE with the KL in the reward), which is the sense in which reverse KL recovers RLHF's objective.
``forward_kl`` is the original DPG: it covers the target's modes (more diversity), where reverse KL seeks one.

Example::

    >>> import torch
    >>> adv = fdpg_advantages(torch.zeros(2), torch.zeros(2), torch.tensor([1.0, 0.0]), 2, 1.0, "reverse_kl")
    >>> adv.tolist()    # equal log-probs: the advantage is the reward over β, centred in the group
    [0.5, -0.5]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from alignlab.outer.online.grpo import GroupPolicyGradient, GRPOConfig
from alignlab.outer.online.rewards import RewardSource
from alignlab.outer.online.rollout import OnlineTrainer, Rollout

Divergence = Literal["reverse_kl", "forward_kl", "tv", "js"]


def f_prime(divergence: str, log_t: torch.Tensor) -> torch.Tensor:
    """f'(t) of the divergence's generator, from log t (t = π_θ / p), computed in log space where it can be."""
    if divergence == "reverse_kl":
        return log_t + 1.0
    if divergence == "forward_kl":
        return -torch.exp(-log_t)
    if divergence == "tv":
        return 0.5 * torch.sign(log_t)
    if divergence == "js":  # ½ log(2t/(t+1)) = ½ (log 2 + log t − log(1 + t))
        return 0.5 * (math.log(2.0) + log_t - torch.nn.functional.softplus(log_t))
    raise ValueError(f"unknown divergence {divergence!r}; choose reverse_kl, forward_kl, tv or js")


def fdpg_advantages(policy_logps: torch.Tensor, ref_logps: torch.Tensor, rewards: torch.Tensor, group_size: int,
                    beta: float, divergence: str) -> torch.Tensor:
    """Sequence advantages −(f'(t_i) − mean_group f'(t)) for N = prompts × G samples laid out group by group.

    ``policy_logps``/``ref_logps``: [N] sequence log-probs under the sampling policy and the reference;
    ``rewards``: [N]; the target is ``π_ref · exp(r / β) / Z``, Z estimated per group (see the module docstring).
    """
    log_target = (ref_logps + rewards / beta).view(-1, group_size)  # log p̃ = log π_ref + r/β (unnormalised)
    log_policy = policy_logps.view(-1, group_size)
    # log Ẑ = log(1/G Σ_i p̃(y_i) / π(y_i)): importance sampling from the policy's own samples
    log_z = torch.logsumexp(log_target - log_policy, dim=1, keepdim=True) - math.log(group_size)
    log_t = log_policy - (log_target - log_z)  # log(π / p)
    weight = f_prime(divergence, log_t)
    return -(weight - weight.mean(dim=1, keepdim=True)).flatten()


@dataclass
class FDPGConfig(GRPOConfig):
    """f-DPG: move the policy toward π_ref·exp(r/β) by minimising an f-divergence with a policy gradient."""

    output: str = "runs/fdpg"
    divergence: Divergence = "reverse_kl"
    """f-divergence to the target: reverse_kl (RLHF's objective), forward_kl (DPG), tv or js"""
    beta: float = 0.1
    """temperature of the target π_ref·exp(r/β) (the KL strength of the equivalent RLHF problem)"""
    group_size: int = 4
    """samples per prompt (they also estimate the target's normaliser Z)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError("f-DPG needs beta > 0: the target is π_ref·exp(r/β)")
        if self.group_size < 2:
            raise ValueError("f-DPG needs group_size >= 2 (Z and the baseline are estimated per prompt)")


class FDPG(GroupPolicyGradient):
    """f-DPG for :class:`OnlineTrainer`: GRPO's clipped surrogate with f-DPG's advantages and no KL term (the
    reference enters through the target)."""

    def __init__(self, config: FDPGConfig):
        super().__init__(config)
        self.needs_old_logps = True  # t = π/p needs the sampling policy's log-probs

    def advantages(self, rollout: Rollout) -> dict[str, float]:
        cfg, mask = self.config, rollout.mask
        policy = (rollout.old_logps * mask).sum(-1)
        ref = (rollout.ref_logps * mask).sum(-1)
        adv = fdpg_advantages(policy, ref, rollout.scores["reward"], cfg.group_size, cfg.beta, cfg.divergence)
        rollout.advantages = adv[:, None] * mask
        return {"advantage/std": float(adv.std(unbiased=False)), "kl": float((policy - ref).mean())}

    def loss(self, out, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from alignlab.core.rl import clipped_policy_loss

        old = batch["old_logps"] if batch["old_logps"] is not None else out.logps.detach()
        loss, stats = clipped_policy_loss(out.logps, old, batch["advantages"], batch["mask"], self.config.clip_coef)
        return loss, {"policy_loss": loss.detach(), **stats}


def train_fdpg(config: FDPGConfig, *, model: nn.Module | None = None, tokenizer=None,
               reward: RewardSource | Callable | None = None):
    """Train with f-DPG; the policy is saved in ``config.output``.

    Example::

        >>> train_fdpg(FDPGConfig(divergence="js"))   # doctest: +SKIP
    """
    sources = {"reward": reward} if reward is not None else None
    return OnlineTrainer(config, FDPG(config), model=model, tokenizer=tokenizer, sources=sources).train()
