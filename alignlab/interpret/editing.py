"""Knowledge in MLP weights: integrated-gradient attribution of a fact to neurons, and a rank-one edit.

**Knowledge neurons** (Dai et al. 2022, eq. 3). The attribution of neuron ``i`` of layer ``l``'s MLP
(the activation entering the down projection, ``blocks.{l}.mlp.hook_post``) to a fact is its integrated
gradient from a zero baseline::

    Attr(a_i) = a_i · ∫₀¹ ∂F(α·a) / ∂a_i dα   ≈   a_i · (1/m) Σ_k ∂F(α_k·a)/∂a_i,   α_k = (k + ½)/m

with ``F`` the log-probability of the answer given the prompt, the activations scaled at the last prompt
token. The integral's midpoint rule is exact for quadratic ``F``; in general the attributions sum to
``F(a) − F(0)`` up to the quadrature error (*completeness*, Sundararajan et al. 2017).

**Rank-one model editing** (ROME, Meng et al. 2022, eq. 2). The down projection ``W`` [d_model, d_ff] is
treated as a linear associative memory mapping a key ``k`` (the MLP's hidden activation at the subject's
last token) to a value ``v = W k``. To make the key ``k*`` map to a new value ``v*`` while disturbing other
keys as little as possible, weighted by their second moment ``C = E[k kᵀ]``::

    Ŵ = W + (v* − W k*) (C⁻¹ k*)ᵀ / ((C⁻¹ k*)ᵀ k*)

so ``Ŵ k* = v*`` exactly, and every key with ``kᵀ C⁻¹ k* = 0`` keeps ``Ŵ k = W k``. ``v*`` is found by
gradient descent on a vector ``δ`` added to the MLP output at that token until the model says the new fact
(``v* = W k* + δ``); ``k*`` is read from a forward pass.

Example:
    >>> import torch
    >>> W, C = torch.randn(4, 6), torch.eye(6)
    >>> key, value = torch.randn(6), torch.randn(4)
    >>> torch.allclose(rank_one_edit(W, key, value, C) @ key, value, atol=1e-5)
    True
    >>> f = lambda x: (x**2).sum(-1)            # F(x) = Σ x_i², gradient linear: the midpoint rule is exact
    >>> x = torch.tensor([1.0, 2.0])
    >>> integrated_gradients(f, x, steps=4).tolist()
    [1.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from alignlab.errors import InterpretError

# ---- the maths (pure functions) ----------------------------------------------------------------------


def integrated_gradients(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         baseline: torch.Tensor | None = None, *, steps: int = 20) -> torch.Tensor:
    """Integrated gradients of the scalar function ``f`` at ``x`` [d] from ``baseline`` (default zeros).

    ``f`` takes a batch [steps, d] of points on the straight path and returns one value per point [steps];
    all points go through it in one call. Returns attributions [d] whose sum approximates
    ``f(x) − f(baseline)`` (midpoint rule with ``steps`` points).
    """
    if steps < 1:
        raise InterpretError(f"integrated gradients needs steps >= 1, got {steps}")
    baseline = torch.zeros_like(x) if baseline is None else baseline
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps  # [steps]
    points = (baseline + alphas[:, None] * (x - baseline)).detach().requires_grad_(True)  # [steps, d]
    values = f(points)
    if values.shape != (steps,):
        raise InterpretError(f"f must return one value per path point ({steps}), got shape {tuple(values.shape)}")
    (gradients,) = torch.autograd.grad(values.sum(), points)
    return (x - baseline) * gradients.mean(0)


def key_second_moment(keys: torch.Tensor, *, ridge: float = 1e-4) -> torch.Tensor:
    """``C = E[k kᵀ] + ridge · mean(diag) · I`` over keys [n, d_ff] (the ridge keeps ``C`` invertible when
    fewer keys than dimensions were seen, or some neuron never fires)."""
    if keys.dim() != 2 or len(keys) == 0:
        raise InterpretError(f"keys must be a non-empty [n, d_ff] matrix, got shape {tuple(keys.shape)}")
    k = keys.double()
    moment = k.T @ k / len(k)
    return moment + ridge * moment.diagonal().mean() * torch.eye(k.shape[1], dtype=k.dtype)


def rank_one_edit(W: torch.Tensor, key: torch.Tensor, value: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """ROME's closed form: the weight [d_out, d_in] nearest ``W`` (in the metric ``C``) with ``Ŵ key = value``."""
    if W.shape != (value.shape[0], key.shape[0]) or C.shape != (key.shape[0], key.shape[0]):
        raise InterpretError(f"rank_one_edit: W {tuple(W.shape)}, key {tuple(key.shape)}, value "
                             f"{tuple(value.shape)} and C {tuple(C.shape)} do not fit together")
    Wd, k = W.double(), key.double()
    u = torch.linalg.solve(C.double(), k)  # C⁻¹ k*
    residual = value.double() - Wd @ k  # v* − W k*
    return (Wd + torch.outer(residual, u) / (u @ k)).to(W.dtype)


