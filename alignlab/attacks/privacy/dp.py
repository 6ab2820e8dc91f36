"""DP-SGD (Abadi et al. 2016) for world models, through Opacus.

Each step clips every example's gradient to norm ``C`` (``max_grad_norm``), sums them, adds Gaussian noise of
standard deviation ``sigma * C`` (``noise_multiplier``) and averages over the expected batch size; batches
are drawn by Poisson sampling. Opacus computes the per-example gradients and accounts the privacy spent
(the RDP accountant), reported as epsilon at ``delta``.

Opacus wraps the model, the optimiser and the data loader itself, so this is a loop of its own rather than
the shared trainer's (which does not sample per example). Opacus has no per-example gradient rule for
Llama's RMSNorm, so the norm weights stay frozen at their initial value of 1 (a small loss of capacity,
part of the measured utility cost).

Example::

    >>> DPConfig(noise_multiplier=1.0).delta
    1e-05
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alignlab.errors import AttackError


@dataclass
class DPConfig:
    """DP-SGD settings."""

    noise_multiplier: float = 1.0
    """Gaussian noise standard deviation as a multiple of the clipping norm"""
    max_grad_norm: float = 1.0
    """per-example gradient clipping norm C"""
    delta: float = 1e-5
    """delta of the (epsilon, delta) guarantee reported"""

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.max_grad_norm <= 0:
            raise AttackError(f"DP-SGD needs noise_multiplier >= 0 and max_grad_norm > 0, got {self}")


def train_dp(model: nn.Module, examples: list[dict[str, list[int]]], pad_token_id: int, config: DPConfig, *,
             epochs: float = 1.0, batch_size: int = 16, lr: float = 3e-3, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` in place with DP-SGD (token NLL on ``labels``); returns steps, final loss and epsilon."""
    from opacus import PrivacyEngine
    from tqdm.auto import tqdm

    from alignlab.core.logprobs import token_logprobs
    from alignlab.core.tokenize import CompletionCollator

    torch.manual_seed(seed)
    for name, param in model.named_parameters():
        if "norm" in name:
            param.requires_grad_(False)  # no per-example rule for RMSNorm in Opacus (module docstring)
    collate = CompletionCollator(pad_token_id)
    loader = torch.utils.data.DataLoader(examples, batch_size=batch_size, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    engine = PrivacyEngine(accountant="rdp")
    model.train()
    dp_model, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm, poisson_sampling=True)
    total = max(1, math.ceil(epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    step, loss_value = 0, float("nan")
    with tqdm(total=total, desc="dp-sgd") as bar:
        while step < total:
            for batch in loader:
                if step >= total:
                    break
                if batch["input_ids"].numel() == 0:  # Poisson sampling can draw an empty batch
                    continue
                logps, mask = token_logprobs(dp_model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                # per-example mean NLL, then the batch mean: each example's gradient is clipped on its own
                loss = (-(logps.sum(-1) / mask.sum(-1).clamp_min(1))).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                loss_value = loss.item()
                bar.update(1)
    model.eval()
    epsilon = engine.get_epsilon(config.delta) if config.noise_multiplier > 0 else float("inf")
    return {"steps": step, "final_loss": loss_value, "epsilon": float(epsilon), "delta": config.delta}
