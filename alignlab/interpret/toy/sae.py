"""Sparse autoencoders on activations: the standard L1 SAE and TopK, with dead-feature resampling.

Standard (Bricken et al. 2023 "Towards Monosemanticity"; L1 weighted by decoder norms as in Anthropic's
April 2024 update, SAELens's ``standard`` SAE):

    f = ReLU((x − b_dec) W_enc + b_enc)            x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ Σᵢ fᵢ ‖W_dec,ᵢ‖

TopK (Gao et al. 2024): ``f = TopK_k(ReLU((x − b_dec) W_enc + b_enc))`` (all but the k largest set to zero),
``L = ‖x − x̂‖²``, decoder rows kept at unit norm.

Activations are scaled by one constant so that ``E‖x‖² = d_in`` (SAELens's ``expected_average_only_in``), which
makes λ mean the same at every hook point; :meth:`SparseAutoencoder.forward` takes and returns unscaled
activations.

**Dead-feature resampling** (Bricken et al., "Neuron resampling"): at the given steps, features that did not fire
on any input since the last resampling are re-initialised: the decoder row becomes a unit-norm input drawn
with probability ∝ its squared reconstruction error, the encoder column that input scaled to 0.2 × the mean
encoder norm of the live features, the encoder bias 0, and their Adam moments are reset.

**Metrics, defined as SAELens 6's ``evals.py`` defines them** (names in brackets are SAELens's keys):

- ``l0`` [``l0``]: mean over tokens of the number of features with ``f > 0``;
- ``explained_variance`` [``explained_variance``]: ``1 − E‖x − x̂‖² / E‖x − E[x]‖²`` (residual sum of squares over
  the total variance summed over dimensions; SAELens's "new, correct" formula, not ``explained_variance_legacy``);
- ``ce_loss_score`` [``ce_loss_score``], the CE loss recovered: ``(CE_ablation − CE_sae) / (CE_ablation −
  CE_clean)``, with the hook point zero-ablated for ``CE_ablation`` and replaced by ``x̂`` for ``CE_sae``;
- ``dead_fraction``: the fraction of features whose density (fraction of tokens with ``f > 0``, SAELens's
  ``feature_density``) is 0 on the evaluation tokens; training also reports the fraction that has not fired
  in the last ``dead_feature_window`` steps (SAELens's trainer's ``dead_features``, divided by ``d_sae``).

Example::

    >>> sae = SparseAutoencoder.identity(3)      # f = ReLU([x, −x]), x̂ = f₁ − f₂ = x exactly
    >>> x = torch.tensor([[1.0, -2.0, 0.5]])
    >>> torch.equal(sae(x), x)
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from alignlab.errors import InterpretError


@dataclass
class SAEConfig:
    """Shape and sparsity mechanism of a sparse autoencoder."""

    d_in: int = 128
    """width of the activations it reads (the hook point's last dimension)"""
    d_sae: int = 1024
    """number of features (dictionary size)"""
    architecture: Literal["standard", "topk"] = "standard"
    """standard (ReLU + L1 penalty) or topk (the k largest pre-activations)"""
    k: int = 16
    """active features per token (topk only)"""

    def __post_init__(self) -> None:
        if self.architecture not in ("standard", "topk"):
            raise InterpretError(f"unknown SAE architecture '{self.architecture}'; valid: standard, topk")
        if self.d_in < 1 or self.d_sae < 1 or (self.architecture == "topk" and not 0 < self.k <= self.d_sae):
            raise InterpretError(f"SAE needs d_in, d_sae >= 1 and 0 < k <= d_sae; got {self.d_in}, {self.d_sae}, {self.k}")


class SparseAutoencoder(nn.Module):
    """``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` and the input scale."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        W_dec = torch.randn(cfg.d_sae, cfg.d_in)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # tied at initialisation (Conerly et al.; Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))

    @classmethod
    def identity(cls, d_in: int) -> SparseAutoencoder:
        """An exact identity map: features ``ReLU([x, −x])``, decoder ``[I; −I]`` (for checking the metrics)."""
        sae = cls(SAEConfig(d_in=d_in, d_sae=2 * d_in))
        eye = torch.eye(d_in)
        with torch.no_grad():
            sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
            sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
            sae.b_enc.zero_()
            sae.b_dec.zero_()
        return sae

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of unscaled activations ``x [..., d_in]``."""
        pre = (x * self.input_scale - self.b_dec) @ self.W_enc + self.b_enc
        acts = torch.relu(pre)
        if self.cfg.architecture == "topk":
            top = acts.topk(self.cfg.k, dim=-1)
            acts = torch.zeros_like(acts).scatter(-1, top.indices, top.values)
        return acts

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Unscaled reconstruction ``[..., d_in]`` of feature activations ``f``."""
        return (f @ self.W_dec + self.b_dec) / self.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def save(self, directory: str | Path) -> Path:
        """``cfg.json`` and ``sae.safetensors`` in ``directory`` (SAELens's layout of file names)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "sae.safetensors"))
        (directory / "cfg.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SparseAutoencoder:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / "cfg.json").exists():
            raise InterpretError(f"{directory}: no cfg.json (not a saved sparse autoencoder)")
        sae = cls(SAEConfig(**json.loads((directory / "cfg.json").read_text())))
        sae.load_state_dict(load_file(str(directory / "sae.safetensors")))
        return sae


# ---- losses and metrics (pure functions of tensors) ------------------------------------------------------

def sae_loss(sae: SparseAutoencoder, x: torch.Tensor, l1_coefficient: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over tokens of ``‖x − x̂‖²`` (in the scaled space) plus, for the standard SAE, ``λ Σᵢ fᵢ ‖W_dec,ᵢ‖``.
    Returns the loss and the feature activations ``[tokens, d_sae]``."""
    f = sae.encode(x)
    scaled = x * sae.input_scale
    mse = ((f @ sae.W_dec + sae.b_dec - scaled) ** 2).sum(-1).mean()
    if sae.cfg.architecture == "topk":
        return mse, f
    return mse + l1_coefficient * (f * sae.W_dec.norm(dim=1)).sum(-1).mean(), f


def l0(f: torch.Tensor) -> float:
    """SAELens ``l0``: mean over tokens of the number of active features (``f > 0``); ``f [tokens, d_sae]``."""
    return float((f > 0).sum(-1).float().mean())


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """SAELens ``explained_variance``: ``1 − E‖x − x̂‖² / E‖x − E[x]‖²`` over tokens ``[tokens, d_in]``."""
    residual = ((x - x_hat) ** 2).sum(-1).mean()
    total = ((x - x.mean(0)) ** 2).sum(-1).mean()
    return float(1 - residual / total)


def feature_density(f: torch.Tensor) -> torch.Tensor:
    """SAELens ``feature_density``: the fraction of tokens on which each feature is active, ``[d_sae]``."""
    return (f > 0).float().mean(0)


def ce_loss_score(ce_clean: float, ce_sae: float, ce_ablation: float) -> float:
    """SAELens ``ce_loss_score`` (CE loss recovered): ``(CE_ablation − CE_sae) / (CE_ablation − CE_clean)``."""
    return (ce_ablation - ce_sae) / (ce_ablation - ce_clean)


# ---- training --------------------------------------------------------------------------------------------

@dataclass
class SAETrainConfig:
    """How a sparse autoencoder is trained on a buffer of activations."""

    steps: int = 1500
    """Adam steps"""
    batch_size: int = 256
    """activations (tokens) per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    l1_coefficient: float = 3.0
    """λ of the standard SAE's penalty Σ f_i ‖W_dec,i‖ (on activations scaled to E‖x‖² = d_in)"""
    resample_every: int = 250
    """resample dead features every N steps during the first half of training (0 = never)"""
    dead_feature_window: int = 500
    """steps without firing after which a feature counts as dead in the training log"""
    seed: int = 0
    """random seed"""


@torch.no_grad()
def resample_dead(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, dead: torch.Tensor,
                  x: torch.Tensor, generator: torch.Generator) -> int:
    """Re-initialise the features in the boolean mask ``dead`` from inputs ``x`` drawn ∝ their squared error
    (Bricken et al., "Neuron resampling"); returns how many were resampled."""
    index = dead.nonzero().squeeze(-1)
    if index.numel() == 0:
        return 0
    scaled = x * sae.input_scale
    error = ((sae.encode(x) @ sae.W_dec + sae.b_dec - scaled) ** 2).sum(-1)
    chosen = torch.multinomial(error.clamp(min=1e-12) ** 2, index.numel(), replacement=True, generator=generator)
    directions = scaled[chosen] - sae.b_dec
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[index] = directions
    sae.W_enc[:, index] = (directions * 0.2 * enc_norm).T
    sae.b_enc[index] = 0.0
    for param, rows in ((sae.W_dec, (index, slice(None))), (sae.W_enc, (slice(None), index)), (sae.b_enc, (index,))):
        for moment in optimizer.state.get(param, {}).values():
            if moment.dim():
                moment[rows] = 0.0
    return int(index.numel())


def train_sae(activations: torch.Tensor, cfg: SAEConfig, train: SAETrainConfig, *,
              progress: bool = False, log: Callable[[dict], None] | None = None) -> SparseAutoencoder:
    """Train a sparse autoencoder on ``activations [tokens, d_in]`` (shuffled minibatches, Adam)."""
    from tqdm.auto import tqdm

    if activations.dim() != 2 or activations.shape[1] != cfg.d_in:
        raise InterpretError(f"activations must be [tokens, {cfg.d_in}], got {list(activations.shape)}")
    torch.manual_seed(train.seed)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        sae.input_scale.fill_(float((cfg.d_in / (activations ** 2).sum(-1).mean()).sqrt()))
        sae.b_dec.copy_(activations.mean(0) * sae.input_scale)  # start the decoder bias at the mean (a cheap median)
    optimizer = torch.optim.Adam(sae.parameters(), lr=train.lr)
    generator = torch.Generator().manual_seed(train.seed + 1)
    steps_since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    fired_since_resample = torch.zeros(cfg.d_sae, dtype=torch.bool)
    for step in tqdm(range(1, train.steps + 1), desc=f"sae {cfg.architecture}", disable=not progress):
        batch = activations[torch.randint(0, len(activations), (train.batch_size,), generator=generator)]
        loss, f = sae_loss(sae, batch, train.l1_coefficient)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        fired = (f > 0).any(0)
        steps_since_fired = torch.where(fired, 0, steps_since_fired + 1)
        fired_since_resample |= fired
        if cfg.architecture == "topk":
            with torch.no_grad():
                sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)
        if train.resample_every and step % train.resample_every == 0 and step <= train.steps // 2:
            sample = activations[torch.randint(0, len(activations), (8 * train.batch_size,), generator=generator)]
            resampled = resample_dead(sae, optimizer, ~fired_since_resample, sample, generator)
            fired_since_resample.zero_()
            if log:
                log({"step": step, "resampled": resampled})
        if log and (step % 100 == 0 or step == train.steps):
            log({"step": step, "loss": loss.item(), "l0": l0(f.detach()),
                 "dead_fraction_window": float((steps_since_fired > train.dead_feature_window).float().mean())})
    return sae


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, x: torch.Tensor) -> dict[str, float]:
    """``l0``, ``l1``, ``mse``, ``explained_variance`` and ``dead_fraction`` on activations ``x [tokens, d_in]``."""
    f = sae.encode(x)
    x_hat = sae.decode(f)
    return {"l0": l0(f), "l1": float(f.sum(-1).mean()), "mse": float(((x - x_hat) ** 2).sum(-1).mean()),
            "explained_variance": explained_variance(x, x_hat),
            "dead_fraction": float((feature_density(f) == 0).float().mean())}
