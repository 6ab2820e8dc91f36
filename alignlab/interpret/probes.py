"""Linear probes: logistic regression on activations, scored on held-out rows.

A probe asks whether a property (harmful request, "knows the answer") is linearly readable from an
activation. Its weight vector is a direction one can steer along (inference-time intervention, Li et al.
2023, shifts activations along a probe's direction). Accuracy is always measured on rows the probe was not
fitted on; train accuracy alone says little in 128 dimensions.

Example:
    >>> import torch
    >>> x = torch.cat([torch.randn(40, 8) + 3, torch.randn(40, 8) - 3])
    >>> y = torch.cat([torch.ones(40), torch.zeros(40)])
    >>> result = held_out_probe(x, y, test_fraction=0.25, seed=0)
    >>> result.test_accuracy
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignlab.errors import InterpretError
from alignlab.interpret.directions import split_indices


@dataclass
class LinearProbe:
    """``p(y = 1 | x) = σ(x·weight + bias)``."""

    weight: torch.Tensor
    """[d] in the activation space (unscaled inputs)"""
    bias: float

    @property
    def direction(self) -> torch.Tensor:
        """The unit normal of the decision boundary, pointing to class 1: [d]."""
        return self.weight / self.weight.norm()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.weight + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(((self.logits(x) > 0).float() == y.float()).float().mean())


def fit_probe(x: torch.Tensor, y: torch.Tensor, *, l2: float = 1e-2, max_iter: int = 500) -> LinearProbe:
    """Fit a logistic-regression probe on ``x`` [n, d] and binary labels ``y`` [n] (L2 penalty ``l2`` on the
    weight, applied to standardised features so one strength suits any activation scale).

    Solved with L-BFGS in float64; the weight is mapped back to the raw activation space.
    """
    if x.dim() != 2 or y.shape != (len(x),):
        raise InterpretError(f"a probe needs x [n, d] and y [n]; got {tuple(x.shape)} and {tuple(y.shape)}")
    labels = y.double()
    if not bool(((labels == 0) | (labels == 1)).all()) or labels.min() == labels.max():
        raise InterpretError("probe labels must be 0/1 with both classes present")
    xs = x.double()
    mean, scale = xs.mean(0), xs.std(0).clamp_min(1e-8)
    z = (xs - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, labels) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    optimiser.step(closure)
    weight = (w / scale).detach()  # z·w + b = x·(w/scale) + (b − mean·(w/scale))
    return LinearProbe(weight.float(), float(b.detach() - mean @ weight))


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded (train, test) split of the rows of each label value separately, so both sides hold every class."""
    train: list[int] = []
    test: list[int] = []
    for value in torch.unique(y).tolist():
        rows = (y == value).nonzero().flatten().tolist()
        tr, te = split_indices(len(rows), test_fraction, seed)
        train += [rows[i] for i in tr]
        test += [rows[i] for i in te]
    return train, test


@dataclass
class ProbeResult:
    probe: LinearProbe
    train_accuracy: float
    test_accuracy: float
    n_train: int
    n_test: int


def held_out_probe(x: torch.Tensor, y: torch.Tensor, *, test_fraction: float = 0.25, seed: int = 0,
                   l2: float = 1e-2) -> ProbeResult:
    """Fit a probe on a seeded random part of each class's rows and score it on the rest (stratified)."""
    train, test = stratified_split(y, test_fraction, seed)
    probe = fit_probe(x[train], y[train], l2=l2)
    return ProbeResult(probe, probe.accuracy(x[train], y[train]), probe.accuracy(x[test], y[test]),
                       len(train), len(test))
