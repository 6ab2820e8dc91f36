"""Reinforcement-learning maths as pure functions of tensors: advantages, clipped losses, KL estimators.

Nothing here knows about language models: a "sequence" is a row of per-step values ([N, T]) with a
``mask`` (1 on real steps, 0 on padding after the end), so the same functions serve PPO on completion
tokens and a small agent on environment steps. Every function cites the equation it computes.

Example::

    >>> rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3)
    >>> advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    >>> advantages  # γ = λ = 1 and V = 0: the reward-to-go
    tensor([[1., 1., 1.]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
Baseline = Literal["grpo", "rloo", "reinforce"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all of them, or along ``dim``).

    Example::

        >>> masked_mean(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1.0, 1.0, 0.0]))
        tensor(2.)
    """
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """(x − mean)/std over the masked positions (the mean is added back when ``shift_mean`` is False).

    Example::

        >>> [round(v, 3) for v in whiten(torch.tensor([1.0, 3.0, 7.0]), torch.tensor([1.0, 1.0, 0.0])).tolist()]
        [-1.0, 1.0, 0.0]
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = logsumexp(z) − Σ softmax(z)·z per position, [..., vocab] → [...] (fp32).

    One leading row at a time: each row's fp32 copy and softmax stay small enough to sit in cache, where the
    whole [batch, T, vocab] fp32 temporaries would not (several times faster on a CPU; the same numbers,
    since every reduction runs over the vocabulary of one position either way).

    Example::

        >>> entropy_from_logits(torch.zeros(4))  # uniform over 4 actions: log 4
        tensor(1.3863)
    """
    if logits.dim() < 3:
        z = logits.float()
        return torch.logsumexp(z, -1) - (z.softmax(-1) * z).sum(-1)
    return torch.stack([entropy_from_logits(row) for row in logits])


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, kind: KLEstimator = "k1") -> torch.Tensor:
    """Per-step estimate of KL(π‖π_ref) from actions sampled from π (Schulman 2020, "Approximating KL divergence").

    With log r = log π_ref − log π:  k1 = −log r (unbiased, can be negative), k2 = ½(log r)² (low variance,
    biased), k3 = (r − 1) − log r (unbiased, always ≥ 0).

    Example::

        >>> kl_estimate(torch.tensor(0.0), torch.tensor(-1.0), "k3")  # r = e⁻¹: e⁻¹ − 1 + 1
        tensor(0.3679)
    """
    log_r = ref_logps - logps
    if kind == "k1":
        return -log_r  # k1 = −log r
    if kind == "k2":
        return 0.5 * log_r ** 2  # k2 = ½ (log r)²
    if kind == "k3":
        return torch.expm1(log_r) - log_r  # k3 = (r − 1) − log r
    raise ValueError(f"unknown KL estimator '{kind}'; choose k1, k2 or k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-step rewards [N, T]: −β·kl_t on every step, plus the sequence score [N] on its last step.

    reward_t = −β·kl_t + [t = last]·r (Ziegler et al. 2019, eq. 2, spread over the steps).

    Example::

        >>> token_rewards(torch.tensor([2.0]), torch.tensor([[0.5, 0.5]]), torch.ones(1, 2), beta=1.0)
        tensor([[-0.5000,  1.5000]])
    """
    rewards = -beta * kl * mask
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # [N]
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16); (advantages, returns), each [N, T].

    δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}, with V and A zero after the last step;
    returns R_t = A_t + V_t are the value targets (the λ-return).
    """
    n, length = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(next_adv)
    for t in reversed(range(length)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # δ_t = r_t + γ V_{t+1} − V_t
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]  # A_t = δ_t + γλ A_{t+1}
        next_value = values[:, t] * mask[:, t]
        advantages[:, t] = next_adv
    return advantages, (advantages + values) * mask


def clipped_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate as a loss, step mean (Schulman et al. 2017, eq. 7); with clipfrac and approx_kl.

    L = E_t[ max(−A_t·ρ_t, −A_t·clip(ρ_t, 1 − ε, 1 + ε)) ],  ρ_t = π(a_t)/π_old(a_t). ``approx_kl`` is the
    k3 estimate of KL(π_old‖π), how far the policy moved within the step.

    Example::

        >>> loss, stats = clipped_policy_loss(torch.log(torch.tensor([1.5])), torch.zeros(1), torch.ones(1),
        ...                                   torch.ones(1), clip_coef=0.2)
        >>> round(float(loss), 4), float(stats["clipfrac"])  # ρ = 1.5 is clipped to 1.2
        (-1.2, 1.0)
    """
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)  # ρ_t
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)  # the pessimistic bound, as a loss
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """½·max((V − R)², (clip(V, V_old ± ε_v) − R)²), step mean (PPO's value clipping, as in OpenAI baselines).

    Returns the loss and ``value_clipfrac`` (where the clipped branch is larger) and ``value_error`` (V − R)².

    Example::

        >>> loss, _ = clipped_value_loss(torch.tensor([2.0]), torch.zeros(1), torch.tensor([3.0]), torch.ones(1), 0.5)
        >>> float(loss)  # the clipped V = 0.5 is further from R = 3: ½ (0.5 − 3)²
        3.125
    """
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        stats = {"value_clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask),
                 "value_error": masked_mean(loss_unclipped, mask)}
    return loss, stats


def group_advantages(scores: torch.Tensor, group_size: int, baseline: Baseline, *, scale: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """Sequence advantages [N] from scores [N] laid out as consecutive groups of ``group_size``.

        grpo       A_i = (r_i − mean_g r) / (std_g r + ε)      (Shao et al. 2024, DeepSeekMath eq. 3; scale=False:
                                                               Dr. GRPO, no division)
        rloo       A_i = r_i − 1/(G−1) Σ_{j≠i} r_j              (Ahmadian et al. 2024, eq. 7; Kool et al. 2019)
        reinforce  A_i = r_i − mean over the whole batch         (Williams 1992 with a batch-mean baseline)

    Example::

        >>> group_advantages(torch.tensor([1.0, 0.0, 3.0, 3.0]), 2, "rloo")
        tensor([ 1., -1.,  0.,  0.])
    """
    if baseline == "reinforce":
        return scores - scores.mean()
    groups = scores.view(-1, group_size)  # [prompts, G]
    if baseline == "rloo":
        if group_size < 2:
            raise ValueError("RLOO needs group_size >= 2 (a leave-one-out baseline)")
        others = (groups.sum(-1, keepdim=True) - groups) / (group_size - 1)
        return (groups - others).flatten()
    if baseline == "grpo":
        centred = groups - groups.mean(-1, keepdim=True)
        if scale:
            centred = centred / (groups.std(-1, keepdim=True) + eps)
        return centred.flatten()
    raise ValueError(f"unknown baseline '{baseline}'; choose grpo, rloo or reinforce")


def lagrange_update(log_lambda: float, *, mean_cost: float, threshold: float, lr: float, lambda_max: float) -> float:
    """One SGD step on the multiplier loss −(J_c − d)·λ with λ = exp(log λ), clamped at λ_max (PPO-Lagrangian;
    Dai et al. 2023, Safe RLHF eq. 11).

    Example::

        >>> lagrange_update(0.0, mean_cost=1.0, threshold=0.0, lr=0.1, lambda_max=5.0)  # cost above d: λ grows
        0.1
    """
    grad = -(mean_cost - threshold) * math.exp(log_lambda)  # ∂/∂ log λ of −(J_c − d)·exp(log λ)
    return min(log_lambda - lr * grad, math.log(lambda_max))


@dataclass
class AdaptiveKLController:
    """β that tracks a target KL (Ziegler et al. 2019, Sec. 2.2).

        e = clip(KL / KL_target − 1, −0.2, 0.2);   β ← β·(1 + e·n / horizon)

    with n the number of sequences in the step. ``target=None`` keeps β fixed.

    Example::

        >>> AdaptiveKLController(beta=0.1, target=1.0, horizon=10).update(kl=2.0, n=10)  # error clipped at 0.2
        0.12
    """

    beta: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta *= 1.0 + error * n / self.horizon
        return self.beta


@dataclass
class RunningMoments:
    """Running mean and std of scores over all steps (Chan et al. parallel update), for reward scaling.

    Example::

        >>> m = RunningMoments(count=0.0)
        >>> m.update(torch.tensor([1.0, 3.0])); m.mean, m.std
        (2.0, 1.0)
    """

    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-4

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        batch_mean, batch_var = float(x.mean()), float(x.var(unbiased=False))
        delta, total = batch_mean - self.mean, self.count + n
        self.var = (self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-8))
