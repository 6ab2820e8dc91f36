"""Superposition toy models (Elhage et al. 2022, "Toy Models of Superposition", §2–§4).

``n`` features ``x ∈ [0, 1]ⁿ``, each zero with probability ``S`` (the sparsity) and otherwise uniform on
[0, 1], pass through ``m < n`` hidden dimensions and back:

    h = W x                        W: [m, n]
    x' = ReLU(Wᵀ h + b)            (ReLU output model)   or   x' = Wᵀ h + b   (linear model)
    L = E_x Σᵢ Iᵢ (xᵢ − x'ᵢ)²      importance Iᵢ = decayⁱ

Per feature ``i`` (column ``Wᵢ``) the paper reads off its norm ``‖Wᵢ‖`` (≈1: represented, ≈0: not) and its
interference with the others ``Σ_{j≠i} (Ŵᵢ · Wⱼ)²`` (0: an orthogonal, dedicated direction; large: it shares
dimensions, i.e. is superposed). Here a feature is *represented* when ``‖Wᵢ‖ ≥ 0.5`` and *superposed* when it
is represented and its interference is ``≥ 0.1``. The paper's finding: the linear model represents the ``m``
most important features orthogonally and drops the rest at every sparsity (it never superposes); the ReLU
model superposes more features the sparser they are.

The phase diagram (§4) is the paper's smallest case, ``n = 2`` features in ``m = 1`` dimension, feature 1 of
importance 1 and feature 2 of importance ``r``, over a grid of ``r`` and feature density ``1 − S``: feature 2
is *not represented*, has the *dedicated* dimension (feature 1 dropped), or both are *superposed*
(antipodal, ``W = [w, −w]``).

Every model of a sweep trains at once as one batched "instance" dimension, as in the paper's code.

Example::

    >>> x = sample_features(torch.tensor([0.0, 1.0]), n_features=3, batch=2, generator=torch.Generator().manual_seed(0))
    >>> x.shape, bool((x[1] == 0).all())     # instance 1 has sparsity 1: every feature is zero
    (torch.Size([2, 2, 3]), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.errors import InterpretError

REPRESENTED_NORM = 0.5
SUPERPOSED_INTERFERENCE = 0.1


def sample_features(sparsity: torch.Tensor, n_features: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``[instances, batch, n_features]`` inputs: uniform on [0, 1], each zeroed with its instance's ``sparsity``."""
    values = torch.rand(len(sparsity), batch, n_features, generator=generator)
    present = torch.rand(len(sparsity), batch, n_features, generator=generator) >= sparsity[:, None, None]
    return values * present


class ToyModels(torch.nn.Module):
    """A batch of independent toy models: ``W [instances, m, n]``, ``b [instances, n]``; ``relu [instances]``
    chooses each instance's output (ReLU or linear)."""

    def __init__(self, instances: int, n_features: int, n_hidden: int, relu: torch.Tensor):
        super().__init__()
        self.W = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(instances, n_hidden, n_features)))
        self.b = torch.nn.Parameter(torch.zeros(instances, n_features))
        self.register_buffer("relu", relu.bool())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [instances, batch, n] -> [instances, batch, n]
        h = torch.bmm(x, self.W.transpose(1, 2))  # [instances, batch, m]
        out = torch.bmm(h, self.W) + self.b[:, None, :]
        return torch.where(self.relu[:, None, None], torch.relu(out), out)


