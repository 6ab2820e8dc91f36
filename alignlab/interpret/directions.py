"""Directions in activation space: mean difference, PCA, projection, and fits of a steering sweep.

Pure functions of tensors ``[n, d_model]`` (one activation per prompt, usually the residual stream at the
last prompt token), usable on any cache. Conventions from the literature:

- **Mean difference** (Arditi et al. 2024, "Refusal in language models is mediated by a single direction",
  eq. 1): ``r = mean(a | harmful) − mean(a | harmless)``. The difference of means is the robust default for
  contrast sets; it is the direction a linear probe finds when the classes share a spherical covariance.
- **PCA** (Schramowski et al. 2022, the "moral direction"): the first principal component of the
  activations of both classes together, its sign fixed by an anchor (the harmful class's mean projects
  higher). Centring the two classes *together* keeps the class difference in the data (centring each
  paired difference would remove exactly the mean difference, see ``shared/REFERENCES.md``).
- **Steering strength** is reported as ‖α·v‖ relative to the typical residual norm at that layer.
- **Alignment vs helpfulness** (Wolf et al. 2024, "Tradeoffs between alignment and helpfulness in language
  models with representation engineering"): alignment grows linearly with the injected norm and
  helpfulness falls with its square; :func:`fit_power` fits ``y = a + b·x^p`` and reports R².

Example:
    >>> import torch
    >>> pos, neg = torch.tensor([[2.0, 0.0], [4.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    >>> mean_difference(pos, neg).tolist()
    [3.0, -1.0]
    >>> project_out(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 3.0])).tolist()
    [[1.0, 0.0]]
    >>> round(fit_power([0, 1, 2, 3], [1, 3, 5, 7], power=1).r2, 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignlab.errors import InterpretError


def _check_matrix(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2 or len(x) == 0:
        raise InterpretError(f"{name} must be a non-empty [n, d_model] matrix, got shape {tuple(x.shape)}")


def unit(v: torch.Tensor) -> torch.Tensor:
    """``v / ‖v‖`` (a zero vector is an error: it has no direction)."""
    norm = v.norm()
    if norm == 0:
        raise InterpretError("the direction is the zero vector: the two activation sets have the same mean")
    return v / norm


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``mean(positive) − mean(negative)`` over rows: [n, d], [m, d] → [d] (not normalised)."""
    _check_matrix(positive, "positive")
    _check_matrix(negative, "negative")
    if positive.shape[1] != negative.shape[1]:
        raise InterpretError(f"activation widths differ: {positive.shape[1]} vs {negative.shape[1]}")
    return positive.mean(0) - negative.mean(0)


@dataclass
class PCA:
    """Principal components of a set of activations."""

    mean: torch.Tensor
    """[d] the mean that was subtracted (zeros when not centred)"""
    components: torch.Tensor
    """[k, d] unit rows, by decreasing variance"""
    explained: torch.Tensor
    """[k] share of the total (centred) second moment each component carries"""

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``x`` [n, d] on the components: [n, k]."""
        return (x - self.mean) @ self.components.T


def pca(x: torch.Tensor, k: int = 1, *, center: bool = True) -> PCA:
    """The top ``k`` principal components of ``x`` [n, d] by SVD (``center=False``: of the raw second moment)."""
    _check_matrix(x, "activations")
    if not 1 <= k <= min(x.shape):
        raise InterpretError(f"k must be in [1, {min(x.shape)}] for {x.shape[0]} activations of width {x.shape[1]}")
    x = x.double()
    mean = x.mean(0) if center else torch.zeros(x.shape[1], dtype=x.dtype)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    power = s**2
    return PCA(mean.float(), vh[:k].float(), (power[:k] / power.sum()).float())


def project_out(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x − (x·v̂) v̂`` on the last dimension: what is left of ``x`` [..., d] with no component along ``v`` [d]."""
    direction = unit(v).to(x.dtype)
    return x - (x @ direction)[..., None] * direction


def signed_first_component(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The first principal component of both sets together (centred), signed so that ``positive`` projects higher
    on average (the anchor of Schramowski et al.): [d], unit."""
    component = pca(torch.cat([positive, negative]), 1).components[0]
    sign = torch.sign((positive.mean(0) - negative.mean(0)) @ component)
    return component * (sign if sign != 0 else 1.0)


def midpoint_threshold(scores_pos: torch.Tensor, scores_neg: torch.Tensor) -> float:
    """The threshold halfway between the two classes' mean scores (a one-dimensional nearest-mean classifier)."""
    return float((scores_pos.mean() + scores_neg.mean()) / 2)


def separation_accuracy(direction: torch.Tensor, threshold: float, positive: torch.Tensor,
                        negative: torch.Tensor) -> float:
    """Share of rows classified right by ``x·direction > threshold`` (positive) vs ``≤`` (negative)."""
    hits = int((positive @ direction > threshold).sum()) + int((negative @ direction <= threshold).sum())
    return hits / (len(positive) + len(negative))


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random (train, test) split of ``range(n)`` with at least one row on each side."""
    if n < 2:
        raise InterpretError(f"need at least 2 examples to split into train and test, got {n}")
    if not 0 < test_fraction < 1:
        raise InterpretError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    return order[n_test:], order[:n_test]


@dataclass
class PowerFit:
    """Least-squares fit ``y ≈ intercept + slope · x**power``."""

    power: float
    intercept: float
    slope: float
    r2: float
    """coefficient of determination on the fitted points (1 − residual SS / total SS)"""

    def __call__(self, x: float) -> float:
        return self.intercept + self.slope * x**self.power


def fit_power(x: Sequence[float], y: Sequence[float], *, power: float) -> PowerFit:
    """Fit ``y = a + b·x^power`` by least squares and report R² (``power`` 1: linear in x, 2: in x²)."""
    if len(x) != len(y) or len(x) < 3:
        raise InterpretError(f"a fit needs at least 3 paired points, got {len(x)} x and {len(y)} y")
    xs = torch.tensor([float(v) ** power for v in x], dtype=torch.float64)
    ys = torch.tensor([float(v) for v in y], dtype=torch.float64)
    design = torch.stack([torch.ones_like(xs), xs], dim=1)
    coef = torch.linalg.lstsq(design, ys[:, None]).solution[:, 0]
    residual = ys - design @ coef
    total = ((ys - ys.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if total > 0 else 1.0
    return PowerFit(power, float(coef[0]), float(coef[1]), r2)
