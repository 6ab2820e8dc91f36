"""Preference losses as pure functions of log-probabilities.

Every loss takes log-probability tensors that a trainer (ours or yours) has already gathered and returns
``(losses, metrics)``:

- ``losses`` is a per-example tensor of shape ``[batch]``, never reduced, so the caller chooses the
  reduction (mean, token-weighted, importance-weighted, ...);
- ``metrics`` maps names to per-example tensors (``rewards_chosen``, ``margins``, ``accuracies``...),
  detached, ready to be averaged and logged.

Names follow the papers. The DPO family reproduces what TRL 1.16's ``DPOTrainer`` computes for each of
its ``loss_type`` values (the parity tests call TRL's own code on the same inputs); RRHF, PRO, CRINGE and
Stable Alignment reproduce the authors' public code, because no framework ships them.

Conventions for the pairwise losses:

- ``policy_chosen_logps`` etc. are log pi(y|x) summed over the completion tokens, shape ``[batch]``;
- the implicit reward of a response is ``beta * (log pi(y|x) - log pi_ref(y|x))``;
- losses that need length normalisation (``ipo``, ``sigmoid_norm``) take the completion lengths
  explicitly, and losses defined on mean token log-probs (``orpo``, ``simpo``) name their arguments
  ``*_mean_logps``.

Each loss is declared with :func:`register_loss` (what data it takes, whether it needs a reference model,
whether it scores by mean log-probs); ``alignlab train``, the preference trainer, the benches and
:mod:`alignlab.losses` all read that declaration (``LOSS_SPECS``), so adding a pairwise loss is its
function, its decorator and its test.

Example:
    >>> import torch
    >>> from alignlab.outer.losses import get_loss
    >>> loss_fn = get_loss("dpo")
    >>> zeros = torch.zeros(2)
    >>> losses, metrics = loss_fn(zeros, zeros, zeros, zeros, beta=0.1)
    >>> [round(x, 4) for x in losses.tolist()]  # log 2 when the policy equals the reference
    [0.6931, 0.6931]
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from alignlab.errors import ConfigError, DataError

LossOutput = tuple[Tensor, dict[str, Tensor]]

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


# ---------------------------------------------------------------------------------------------------------
# Plumbing: input checks and the pieces several losses share
# ---------------------------------------------------------------------------------------------------------


def _check_same_shape(source: str, ndim: int, **tensors: Tensor) -> None:
    """Raise a DataError naming the argument whose shape differs (silent broadcasting hides real bugs)."""
    names = list(tensors)
    first = tensors[names[0]]
    if first.ndim != ndim:
        raise DataError(f"expected a {ndim}-d tensor, got shape {tuple(first.shape)}", source=source,
                        field=names[0])
    for name in names[1:]:
        if tensors[name].shape != first.shape:
            raise DataError(f"shape {tuple(tensors[name].shape)} does not match '{names[0]}' shape "
                            f"{tuple(first.shape)}", source=source, field=name)


def _check_finite(source: str, **tensors: Tensor) -> None:
    """Raise a DataError naming the first row with a NaN or infinite value."""
    for name, tensor in tensors.items():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            row = int(bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()[0])
            raise DataError("non-finite value (NaN or inf)", source=source, row=row, field=name)


def _check_ranked(source: str, scores: Tensor, rewards: Tensor, best_nll: Tensor | None = None) -> None:
    """Ranked-list losses need [batch, k] scores and rewards with k >= 2, all finite."""
    _check_same_shape(source, 2, scores=scores, rewards=rewards)
    if scores.shape[1] < 2:
        raise DataError(f"a ranked list needs at least 2 candidates, got {scores.shape[1]}", source=source,
                        field="scores")
    if best_nll is not None and tuple(best_nll.shape) != (scores.shape[0],):
        raise DataError(f"expected shape ({scores.shape[0]},) (one value per list), got "
                        f"{tuple(best_nll.shape)}", source=source, field="best_nll")
    _check_finite(source, scores=scores, rewards=rewards)


def _check_pair(source: str, policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                ref_chosen_logps: Tensor, ref_rejected_logps: Tensor) -> None:
    _check_same_shape(source, 1, policy_chosen_logps=policy_chosen_logps,
                      policy_rejected_logps=policy_rejected_logps, ref_chosen_logps=ref_chosen_logps,
                      ref_rejected_logps=ref_rejected_logps)


def _check_label_smoothing(source: str, label_smoothing: float, upper: float = 1.0) -> None:
    if not 0.0 <= label_smoothing < upper:
        raise ConfigError(f"{source}: label_smoothing must lie in [0, {upper}), got {label_smoothing}")


def _reward_metrics(beta: float, chosen_logratios: Tensor, rejected_logratios: Tensor) -> dict[str, Tensor]:
    """The implicit DPO rewards r = beta * log(pi / pi_ref) and what a trainer usually logs about them."""
    rewards_chosen = beta * chosen_logratios.detach()
    rewards_rejected = beta * rejected_logratios.detach()
    return {
        "rewards_chosen": rewards_chosen,
        "rewards_rejected": rewards_rejected,
        "margins": rewards_chosen - rewards_rejected,
        "accuracies": (rewards_chosen > rewards_rejected).float(),
    }


def _f_divergence_score(logratio: Tensor, f_divergence: str, f_alpha: float) -> Tensor:
    """f'(pi / pi_ref) for the divergence that regularises the policy (Wang et al. 2023, Table 1).

    f-DPO replaces the log-ratio inside DPO with f'(u), u = pi / pi_ref; reverse KL gives back plain DPO.
    Additive constants in f' are kept exactly as TRL 1.16 has them (reverse KL drops the +1 of
    f'(u) = log u + 1, JS keeps its log 2): they cancel in chosen - rejected, except under the length
    normalisation of ``ipo`` and ``sigmoid_norm``.
    """
    if f_divergence == "reverse_kl":
        return logratio
    if f_divergence == "forward_kl":
        return -torch.expm1(-logratio)  # f'(u) = 1 - 1/u
    if f_divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratio)  # f'(u) = log(2u / (1 + u))
    if f_divergence == "alpha_divergence":
        if abs(f_alpha - 1.0) < 1e-6:  # the alpha -> 1 limit of (u^(alpha-1) - 1) / (alpha - 1) is log u
            return logratio
        # exp overflows float32 past ~88; clamping keeps the loss finite for wildly off-reference policies
        exponent = ((f_alpha - 1.0) * logratio).clamp(max=80.0)
        return torch.expm1(exponent) / (f_alpha - 1.0)  # f'(u) = (u^(alpha-1) - 1) / (alpha - 1)
    raise ConfigError(f"unknown f_divergence '{f_divergence}'; choose one of {', '.join(F_DIVERGENCES)}")


def _f_scores(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, f_divergence: str, f_alpha: float) -> tuple[Tensor, Tensor]:
    return (_f_divergence_score(policy_chosen_logps - ref_chosen_logps, f_divergence, f_alpha),
            _f_divergence_score(policy_rejected_logps - ref_rejected_logps, f_divergence, f_alpha))


def _per_token(chosen_scores: Tensor, rejected_scores: Tensor, chosen_lengths: Tensor,
               rejected_lengths: Tensor, source: str) -> tuple[Tensor, Tensor]:
    _check_same_shape(source, 1, chosen_scores=chosen_scores, chosen_lengths=chosen_lengths,
                      rejected_lengths=rejected_lengths)
    # an empty completion counts as one token so that the loss stays finite (TRL does the same)
    return (chosen_scores / chosen_lengths.to(chosen_scores.dtype).clamp(min=1.0),
            rejected_scores / rejected_lengths.to(rejected_scores.dtype).clamp(min=1.0))


def _smoothed_logistic(logits: Tensor, label_smoothing: float) -> Tensor:
    """Binary cross-entropy of sigma(logits) against a label that says "chosen wins" with prob 1 - eps."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