def importance_weighted_mse(x: torch.Tensor, x_hat: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """The paper's loss ``E_x Σᵢ Iᵢ (xᵢ − x'ᵢ)²`` per instance: ``[instances, batch, n]`` → ``[instances]``
    (``importance [instances, n]``)."""
    return (importance[:, None, :] * (x - x_hat) ** 2).sum(-1).mean(1)


@torch.no_grad()
def feature_geometry(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-feature norm ``‖Wᵢ‖`` and interference ``Σ_{j≠i} (Ŵᵢ·Wⱼ)²`` of ``W [instances, m, n]`` (each
    ``[instances, n]``), the superposed/represented masks, and dimensions per feature ``m / ‖W‖_F²``."""
    norms = W.norm(dim=1)
    unit = W / norms.clamp(min=1e-6)[:, None, :]
    overlap = torch.einsum("ihf,ihg->ifg", unit, W) ** 2  # [instances, i, j] = (Ŵᵢ · Wⱼ)²
    interference = overlap.sum(-1) - overlap.diagonal(dim1=1, dim2=2)
    represented = norms >= REPRESENTED_NORM
    return {"norm": norms, "interference": interference, "represented": represented,
            "superposed": represented & (interference >= SUPERPOSED_INTERFERENCE),
            "dims_per_feature": W.shape[1] / (W ** 2).sum(dim=(1, 2))}


def train_toy_models(sparsity: torch.Tensor, importance: torch.Tensor, relu: torch.Tensor, n_hidden: int, *,
                     steps: int, batch: int, lr: float, seed: int, progress: bool = False) -> ToyModels:
    """Train one toy model per instance (``sparsity [I]``, ``importance [I, n]``, ``relu [I]``) with Adam."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = ToyModels(len(sparsity), importance.shape[1], n_hidden, relu)
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="superposition", disable=not progress):
        x = sample_features(sparsity, importance.shape[1], batch, generator)
        loss = importance_weighted_mse(x, model(x), importance).sum()  # instances are independent: sum their losses
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def train_best_of(sparsity: torch.Tensor, importance: torch.Tensor, relu: torch.Tensor, n_hidden: int, *,
                  restarts: int, steps: int, batch: int, lr: float, seed: int, eval_batch: int = 8192,
                  progress: bool = False) -> torch.Tensor:
    """``W [cells, m, n]`` of the lowest-loss model of ``restarts`` random initialisations per cell (the paper
    also keeps the best of several runs: gradient descent can stop in a local minimum, e.g. an important
    feature left out)."""
    with torch.enable_grad():
        model = train_toy_models(sparsity.repeat_interleave(restarts), importance.repeat_interleave(restarts, 0),
                                 relu.repeat_interleave(restarts), n_hidden, steps=steps, batch=batch, lr=lr,
                                 seed=seed, progress=progress)
    x = sample_features(sparsity.repeat_interleave(restarts), importance.shape[1], eval_batch,
                        torch.Generator().manual_seed(seed + 2))
    loss = importance_weighted_mse(x, model(x), importance.repeat_interleave(restarts, 0)).view(-1, restarts)
    best = loss.argmin(-1) + torch.arange(len(sparsity)) * restarts
    return model.W.detach()[best]


@dataclass
class SuperpositionConfig:
    """The superposition experiment: a sweep of n features through m dimensions, and the 2-in-1 phase diagram."""

    n_features: int = 20
    """features n"""
    n_hidden: int = 5
    """hidden dimensions m < n"""
    sparsities: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.7, 0.9, 0.95, 0.97, 0.99])
    """feature sparsities S swept (probability that a feature is zero; sparser needs more steps to converge)"""
    importance_decays: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9])
    """importance I_i = decay^i, swept (below 1: with equal importances the linear model's optimum, any rank-m
    projection, is not unique and its features are not axis-aligned)"""
    phase_importances: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0])
    """phase diagram: relative importance r of feature 2 (feature 1 has importance 1)"""
    phase_densities: list[float] = field(default_factory=lambda: [1.0, 0.3, 0.1, 0.03, 0.01])
    """phase diagram: feature density 1 - S"""
    restarts: int = 2
    """random initialisations per model of the sweep; the lowest-loss one is kept"""
    phase_restarts: int = 4
    """random initialisations per cell of the phase diagram (tiny models: more restarts are cheap)"""
    steps: int = 3000
    """Adam steps"""
    batch: int = 256
    """inputs per step"""
    lr: float = 1e-2
    """Adam learning rate"""
    seed: int = 0
    """random seed"""

    def __post_init__(self) -> None:
        if not 0 < self.n_hidden < self.n_features:
            raise InterpretError(f"superposition needs 0 < n_hidden < n_features, got {self.n_hidden}, {self.n_features}")
        if any(not 0 <= s < 1 for s in self.sparsities):
            raise InterpretError(f"sparsities must lie in [0, 1), got {self.sparsities}")
        if any(not 0 < d <= 1 for d in self.phase_densities):
            raise InterpretError(f"phase_densities must lie in (0, 1], got {self.phase_densities}")


def run_sweep(config: SuperpositionConfig, *, progress: bool = False) -> dict[str, Any]:
    """Linear and ReLU models at every (sparsity, importance decay): per-feature norms and interference, and the
    count of represented and superposed features of each."""
    cells = [(kind, decay, s) for kind in ("linear", "relu") for decay in config.importance_decays
             for s in config.sparsities]
    sparsity = torch.tensor([s for _, _, s in cells])
    importance = torch.stack([torch.tensor(decay) ** torch.arange(config.n_features) for _, decay, _ in cells])
    relu = torch.tensor([kind == "relu" for kind, _, _ in cells])
    W = train_best_of(sparsity, importance, relu, config.n_hidden, restarts=config.restarts, steps=config.steps,
                      batch=config.batch, lr=config.lr, seed=config.seed, progress=progress)
    geometry = feature_geometry(W)
    return {"cells": [{"model": kind, "importance_decay": decay, "sparsity": s,
                       "n_represented": int(geometry["represented"][i].sum()),
                       "n_superposed": int(geometry["superposed"][i].sum()),
                       "dims_per_feature": float(geometry["dims_per_feature"][i]),
                       "norm": geometry["norm"][i].tolist(), "interference": geometry["interference"][i].tolist()}
                      for i, (kind, decay, s) in enumerate(cells)]}


def classify_phase(W: torch.Tensor) -> list[str]:
    """For ``W [instances, 1, 2]`` (two features in one dimension): what feature 2 gets in each instance."""
    represented = W.norm(dim=1) >= REPRESENTED_NORM  # [instances, 2]
    return ["superposed" if both else "dedicated" if second else "not represented"
            for both, second in zip((represented[:, 0] & represented[:, 1]).tolist(), represented[:, 1].tolist())]


def run_phase_diagram(config: SuperpositionConfig, *, progress: bool = False) -> dict[str, Any]:
    """Two features in one dimension (ReLU and linear) over relative importance × density: feature 2's phase."""
    cells = [(kind, r, d) for kind in ("linear", "relu") for r in config.phase_importances for d in config.phase_densities]
    sparsity = torch.tensor([1 - d for _, _, d in cells])
    importance = torch.tensor([[1.0, r] for _, r, _ in cells])
    relu = torch.tensor([kind == "relu" for kind, _, _ in cells])
    W = train_best_of(sparsity, importance, relu, 1, restarts=config.phase_restarts, steps=config.steps,
                      batch=config.batch, lr=config.lr, seed=config.seed, progress=progress)
    phases = classify_phase(W)
    return {"cells": [{"model": kind, "relative_importance": r, "density": d, "phase": phase, "W": W[i, 0].tolist()}
                      for i, ((kind, r, d), phase) in enumerate(zip(cells, phases))]}