# ---- on a model --------------------------------------------------------------------------------------


def _family(model: nn.Module):
    from alignlab.interpret.families import family_for_model_type

    return family_for_model_type(model.config.model_type)


def _check_layer(model: nn.Module, layer: int) -> None:
    n_layers = model.config.num_hidden_layers
    if not 0 <= layer < n_layers:
        raise InterpretError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")


def down_projection(model: nn.Module, layer: int) -> nn.Module:
    """The MLP output projection of ``layer`` (its input is ``blocks.{layer}.mlp.hook_post``)."""
    _check_layer(model, layer)
    family = _family(model)
    if family.mlp_out != family.mlp:
        raise InterpretError(f"{model.config.model_type}: the MLP's output is normalised again ({family.mlp_out}) "
                             "before the residual add, so hook_mlp_out is not the down projection's output; "
                             "rank-one editing is implemented where it is")
    return model.get_submodule(f"{family.layers}.{layer}.{family.mlp}.{family.mlp_down}")


def _weight_view(projection: nn.Module) -> torch.Tensor:
    """The down projection's weight as [d_model, d_ff] (GPT-2's Conv1D stores it transposed)."""
    return projection.weight.T if _is_conv1d(projection) else projection.weight


def _is_conv1d(projection: nn.Module) -> bool:
    return type(projection).__name__ == "Conv1D"


def neuron_attributions(model: nn.Module, input_ids: torch.Tensor, answer_start: int, *, layer: int,
                        steps: int = 20) -> torch.Tensor:
    """Integrated-gradient attribution [d_ff] of each MLP neuron of ``layer`` to log P(answer | prompt).

    ``input_ids`` [seq] is the prompt followed by the answer; the answer's tokens start at ``answer_start``.
    The neurons are scaled (baseline zero) at the last prompt token, ``answer_start − 1``, where the answer's
    first token is predicted; every answer token's log-probability counts in ``F``.
    """
    from alignlab.interpret.hooks import hooks, run_with_cache

    _check_layer(model, layer)
    if not 0 < answer_start < len(input_ids):
        raise InterpretError(f"answer_start must fall inside the sequence (1..{len(input_ids) - 1}), got {answer_start}")
    name, position = f"blocks.{layer}.mlp.hook_post", answer_start - 1
    ids = input_ids[None]
    _, cache = run_with_cache(model, ids, names=[name])
    activation = cache[name][0, position].detach()  # [d_ff]
    targets = input_ids[answer_start:]

    def answer_logprob(points: torch.Tensor) -> torch.Tensor:  # points [steps, d_ff] -> [steps]
        def place(act: torch.Tensor, _name: str) -> torch.Tensor:
            act = act.clone()
            act[:, position] = points
            return act

        with hooks(model, {name: place}):
            logits = model(ids.expand(len(points), -1)).logits[:, answer_start - 1:-1].float()
        return logits.log_softmax(-1).gather(-1, targets.expand(len(points), -1)[..., None])[..., 0].sum(-1)

    return integrated_gradients(answer_logprob, activation, steps=steps)