# ---------------------------------------------------------------------------------------------------------
# The registry: each loss declares here, once, what it takes (trainers, `alignlab train` and the benches read it)
# ---------------------------------------------------------------------------------------------------------

DataKind = Literal["pair", "unpaired", "ranked", "token"]


@dataclass(frozen=True)
class LossSpec:
    """What a loss takes, declared once beside its function with :func:`register_loss`.

    Example:
        >>> spec = LOSS_SPECS["simpo"]
        >>> spec.data, spec.reference_free, spec.mean_logps, spec.kl_anchored, spec.default_beta
        ('pair', True, True, False, 2.0)
    """

    fn: Callable[..., LossOutput]
    """the pure loss function"""
    data: DataKind
    """what it learns from: pair (prompt, chosen, rejected), unpaired (one completion labelled desirable or not),
    ranked (k scored completions) or token (per-token logits of labelled sequences)"""
    reference_free: bool = False
    """it compares the policy with itself, so it needs no reference model"""
    mean_logps: bool = False
    """a pairwise loss that scores answers by mean token log-prob (arguments ``*_mean_logps``), not the sum"""

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def default_beta(self) -> float | None:
        """The default of the function's ``beta`` argument (None: it has none)."""
        beta = inspect.signature(self.fn).parameters.get("beta")
        return None if beta is None else beta.default

    @property
    def kl_anchored(self) -> bool:
        """Its β is a KL strength towards a reference model (a reference-free loss's β means something else)."""
        return not self.reference_free and self.default_beta is not None


LOSS_SPECS: dict[str, LossSpec] = {}
LOSSES: dict[str, Callable[..., LossOutput]] = {}


def register_loss(data: DataKind, *, reference_free: bool = False,
                  mean_logps: bool = False) -> Callable[[Callable[..., LossOutput]], Callable[..., LossOutput]]:
    """Declare a loss (a decorator): it joins ``LOSSES``, and a pairwise one (``data="pair"``) becomes a method of
    ``alignlab train``, :class:`~alignlab.outer.preference.PreferenceConfig` and the offline bench.

    Example:
        >>> @register_loss("pair")
        ... def my_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
        ...             beta=0.1):
        ...     ...
        >>> LOSS_SPECS["my_loss"].kl_anchored
        True
        >>> del LOSS_SPECS["my_loss"], LOSSES["my_loss"]
    """

    if mean_logps and not reference_free:  # the preference trainer averages log-probs only without a reference
        raise ConfigError("register_loss: mean_logps=True needs reference_free=True")

    def register(fn: Callable[..., LossOutput]) -> Callable[..., LossOutput]:
        if fn.__name__ in LOSS_SPECS:
            raise ConfigError(f"a loss named '{fn.__name__}' is already registered")
        LOSS_SPECS[fn.__name__] = LossSpec(fn, data, reference_free, mean_logps)
        LOSSES[fn.__name__] = fn
        return fn

    return register


