"""Inverse reward design (Hadfield-Menell et al. 2017): treat a designed (proxy) reward as evidence about the
true one, and act cautiously where the evidence says nothing.

A designer picks proxy weights w̃ so that optimising them gives good behaviour *in the training environment*
M̃. Rewards are linear in features, r_w(ξ) = wᵀφ(ξ). The observation model (Eq. 2 of the paper) is

    P(w̃ | w*) ∝ exp(β · w*ᵀ φ̄(ξ_w̃)) / Z(w*),     Z(w*) = Σ_{w'} exp(β · w*ᵀ φ̄(ξ_w'))

where ξ_w is the behaviour that is optimal for w in M̃ and φ̄ its mean features: the designer chose w̃ because
its behaviour scores well under the true w*. Z sums over the proxies the designer could have chosen, here
the same samples of the prior that approximate the posterior P(w* | w̃) ∝ P(w̃ | w*) P(w*). A feature that never
varies in M̃ leaves every w's training behaviour unchanged, so the posterior over its weight stays the prior:
the proxy's blind spot becomes uncertainty.

Risk-averse planning (Sec. 4.2) then picks, among candidates, the one with the best low quantile over the
posterior of the reward relative to the training behaviour's features, wᵀ(φ(ξ) − φ̄_train): features seen in
training cost nothing, a feature value the training environment never showed is a gamble and is avoided.

Behaviour here is a choice among candidates per situation (best-of-N answers per prompt), with features
``[situations, candidates, d]``, or a list of such tensors when situations have different numbers of candidates.

Example::

    >>> import torch
    >>> train = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])        # feature 2 never varies in training
    >>> test = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])         # the first candidate also has feature 2
    >>> samples = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    >>> weights = ird_posterior(train, torch.tensor([1.0, 0.0]), samples, beta=5.0)
    >>> risk_averse_choice(test, samples, weights, train_behaviour(train, torch.tensor([1.0, 0.0]))).tolist()
    [1]
"""

from __future__ import annotations

import torch


def best_candidates(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Index of the best candidate per situation under each weight vector: [K, situations] (ties: the first).

    ``features``: [situations, candidates, d]; ``weights``: [K, d] (or [d]).
    """
    scores = torch.einsum("scd,kd->ksc", features, weights.reshape(-1, features.shape[-1]))
    return scores.argmax(dim=-1)


def train_behaviour(features: torch.Tensor | list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """φ̄(ξ_w): the mean features of the behaviour optimal for each weight vector in the training situations,
    [K, d] (or [d] for one vector)."""
    picked = []
    for group in features if isinstance(features, list) else [features]:
        chosen = best_candidates(group, weights)  # [K, S]
        picked.append(torch.gather(group.unsqueeze(0).expand(chosen.shape[0], -1, -1, -1), 2,
                                   chosen[..., None, None].expand(-1, -1, 1, group.shape[-1])).squeeze(2))
    mean = torch.cat(picked, dim=1).mean(dim=1)
    return mean.squeeze(0) if weights.dim() == 1 else mean


def ird_posterior(train_features: torch.Tensor | list[torch.Tensor], proxy: torch.Tensor, samples: torch.Tensor, *,
                  beta: float) -> torch.Tensor:
    """Posterior weights [K] over prior samples [K, d] of the true reward, given the proxy ``proxy`` [d] designed
    for the training situations ``train_features`` [S, C, d] (Eq. 2; Z over the same samples as proxies)."""
    proxy_behaviour = train_behaviour(train_features, proxy)  # φ̄(ξ_w̃), [d]
    every_behaviour = train_behaviour(train_features, samples)  # φ̄(ξ_w') for each candidate proxy w', [K, d]
    evidence = beta * samples @ proxy_behaviour  # β w*ᵀ φ̄(ξ_w̃), [K]
    log_z = torch.logsumexp(beta * samples @ every_behaviour.T, dim=1)  # log Σ_w' exp(β w*ᵀ φ̄(ξ_w')), [K]
    log_posterior = evidence - log_z  # the prior is the sampling distribution itself
    return torch.softmax(log_posterior, dim=0)


def weighted_quantile(values: torch.Tensor, weights: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of each column of ``values`` [K, ...] under sample weights [K] (summing to 1)."""
    order = values.argsort(dim=0)
    cumulative = weights[order].cumsum(dim=0)
    index = (cumulative < q).sum(dim=0).clamp(max=values.shape[0] - 1)
    return torch.gather(values, 0, torch.gather(order, 0, index.unsqueeze(0))).squeeze(0)


def risk_averse_choice(features: torch.Tensor, samples: torch.Tensor, weights: torch.Tensor,
                       baseline: torch.Tensor, *, quantile: float = 0.05) -> torch.Tensor:
    """Per situation, the candidate whose reward relative to the training behaviour, wᵀ(φ − φ̄_train), has the
    best ``quantile`` over the posterior: [situations] indices (ties: the first)."""
    rewards = torch.einsum("scd,kd->ksc", features - baseline, samples)  # [K, S, C]
    return weighted_quantile(rewards, weights, quantile).argmax(dim=-1)
