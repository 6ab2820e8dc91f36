"""Activation steering and directional ablation, as context managers on the plain Hugging Face model.

- **Steering** (activation addition, Turner et al. 2023; Arditi et al. 2024 eq. 3): add ``α·v`` to the
  residual stream entering one layer (``blocks.{L}.hook_resid_pre``), at every position or from one
  position on. Positions are counted per row from its first real token (the ``position_ids`` the model is
  given), so left-padded batches and KV-cached generation steer the same tokens as one unpadded forward.
- **Directional ablation** (Arditi et al. 2024 eq. 4): remove the component along ``v̂`` from everything
  written into the residual stream — the embeddings (``blocks.0.hook_resid_pre``) and every attention and
  MLP output (``blocks.{L}.hook_attn_out``, ``blocks.{L}.hook_mlp_out``) — so no layer ever reads it.

Both work through :func:`alignlab.interpret.hooks.hooks`, so they compose with caching and with the one
generator (:func:`alignlab.core.generation.generate`): generate inside the ``with`` block.

Example:
    >>> with steer(model, layer=2, vector=v, alpha=4.0):                      # doctest: +SKIP
    ...     out = generate(model, tok, prompts, GenerationConfig(temperature=0))
    >>> with ablate_direction(model, v):                                      # doctest: +SKIP
    ...     out = generate(model, tok, prompts, GenerationConfig(temperature=0))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from alignlab.errors import InterpretError
from alignlab.interpret.directions import project_out, unit


def _check_layer(model: nn.Module, layer: int) -> int:
    n_layers = model.config.num_hidden_layers
    if not 0 <= layer < n_layers:
        raise InterpretError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
    return layer


def _check_vector(model: nn.Module, vector: torch.Tensor) -> None:
    if vector.shape != (model.config.hidden_size,):
        raise InterpretError(f"a steering vector must have shape ({model.config.hidden_size},) for this model, "
                             f"got {tuple(vector.shape)}")


@contextmanager
def _positions(model: nn.Module) -> Iterator[dict[str, torch.Tensor | None]]:
    """Record the ``position_ids`` of each forward call of ``model`` (None when the caller passed none)."""
    seen: dict[str, torch.Tensor | None] = {"ids": None}

    def record(_module, args, kwargs):
        seen["ids"] = kwargs.get("position_ids")

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


@contextmanager
def steer(model: nn.Module, *, layer: int, vector: torch.Tensor, alpha: float,
          start: int = 0) -> Iterator[nn.Module]:
    """Inside the block, ``blocks.{layer}.hook_resid_pre += alpha · vector`` at every position ``≥ start``.

    ``vector`` [d_model] is used as given (normalise it first for α in residual-norm units); ``alpha = 0`` leaves
    the model unchanged. Positions are the model's ``position_ids`` (0 = each row's first real token).
    """
    from alignlab.interpret.hooks import hooks

    _check_layer(model, layer)
    _check_vector(model, vector)
    if start < 0:
        raise InterpretError(f"start must be a position >= 0, got {start}")

    with _positions(model) as seen:
        def add(activation: torch.Tensor, _name: str) -> torch.Tensor:  # activation [batch, seq, d_model]
            shift = alpha * vector.to(activation)
            if start == 0:
                return activation + shift
            ids = seen["ids"]
            if ids is None:
                ids = torch.arange(activation.shape[1], device=activation.device)[None]
            return activation + (ids >= start)[..., None].to(activation.dtype) * shift

        with hooks(model, {f"blocks.{layer}.hook_resid_pre": add}):
            yield model


def residual_writes(n_layers: int) -> list[str]:
    """The hook points whose outputs are added into the residual stream: embeddings, attention, MLP."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_{part}_out" for layer in range(n_layers)
                                          for part in ("attn", "mlp")]


@contextmanager
def ablate_direction(model: nn.Module, vector: torch.Tensor) -> Iterator[nn.Module]:
    """Inside the block, project ``vector``'s direction out of every write to the residual stream."""
    from alignlab.interpret.hooks import hooks

    _check_vector(model, vector)
    direction = unit(vector.float())

    def remove(activation: torch.Tensor, _name: str) -> torch.Tensor:
        return project_out(activation, direction.to(activation.device))

    with hooks(model, dict.fromkeys(residual_writes(model.config.num_hidden_layers), remove)):
        yield model


def relative_strength(alpha: float, vector: torch.Tensor, typical_norm: float) -> float:
    """``‖α·v‖ / typical ‖h‖``: the injected norm as a share of the residual stream's norm at that layer."""
    if typical_norm <= 0:
        raise InterpretError(f"typical residual norm must be positive, got {typical_norm}")
    return abs(alpha) * float(vector.norm()) / typical_norm