def get_loss_spec(name: str) -> LossSpec:
    """The declaration of a loss; a mistyped name raises a ConfigError that suggests the closest names.

    Example:
        >>> get_loss_spec("orpo").reference_free
        True
    """
    if name in LOSS_SPECS:
        return LOSS_SPECS[name]
    close = difflib.get_close_matches(name, LOSS_SPECS, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(f"unknown loss '{name}'; {hint}known losses: {', '.join(sorted(LOSS_SPECS))}")


def get_loss(name: str) -> Callable[..., LossOutput]:
    """Look a loss up by name (close-match suggestions for a mistyped one, as :func:`get_loss_spec`).

    Example:
        >>> get_loss("ipo").__name__
        'ipo'
    """
    return get_loss_spec(name).fn


def pairwise_losses() -> list[str]:
    """Names of the registered losses that train on pairs, in registration order.

    Example:
        >>> pairwise_losses()[:3]
        ['dpo', 'robust_dpo', 'ipo']
    """
    return [name for name, spec in LOSS_SPECS.items() if spec.data == "pair"]


# ---------------------------------------------------------------------------------------------------------
# DPO and the losses that share its inputs (TRL ``DPOTrainer`` loss types in brackets)
# ---------------------------------------------------------------------------------------------------------


@register_loss("pair")
def dpo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 0.0,
        f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """DPO: Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7 [TRL ``sigmoid``].

    ``L = -log sigma(beta * (log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)))``.

    ``label_smoothing = eps > 0`` gives conservative DPO (cDPO; Mitchell 2023, "A note on DPO with noisy
    preferences"): the label is right with probability 1 - eps,
    ``L = -(1 - eps) log sigma(beta * h) - eps log sigma(-beta * h)``.
    ``f_divergence`` swaps the reverse-KL regulariser for another f-divergence (Wang et al. 2023, "Beyond
    Reverse KL", Table 1): ``reverse_kl``, ``forward_kl``, ``js_divergence`` or ``alpha_divergence`` with
    coefficient ``f_alpha`` (TRL's ``f_divergence_type`` / ``f_alpha_divergence_coef``).

    Example:
        >>> import torch
        >>> losses, metrics = dpo(torch.tensor([-5.0]), torch.tensor([-9.0]), torch.tensor([-6.0]),
        ...                       torch.tensor([-8.0]), beta=0.5)
        >>> round(losses.item(), 4), metrics["margins"].tolist()
        (0.3133, [1.0])
    """
    _check_pair("dpo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_label_smoothing("dpo", label_smoothing)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    losses = _smoothed_logistic(beta * (chosen_scores - rejected_scores), label_smoothing)  # Eq. 7 (+ cDPO)
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def robust_dpo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
               ref_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 0.1,
               f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """Robust DPO (rDPO): Chowdhury et al. 2024, "Provably Robust DPO", Sec. 3 [TRL ``robust``].

    An unbiased estimate of the clean DPO loss when each label is flipped with probability
    ``eps = label_smoothing`` < 1/2:
    ``L = ((1 - eps) * l(h) - eps * l(-h)) / (1 - 2 eps)``, with ``l(h) = -log sigma(beta * h)``.
    Unlike cDPO it is not bounded below, it de-biases rather than smooths.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(robust_dpo(z, z, z, z, label_smoothing=0.2)[0].item(), 4)  # log 2 at zero margin
        0.6931
    """
    _check_pair("robust_dpo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                ref_rejected_logps)
    _check_label_smoothing("robust_dpo", label_smoothing, upper=0.5)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    logits = beta * (chosen_scores - rejected_scores)
    eps = label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)  # rDPO
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def ipo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, chosen_lengths: Tensor | None, rejected_lengths: Tensor | None,
        beta: float = 0.1, f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """IPO: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", Eq. 17, with ``tau = beta`` [TRL ``ipo``].

    ``L = (h - 1 / (2 beta))^2`` where h is the chosen minus rejected log-ratio.

    Length normalisation is explicit: pass the completion lengths (number of completion tokens,
    shape ``[batch]``) and each sequence's log-ratio is divided by its length before the difference,
    which is what TRL and the IPO authors' experiments do. Pass ``None`` for both to use the summed
    log-ratios of Eq. 17 as printed (then beta must be scaled to your sequence lengths).

    Example:
        >>> import torch
        >>> z, n = torch.zeros(1), torch.tensor([10.0])
        >>> ipo(z, z, z, z, chosen_lengths=n, rejected_lengths=n, beta=0.5)[0].tolist()  # (0 - 1)^2
        [1.0]
    """
    _check_pair("ipo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ConfigError("ipo: pass both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is not None:
        chosen_scores, rejected_scores = _per_token(chosen_scores, rejected_scores, chosen_lengths,
                                                    rejected_lengths, "ipo")
    losses = (chosen_scores - rejected_scores - 1 / (2 * beta)) ** 2  # Eq. 17
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def sigmoid_norm(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
                 ref_rejected_logps: Tensor, *, chosen_lengths: Tensor, rejected_lengths: Tensor,
                 beta: float = 0.1, f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """Length-normalised DPO (the "DPO-norm" of Lambert et al. 2024, Tulu 3, Sec. 5) [TRL ``sigmoid_norm``].

    DPO (Rafailov et al. 2023, Eq. 7) on per-token log-ratios:
    ``L = -log sigma(beta * (h_w / |y_w| - h_l / |y_l|))``, so long responses do not get larger margins
    for free. ``chosen_lengths`` / ``rejected_lengths`` are the completion token counts ``[batch]``.

    Example:
        >>> import torch
        >>> n = torch.tensor([4.0])
        >>> losses, _ = sigmoid_norm(torch.tensor([-4.0]), torch.tensor([-8.0]), torch.zeros(1),
        ...                          torch.zeros(1), chosen_lengths=n, rejected_lengths=n, beta=1.0)
        >>> round(losses.item(), 4)  # -log sigma(1)
        0.3133
    """
    _check_pair("sigmoid_norm", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                ref_rejected_logps)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    chosen_scores, rejected_scores = _per_token(chosen_scores, rejected_scores, chosen_lengths,
                                                rejected_lengths, "sigmoid_norm")
    losses = -F.logsigmoid(beta * (chosen_scores - rejected_scores))  # Eq. 7 on per-token log-ratios
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def slic(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
         ref_rejected_logps: Tensor, *, beta: float = 0.1, f_divergence: str = "reverse_kl",
         f_alpha: float = 0.5) -> LossOutput:
    """SLiC hinge loss: Zhao et al. 2023, "SLiC-HF", Sec. 2 calibration loss, as TRL applies it to DPO's
    log-ratios [TRL ``hinge``].

    ``L = max(0, 1 - beta * h)``: the SLiC margin delta is ``1 / beta``. With a reference equal to a
    constant this is SLiC-HF's ``max(0, delta - log pi(y_w) + log pi(y_l))`` up to the factor beta.

    Example:
        >>> import torch
        >>> z = torch.zeros(2)
        >>> slic(torch.tensor([0.0, 30.0]), z, z, z, beta=0.1)[0].tolist()  # margin 0 -> 1, margin 30 -> 0
        [1.0, 0.0]
    """
    _check_pair("slic", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    losses = torch.relu(1 - beta * (chosen_scores - rejected_scores))  # L_cal with delta = 1 / beta
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def exo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 1e-3,
        f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """EXO: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment", Eq. 16
    with K = 2 [TRL ``exo_pair``].

    The policy's implied preference distribution over {chosen, rejected},
    ``p = softmax(beta * [h_w, h_l])``, is pulled towards the label distribution
    ``q = [1 - eps, eps]`` with the *reverse* KL ``KL(p || q)`` (DPO minimises the forward one).
    ``eps = label_smoothing`` must be > 0 (the paper uses 1e-3), else ``log q`` is -inf.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(exo(z, z, z, z, label_smoothing=0.5)[0].item(), 6)  # p == q -> KL 0
        0.0
    """
    _check_pair("exo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    if not 0.0 < label_smoothing < 1.0:
        raise ConfigError(f"exo: label_smoothing must lie in (0, 1) (the paper uses 1e-3), got {label_smoothing}")
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    logits = beta * (chosen_scores - rejected_scores)
    log_p_w, log_p_l = F.logsigmoid(logits), F.logsigmoid(-logits)  # log softmax over the pair
    log_q_w, log_q_l = math.log1p(-label_smoothing), math.log(label_smoothing)
    losses = log_p_w.exp() * (log_p_w - log_q_w) + log_p_l.exp() * (log_p_l - log_q_l)  # Eq. 16: KL(p || q)
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def nca(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1) -> LossOutput:
    """NCA (pairwise): Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", Sec. 3, NCA loss with K = 2 and preference labels [TRL ``nca_pair``].

    ``L = -log sigma(r_w) - 1/2 log sigma(-r_w) - 1/2 log sigma(-r_l)``, r = beta * log(pi / pi_ref).
    Each response is scored against the reference on its own (absolute, not relative, rewards), which
    keeps the chosen likelihood from falling as it often does under DPO.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(nca(z, z, z, z)[0].item(), 4)  # 2 * log 2
        1.3863
    """
    _check_pair("nca", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    rewards_chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rewards_rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    losses = (-F.logsigmoid(rewards_chosen) - 0.5 * F.logsigmoid(-rewards_chosen)
              - 0.5 * F.logsigmoid(-rewards_rejected))  # NCA, K = 2
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def bco(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1, delta: Tensor | float = 0.0) -> LossOutput:
    """BCO (paired): Jung et al. 2024, "Binary Classifier Optimization for Large Language Model
    Alignment", Sec. 3 (reward shift) [TRL ``bco_pair``].

    A binary classifier whose logit is the implicit reward shifted by a baseline delta:
    ``L = -log sigma(r_w - delta) - log sigma(-(r_l - delta))``.

    The paper's delta is a running mean of the rewards seen so far; it is an explicit argument here so
    the trainer owns that state. Update it from ``metrics["rewards_mean"]`` (the mean of each pair's two
    rewards). TRL 1.16 dropped the baseline (delta = 0); ``delta=0.0`` reproduces it.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(bco(z, z, z, z, delta=0.0)[0].item(), 4)  # 2 * log 2
        1.3863
    """
    _check_pair("bco", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    rewards_chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rewards_rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    delta = torch.as_tensor(delta, dtype=rewards_chosen.dtype, device=rewards_chosen.device).detach()
    losses = -F.logsigmoid(rewards_chosen - delta) - F.logsigmoid(-(rewards_rejected - delta))  # BCO
    metrics = _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                              policy_rejected_logps - ref_rejected_logps)
    metrics["rewards_mean"] = (metrics["rewards_chosen"] + metrics["rewards_rejected"]) / 2
    return losses, metrics


@register_loss("pair")
def sppo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
         ref_rejected_logps: Tensor, *, beta: float = 0.1) -> LossOutput:
    """SPPO (hard labels): Wu et al. 2024, "Self-Play Preference Optimization", Eq. 4.7 of Algorithm 1
    with the win probability P set to 1 for the chosen and 0 for the rejected [TRL ``sppo_hard``].

    ``L = (h_w - 1/(2 beta))^2 + (h_l + 1/(2 beta))^2``, h = log(pi / pi_ref): each log-ratio is regressed
    on ``(P - 1/2) / beta``. (``beta`` is the paper's 1 / eta.)

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> sppo(z, z, z, z, beta=0.5)[0].tolist()  # (0 - 1)^2 + (0 + 1)^2
        [2.0]
    """
    _check_pair("sppo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = ((chosen_logratios - (1 - 0.5) / beta) ** 2
              + (rejected_logratios - (0 - 0.5) / beta) ** 2)  # Eq. 4.7: (h - (P - 1/2) / beta)^2
    return losses, _reward_metrics(beta, chosen_logratios, rejected_logratios)


@register_loss("pair")
def aot(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """AOT (paired): Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal
    Transport", Sec. 3 (first-order stochastic dominance via sorting) [TRL ``aot``].

    The batch's policy margins ``log pi(y_w) - log pi(y_l)`` and reference margins are sorted separately,
    and the i-th smallest policy margin must beat the i-th smallest reference margin (a 1-d optimal
    transport plan); the logistic loss of DPO (with cDPO label smoothing) is applied to those gaps.

    Because of the sort, ``losses[i]`` belongs to the i-th quantile of the batch, not to example i;
    the loss depends on the whole batch and is only meaningful averaged. ``metrics`` stay per example.

    Example:
        >>> import torch
        >>> losses, _ = aot(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), torch.zeros(2),
        ...                 torch.zeros(2), beta=1.0)
        >>> [round(x, 4) for x in losses.tolist()]  # sorted margins [-1, 1] vs [0, 0]
        [1.3133, 0.3133]
    """
    _check_pair("aot", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_label_smoothing("aot", label_smoothing)
    policy_margins, _ = torch.sort(policy_chosen_logps - policy_rejected_logps, dim=0)
    ref_margins, _ = torch.sort(ref_chosen_logps - ref_rejected_logps, dim=0)
    losses = _smoothed_logistic(beta * (policy_margins - ref_margins), label_smoothing)  # quantile-wise
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def aot_unpaired(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
                 ref_rejected_logps: Tensor, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """AOT (unpaired): Melnyk et al. 2024, Sec. 3, the unpaired form [TRL ``aot_unpaired``].

    The distribution of chosen log-ratios must dominate that of rejected log-ratios: both are sorted
    over the batch and compared quantile by quantile with DPO's logistic loss. As in :func:`aot`,
    ``losses[i]`` is the i-th quantile, not example i.

    Example:
        >>> import torch
        >>> z = torch.zeros(2)
        >>> losses, _ = aot_unpaired(torch.tensor([2.0, 0.0]), torch.tensor([1.0, -1.0]), z, z, beta=1.0)
        >>> [round(x, 4) for x in losses.tolist()]  # sorted [0, 2] vs [-1, 1]
        [0.3133, 0.3133]
    """
    _check_pair("aot_unpaired", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                ref_rejected_logps)
    _check_label_smoothing("aot_unpaired", label_smoothing)
    chosen_sorted, _ = torch.sort(policy_chosen_logps - ref_chosen_logps, dim=0)
    rejected_sorted, _ = torch.sort(policy_rejected_logps - ref_rejected_logps, dim=0)
    losses = _smoothed_logistic(beta * (chosen_sorted - rejected_sorted), label_smoothing)  # quantile-wise
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def apo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, *, beta: float = 0.1, variant: str = "zero") -> LossOutput:
    """APO: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions"
    [TRL ``apo_zero`` / ``apo_down``].

    - ``variant="zero"`` (Eq. 7), when the chosen answers are better than what the model writes now:
      ``L = (1 - sigma(r_w)) + sigma(r_l)``, pushing the chosen likelihood up and the rejected down.
    - ``variant="down"`` (Eq. 8), when even the chosen answers are worse than the model's own:
      ``L = sigma(r_w) + (1 - sigma(r_w - r_l))``, pushing both down, the rejected more.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> apo(z, z, z, z, variant="zero")[0].tolist(), apo(z, z, z, z, variant="down")[0].tolist()
        ([1.0], [1.0])
    """
    _check_pair("apo", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    rewards_chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rewards_rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    if variant == "zero":
        losses = (1 - torch.sigmoid(rewards_chosen)) + torch.sigmoid(rewards_rejected)  # Eq. 7
    elif variant == "down":
        losses = torch.sigmoid(rewards_chosen) + (1 - torch.sigmoid(rewards_chosen - rewards_rejected))  # Eq. 8
    else:
        raise ConfigError(f"apo: variant must be 'zero' or 'down', got '{variant}'")
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


@register_loss("pair")
def discopop(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, *, beta: float = 0.1, tau: float = 0.05,
             f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> LossOutput:
    """DiscoPOP (log-ratio modulated loss): Lu et al. 2024, "Discovering Preference Optimization
    Algorithms with and for Large Language Models", Eq. 5 [TRL ``discopop``].

    With ``rho = beta * h``, a sigmoid gate ``w = sigma(rho / tau)`` blends the logistic loss of DPO
    and the exponential loss: ``L = (1 - w) * (-log sigma(rho)) + w * exp(-rho)``. ``tau`` is 0.05 in
    the paper.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(discopop(z, z, z, z)[0].item(), 4)  # (log 2 + 1) / 2
        0.8466
    """
    _check_pair("discopop", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_scores, rejected_scores = _f_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                               ref_rejected_logps, f_divergence, f_alpha)
    rho = beta * (chosen_scores - rejected_scores)
    gate = torch.sigmoid(rho / tau)
    losses = (1 - gate) * -F.logsigmoid(rho) + gate * torch.exp(-rho)  # Eq. 5
    return losses, _reward_metrics(beta, policy_chosen_logps - ref_chosen_logps,
                                   policy_rejected_logps - ref_rejected_logps)


# ---------------------------------------------------------------------------------------------------------
# KTO (unpaired), and the reference-free losses ORPO, SimPO, CPO
# ---------------------------------------------------------------------------------------------------------


@register_loss("unpaired")
def kto(policy_logps: Tensor, ref_logps: Tensor, desirable: Tensor, kl: Tensor | float, *,
        beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> LossOutput:
    """KTO: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", Eq. 7.

    Unpaired: each completion is labelled desirable or not (``desirable``, bool ``[batch]``). With
    ``r = log(pi / pi_ref)`` and the reference point ``z0 = max(0, kl)``:
    desirable ``L = lambda_D * (1 - sigma(beta * (r - z0)))``,
    undesirable ``L = lambda_U * (1 - sigma(beta * (z0 - r)))``.

    ``kl`` is the batch estimate of KL(pi || pi_ref), passed in explicitly: the paper (and TRL) take
    the mean of ``log pi(y'|x) - log pi_ref(y'|x)`` over mismatched prompt/completion pairs y' from the
    same batch. It is clamped at 0 and detached here, as the paper says the gradient does not flow
    through the reference point. Weights should satisfy
    ``lambda_D * n_D / (lambda_U * n_U)`` in [1, 4/3] (the paper's recommendation).

    Example:
        >>> import torch
        >>> losses, _ = kto(torch.zeros(2), torch.zeros(2), torch.tensor([True, False]), kl=0.0)
        >>> losses.tolist()  # 1 - sigma(0) for both
        [0.5, 0.5]
    """
    _check_same_shape("kto", 1, policy_logps=policy_logps, ref_logps=ref_logps, desirable=desirable)
    logratios = policy_logps - ref_logps
    z0 = torch.as_tensor(kl, dtype=logratios.dtype, device=logratios.device).detach().clamp(min=0)
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (logratios - z0)))  # Eq. 7, y desirable
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratios)))  # Eq. 7, undesirable
    losses = torch.where(desirable.bool(), desirable_losses, undesirable_losses)
    metrics = {"rewards": beta * logratios.detach(), "kl": z0.expand_as(logratios)}
    return losses, metrics


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, switching form at -log 2 to avoid cancellation (Maechler 2012)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


@register_loss("pair", reference_free=True, mean_logps=True)
def orpo(policy_chosen_mean_logps: Tensor, policy_rejected_mean_logps: Tensor, chosen_nll: Tensor, *,
         beta: float = 0.1) -> LossOutput:
    """ORPO: Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
    Eqs. 4-7 (``beta`` is the paper's lambda) [TRL experimental ``ORPOTrainer``].

    ``L = L_SFT - lambda * log sigma(log(odds(y_w) / odds(y_l))))``, with ``odds(y) = p / (1 - p)``.

    Inputs are *mean* token log-probs of each completion (``p = exp(mean log-prob)``, which keeps p < 1),
    and ``chosen_nll`` is the SFT loss of the chosen response per example (TRL averages the token
    cross-entropy over prompt and chosen tokens of the whole batch; average yours the same way to
    match it).

    Example:
        >>> import torch
        >>> losses, metrics = orpo(torch.tensor([-0.5]), torch.tensor([-0.5]), torch.tensor([2.0]), beta=1.0)
        >>> round(losses.item(), 4)  # 2 + log 2
        2.6931
    """
    _check_same_shape("orpo", 1, policy_chosen_mean_logps=policy_chosen_mean_logps,
                      policy_rejected_mean_logps=policy_rejected_mean_logps, chosen_nll=chosen_nll)
    # Eq. 4: log odds(y) = log p - log(1 - p), computed from log p without forming p
    log_odds = ((policy_chosen_mean_logps - policy_rejected_mean_logps)
                - (_log1mexp(policy_chosen_mean_logps) - _log1mexp(policy_rejected_mean_logps)))
    log_sigma_odds = F.logsigmoid(log_odds)  # Eq. 7 (its negative is L_OR)
    losses = chosen_nll - beta * log_sigma_odds  # Eq. 6: L_SFT + lambda * L_OR
    metrics = _reward_metrics(beta, policy_chosen_mean_logps, policy_rejected_mean_logps)
    metrics["log_odds_ratio"] = log_sigma_odds.detach()
    metrics["log_odds_chosen"] = log_odds.detach()
    metrics["nll"] = chosen_nll.detach()
    return losses, metrics


@register_loss("pair", reference_free=True, mean_logps=True)
def simpo(policy_chosen_mean_logps: Tensor, policy_rejected_mean_logps: Tensor, *, beta: float = 2.0,
          gamma: float = 1.0, label_smoothing: float = 0.0) -> LossOutput:
    """SimPO: Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
    Eq. 6 [TRL experimental ``CPOTrainer`` with ``loss_type="simpo"``, ``cpo_alpha=0``].

    ``L = -log sigma(beta / |y_w| log pi(y_w) - beta / |y_l| log pi(y_l) - gamma)``: the reward is the
    length-normalised log-likelihood (pass *mean* token log-probs), and gamma is a target margin. The
    paper tunes beta in [2, 2.5] and gamma / beta in [0.3, 0.8]. ``label_smoothing`` gives the cDPO-style
    smoothed form, as in TRL.

    Example:
        >>> import torch
        >>> losses, _ = simpo(torch.tensor([-1.0]), torch.tensor([-1.5]), beta=2.0, gamma=1.0)
        >>> round(losses.item(), 4)  # -log sigma(2 * 0.5 - 1)
        0.6931
    """
    _check_same_shape("simpo", 1, policy_chosen_mean_logps=policy_chosen_mean_logps,
                      policy_rejected_mean_logps=policy_rejected_mean_logps)
    _check_label_smoothing("simpo", label_smoothing)
    logits = beta * (policy_chosen_mean_logps - policy_rejected_mean_logps) - gamma  # Eq. 6
    losses = _smoothed_logistic(logits, label_smoothing)
    return losses, _reward_metrics(beta, policy_chosen_mean_logps, policy_rejected_mean_logps)


@register_loss("pair", reference_free=True)
def cpo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, chosen_nll: Tensor, *,
        beta: float = 0.1, cpo_alpha: float = 1.0, label_smoothing: float = 0.0, gamma: float = 0.0,
        alpha: float = 0.0) -> LossOutput:
    """CPO: Xu et al. 2024, "Contrastive Preference Optimization", Eq. 3 plus the NLL term of Sec. 3
    [TRL experimental ``CPOTrainer``].

    ``L = -log sigma(beta * (log pi(y_w) - log pi(y_l))) + cpo_alpha * NLL(y_w)``: DPO with a uniform
    reference, kept close to the data by the NLL of the chosen response (``chosen_nll``, ``[batch]``).

    Variants, as in TRL:
    - CPO-SimPO (TRL ``loss_type="simpo"``): pass *mean* token log-probs and a margin ``gamma > 0``;
      the logit becomes ``beta * (...) - gamma``.
    - AlphaPO (Gupta et al. 2025, "AlphaPO: Reward Shape Matters for LLM Alignment"): ``alpha != 0``
      replaces the reward ``log p`` with ``(1 - p^(-alpha)) / alpha``.
    - ``label_smoothing`` gives the cDPO-style smoothed logistic loss.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> round(cpo(z, z, torch.tensor([1.5]), cpo_alpha=1.0)[0].item(), 4)  # log 2 + 1.5
        2.1931
    """
    _check_same_shape("cpo", 1, policy_chosen_logps=policy_chosen_logps,
                      policy_rejected_logps=policy_rejected_logps, chosen_nll=chosen_nll)
    _check_label_smoothing("cpo", label_smoothing)
    if alpha == 0.0:
        chosen_rewards, rejected_rewards = policy_chosen_logps, policy_rejected_logps
    else:  # AlphaPO: r = (1 - p^(-alpha)) / alpha = -expm1(-alpha * log p) / alpha
        chosen_rewards = -torch.expm1(-alpha * policy_chosen_logps) / alpha
        rejected_rewards = -torch.expm1(-alpha * policy_rejected_logps) / alpha
    logits = beta * (chosen_rewards - rejected_rewards) - gamma
    losses = _smoothed_logistic(logits, label_smoothing) + cpo_alpha * chosen_nll  # Eq. 3 + NLL
    metrics = _reward_metrics(beta, chosen_rewards, rejected_rewards)
    metrics["nll"] = chosen_nll.detach()
    return losses, metrics


# ---------------------------------------------------------------------------------------------------------
# Ranked lists and token-level losses (no peer framework ships these; they follow the authors' code)
# ---------------------------------------------------------------------------------------------------------


@register_loss("ranked", reference_free=True)
def rrhf(scores: Tensor, rewards: Tensor, best_nll: Tensor, *, rrhf_weight: float = 100.0) -> LossOutput:
    """RRHF: Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback without
    tears", Eqs. 1-4.

    ``scores`` ``[batch, k]`` are the length-normalised log-probs ``p_i = sum_t log pi(y_i,t) / |y_i|^a``
    of k candidates (Eq. 1; the authors' ``length_penalty`` a is 1, i.e. mean token log-prob), ``rewards``
    ``[batch, k]`` their scores from a reward model or humans, ``best_nll`` ``[batch]`` the token NLL of
    the highest-reward candidate (Eq. 3; the authors average it over the padded length).

    ``L = rrhf_weight * sum_{r_i < r_j} max(0, p_i - p_j) + best_nll`` (Eqs. 2 and 4; 100 is the
    authors' default weight). No reference model. Pairs with equal rewards are ignored.

    Example:
        >>> import torch
        >>> losses, m = rrhf(torch.tensor([[-1.0, -2.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0.5]),
        ...                  rrhf_weight=1.0)
        >>> losses.tolist(), m["ranking_accuracy"].tolist()  # the better candidate scores 1 lower
        ([1.5], [0.0])
    """
    _check_ranked("rrhf", scores, rewards, best_nll)
    # score_gap[b, i, j] = p_i - p_j;  better[b, i, j] = r_j > r_i (candidate j should score higher)
    score_gap = scores.unsqueeze(2) - scores.unsqueeze(1)
    better = rewards.unsqueeze(1) > rewards.unsqueeze(2)
    ranking_loss = (torch.relu(score_gap) * better).sum(dim=(1, 2))  # Eq. 2
    losses = rrhf_weight * ranking_loss + best_nll  # Eq. 4
    n_pairs = better.sum(dim=(1, 2)).clamp(min=1)
    metrics = {
        "ranking_loss": ranking_loss.detach(),
        "nll": best_nll.detach(),
        "ranking_accuracy": ((score_gap.detach() < 0) & better).sum(dim=(1, 2)) / n_pairs,
    }
    return losses, metrics


@register_loss("ranked", reference_free=True)
def pro(scores: Tensor, rewards: Tensor, best_nll: Tensor, *, sft_weight: float = 0.05) -> LossOutput:
    """PRO: Song et al. 2024, "Preference Ranking Optimization for Human Alignment", Sec. 3 (the
    Plackett-Luce ranking loss with reward-gap temperatures, plus SFT on the best response).

    Candidates are sorted best-first by ``rewards``; ``scores`` are mean token log-probs (``[batch, n]``).
    For each position k < n, with temperatures ``T_j = r_k - r_j`` (j > k) and ``T_k = max_j T_j``:
    ``L_k = log(exp(s_k T_k) + sum_{j>k} exp(s_j T_j)) - s_k T_k`` (softmax cross-entropy of the k-th
    best against everything ranked below it). Total ``sum_k L_k + sft_weight * (n-1)^2 * best_nll``.
    The authors use ``sft_weight = 0.05`` and the token-*summed* NLL of the best response for
    ``best_nll``. With n = 2, ``L = -log sigma(T * (s_1 - s_2))``: pairwise logistic with temperature
    equal to the reward gap.

    Example:
        >>> import torch
        >>> losses, _ = pro(torch.tensor([[-1.0, -1.0]]), torch.tensor([[2.0, 1.0]]), torch.tensor([0.0]))
        >>> round(losses.item(), 4)  # equal scores -> log 2
        0.6931
    """
    _check_ranked("pro", scores, rewards, best_nll)
    n = scores.shape[1]
    order = torch.sort(rewards, dim=1, descending=True, stable=True).indices
    s = scores.gather(1, order)  # best first
    r = rewards.gather(1, order)
    ranking_loss = torch.zeros_like(best_nll)
    for k in range(n - 1):
        temperatures = r[:, k : k + 1] - r[:, k + 1 :]  # T_j = r_k - r_j, [batch, n - k - 1]
        t_top = temperatures.max(dim=1, keepdim=True).values  # T_k
        logits = torch.cat([s[:, k : k + 1] * t_top, s[:, k + 1 :] * temperatures], dim=1)
        ranking_loss = ranking_loss + torch.logsumexp(logits, dim=1) - logits[:, 0]  # L_k
    losses = ranking_loss + sft_weight * (n - 1) ** 2 * best_nll
    metrics = {"ranking_loss": ranking_loss.detach(), "nll": best_nll.detach()}
    return losses, metrics


@register_loss("ranked", reference_free=True)
def stable_alignment(nll: Tensor, ratings: Tensor, *, ratio: float = 0.5, margin: float = 1.0,
                     rating_scale: float = 7.0, max_flow: bool = False) -> LossOutput:
    """Stable Alignment: Liu et al. 2023, "Training Socially Aligned Language Models on Simulated Social
    Interactions", Sec. 3.3 (the contrastive preference optimisation loss of the authors' code).

    ``nll`` ``[batch, k]`` is each rated response's mean token cross-entropy, ``ratings`` ``[batch, k]``
    its rating. With b the best-rated response (first on ties):
    ``L = nll_b + ratio * max(0, mean_{i != b}(nll_b - nll_i + margin * (r_b - r_i) / rating_scale))``,
    i.e. SFT on the best response plus a hinge that wants every worse response's NLL to exceed the best
    one's by a margin proportional to the rating gap. ``max_flow=True`` takes the max over i instead of
    the mean (the authors' ``max_flow`` flag). Defaults are the authors'.

    The authors' code looks the worse ratings up in the *sorted* list with *unsorted* indices; we use
    the rating of each response itself, which is what the paper describes.

    Example:
        >>> import torch
        >>> losses, _ = stable_alignment(torch.tensor([[1.0, 1.0, 3.0]]), torch.tensor([[7.0, 0.0, 0.0]]))
        >>> losses.tolist()  # 1 + 0.5 * max(0, mean(1 - 1 + 1, 1 - 3 + 1))
        [1.0]
    """
    _check_ranked("stable_alignment", nll, ratings)
    k = nll.shape[1]
    best = ratings.argmax(dim=1, keepdim=True)  # [batch, 1]
    nll_best = nll.gather(1, best)
    penalties = nll_best - nll + margin * (ratings.gather(1, best) - ratings) / rating_scale  # [batch, k]
    others = torch.ones_like(nll, dtype=torch.bool).scatter(1, best, False)
    if max_flow:
        penalty = penalties.masked_fill(~others, -math.inf).amax(dim=1)
    else:
        penalty = (penalties * others).sum(dim=1) / (k - 1)
    losses = nll_best.squeeze(1) + ratio * torch.relu(penalty)
    metrics = {"nll": nll_best.squeeze(1).detach(), "penalty": torch.relu(penalty).detach()}
    return losses, metrics


@register_loss("ranked")
def alol(policy_logps: Tensor, ref_logps: Tensor, rewards: Tensor, *, clip_epsilon: float = 0.2) -> LossOutput:
    """A-LoL: Baheti et al. 2024, "Leftover Lunch: Advantage-based Offline Reinforcement Learning for Language
    Models", Eq. 4, with the sequence-level importance weight as the authors' code computes it.

    Every response in the data gets its own weight instead of a keep-or-drop decision: its advantage
    ``A(x, y) = R(x, y) - V(x)`` says how much better it is than what the data's policy usually writes for ``x``.
    With k scored responses per prompt, ``V(x)`` is their mean reward (a Monte Carlo value of the data's policy;
    the authors fit a value head on the reference instead). Only the positive-advantage "leftover" responses
    are learned from (the authors clamp A at 0). The offline policy gradient
    ``E_{y~data}[A · r(θ) · ∇ log π_θ(y|x)]``, with ``r = π_θ(y|x) / π_ref(y|x)`` correcting for the data having come
    from the reference, becomes a weighted NLL whose weight is held fixed within the step and clipped:

        L = - Σ_i max(A_i, 0) · sg[clip(r_i, 1 - ε, 1 + ε)] · log π_θ(y_i|x)      (per prompt, over its k responses)

    ``policy_logps``, ``ref_logps``, ``rewards``: ``[batch, k]`` summed log-probs and scores.

    Example:
        >>> import torch
        >>> logps = torch.zeros(1, 3, requires_grad=True)
        >>> losses, m = alol(logps, torch.zeros(1, 3), torch.tensor([[2.0, 1.0, 0.0]]))
        >>> losses.sum().backward(); logps.grad.tolist()   # r = 1: the above-average response alone is pulled up
        [[-1.0, -0.0, -0.0]]
    """
    _check_same_shape("alol", 2, policy_logps=policy_logps, ref_logps=ref_logps, rewards=rewards)
    _check_finite("alol", rewards=rewards)
    advantages = (rewards - rewards.mean(dim=1, keepdim=True)).clamp(min=0.0)  # A = R − V(x), leftovers only
    # the log-ratio is bounded so that exp() stays finite; the clip below decides what counts anyway
    ratio = torch.exp((policy_logps - ref_logps).detach().clamp(-20.0, 20.0))
    weight = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
    losses = -(advantages * weight * policy_logps).sum(dim=1)
    clipped = ((ratio - 1.0).abs() > clip_epsilon).float()
    return losses, {"abs_advantage": advantages.mean(dim=1), "ratio": ratio.mean(dim=1),
                    "clipped_fraction": clipped.mean(dim=1)}


@register_loss("token", reference_free=True)
def cringe(logits: Tensor, labels: Tensor, positive: Tensor, *, ct_weight: float = 1.0,
           num_pos_predictions: int = 1, ignore_index: int = -100,
           generator: torch.Generator | None = None) -> LossOutput:
    """CRINGE: Adolphs et al. 2022, "The CRINGE Loss: Learning what language not to model", Sec. 3
    (as in the authors' ParlAI ``ContrastiveCrossEntropyLoss``).

    ``logits`` ``[batch, seq, vocab]`` predict ``labels`` ``[batch, seq]`` (already shifted; positions
    equal to ``ignore_index`` are skipped). ``positive`` ``[batch]`` says whether each sequence is a
    positive example (token cross-entropy) or a negative one (contrastive term). For every token y of a
    negative sequence, take the model's top-(k+1) predictions (k = ``num_pos_predictions``), drop y (or
    the (k+1)-th if y is not among them), sample a positive token y+ from the softmax over the k left,
    and push y below y+ with a two-way cross-entropy: ``softplus(s_y - s_y+)``. Gradients flow through
    both logits, as in the authors' default. Pass a seeded ``generator`` for reproducible samples.

    ``losses`` are the per-sequence mean over non-ignored tokens of ``CE`` (positives) or
    ``ct_weight * contrastive`` (negatives); ParlAI averages over all tokens of the batch instead, i.e.
    weights sequences by length.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[2.0, 1.0, 0.0]]])  # one token; the model prefers token 0, then 1
        >>> losses, _ = cringe(logits, torch.tensor([[0]]), torch.tensor([False]))
        >>> round(losses.item(), 4)  # softplus(2 - 1): y = 0 is pushed below y+ = 1
        1.3133
    """
    if logits.ndim != 3 or logits.shape[:2] != labels.shape:
        raise DataError(f"logits {tuple(logits.shape)} must be [batch, seq, vocab] with labels "
                        f"{tuple(labels.shape)} as [batch, seq]", source="cringe", field="labels")
    if tuple(positive.shape) != (labels.shape[0],):
        raise DataError(f"expected shape ({labels.shape[0]},), got {tuple(positive.shape)}", source="cringe",
                        field="positive")
    if not 1 <= num_pos_predictions < logits.shape[-1]:
        raise ConfigError(f"cringe: num_pos_predictions must lie in [1, vocab size), got {num_pos_predictions}")
    valid = labels != ignore_index
    targets = labels.masked_fill(~valid, 0).unsqueeze(-1)  # [batch, seq, 1]
    target_logits = logits.gather(-1, targets).squeeze(-1)  # s_y, [batch, seq]
    token_ce = torch.logsumexp(logits, dim=-1) - target_logits  # -log softmax(s)_y

    top_logits, top_tokens = logits.topk(num_pos_predictions + 1, dim=-1)  # [batch, seq, k + 1]
    is_target = top_tokens == targets
    dropped = is_target.clone()
    dropped[..., -1] |= ~is_target.any(dim=-1)  # y not in the top k+1: drop the (k+1)-th so k remain
    sample_logits = top_logits.detach().masked_fill(dropped, -math.inf)
    probs = torch.softmax(sample_logits, dim=-1).reshape(-1, num_pos_predictions + 1)
    choice = torch.multinomial(probs, 1, generator=generator).reshape(target_logits.shape + (1,))
    positive_logits = top_logits.gather(-1, choice).squeeze(-1)  # s_y+, [batch, seq]
    token_ct = F.softplus(target_logits - positive_logits)  # -log(e^s+ / (e^s+ + e^s_y))

    per_token = torch.where(positive.bool().unsqueeze(1), token_ce, ct_weight * token_ct)
    n_tokens = valid.sum(dim=1)
    losses = (per_token * valid).sum(dim=1) / n_tokens.clamp(min=1)
    metrics = {
        "ce_loss": ((token_ce * valid).sum(dim=1) / n_tokens.clamp(min=1)).detach(),
        "ct_loss": ((token_ct * valid).sum(dim=1) / n_tokens.clamp(min=1)).detach(),
        "num_tokens": n_tokens,
    }
    return losses, metrics