def mlp_keys(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], *, layer: int) -> torch.Tensor:
    """Every non-padding position's MLP key (``blocks.{layer}.mlp.hook_post``) over ``(input_ids, attention_mask)``
    batches: [n_tokens, d_ff], to estimate ``C`` (ROME uses text from the pretraining distribution)."""
    from alignlab.core.generation import left_padded_positions
    from alignlab.interpret.hooks import run_with_cache

    name, keys = f"blocks.{layer}.mlp.hook_post", []
    with torch.no_grad():
        for ids, mask in batches:  # left- or right-padded: positions count each row's real tokens
            _, cache = run_with_cache(model, ids, names=[name], attention_mask=mask,
                                      position_ids=left_padded_positions(mask))
            keys.append(cache[name][mask.bool()].float())
    return torch.cat(keys)


def optimise_value(model: nn.Module, input_ids: torch.Tensor, answer_start: int, *, layer: int, position: int,
                   steps: int = 40, lr: float = 0.5, weight_decay: float = 1e-3,
                   C: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(key ``k*`` [d_ff], value shift ``δ`` [d_model]) such that the MLP output of ``layer`` shifted by ``δ`` at
    ``position`` (the subject's last token) makes the model assign high probability to ``input_ids[answer_start:]``.

    Minimises −log P(answer | prompt) + ``weight_decay`` · ‖δ‖² with Adam (ROME's value optimisation, without its
    essence-drift term: specificity is measured instead). With the key second moment ``C``, the shift is applied
    as the rank-one edit will apply it: ``δ · (C⁻¹k*)·k_t / (C⁻¹k*)·k*`` at *every* position ``t`` (exactly the
    edited weight's effect on this sequence), so ``δ`` is optimised for the edited model, the edit's side effects
    on the other tokens included. Without ``C``, only ``position`` is shifted.
    """
    from alignlab.interpret.hooks import hooks, run_with_cache

    key_name, out_name = f"blocks.{layer}.mlp.hook_post", f"blocks.{layer}.hook_mlp_out"
    ids, targets = input_ids[None], input_ids[answer_start:][None]
    _, cache = run_with_cache(model, ids, names=[key_name])
    keys = cache[key_name][0].detach().float()  # [seq, d_ff]
    key = keys[position]
    if C is None:
        weights = torch.zeros(len(keys))
        weights[position] = 1.0
    else:
        u = torch.linalg.solve(C.double(), key.double())  # C⁻¹ k*
        weights = (keys.double() @ u / (key.double() @ u)).float()  # [seq]: 1 at the subject
    delta = torch.zeros(model.config.hidden_size, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=lr)

    def shift(act: torch.Tensor, _name: str) -> torch.Tensor:
        return act + (weights[:, None] * delta).to(act.dtype)

    with hooks(model, {out_name: shift}):
        for _ in range(steps):
            optimiser.zero_grad()
            logits = model(ids).logits[:, answer_start - 1:-1].float()
            nll = -logits.log_softmax(-1).gather(-1, targets[..., None]).sum()
            (nll + weight_decay * delta @ delta).backward()
            optimiser.step()
    return key, delta.detach()


@contextmanager
def edited_weight(model: nn.Module, layer: int, key: torch.Tensor, delta: torch.Tensor,
                  C: torch.Tensor) -> Iterator[nn.Module]:
    """Apply the rank-one edit ``W k* ↦ W k* + δ`` to ``layer``'s down projection inside the block, and restore
    the original weight on exit (also on an exception)."""
    projection = down_projection(model, layer)
    original = projection.weight.detach().clone()
    with torch.no_grad():
        W = _weight_view(projection)
        new = rank_one_edit(W.detach(), key.to(W.dtype), W.detach() @ key.to(W.dtype) + delta.to(W.dtype), C)
        projection.weight.copy_(new.T if _is_conv1d(projection) else new)
    try:
        yield model
    finally:
        with torch.no_grad():
            projection.weight.copy_(original)
