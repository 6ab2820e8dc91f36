"""Activation patching, attribution patching and ablation (causal interventions on the hook points).

Activation patching (Meng et al. 2022 "causal tracing"; Wang et al. 2022, IOI): run the *corrupted* input,
replace one activation by its value on the *clean* input, and measure how far a metric of the logits moves
back towards clean. A sweep patches every (layer, position) of a residual-stream point, or every (layer,
head) of a per-head point; the patched runs are stacked into batches (``runs_per_batch`` runs per forward).

Attribution patching (Nanda 2023; Syed et al. 2023) replaces each patched run by a first-order Taylor
estimate from one forward and one backward pass on the corrupted input:
``metric(patched) - metric(corrupted) ≈ (a_clean - a_corrupted) · ∂metric/∂a |_corrupted``.
:func:`correlation` measures how well the estimate ranks sites against real patching.

Ablation replaces an activation by zeros, by its mean over a reference batch, or by its value on another
(resampled) reference input (Chan et al. 2022, causal scrubbing): :func:`ablation_hook` builds the hook.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64,
    ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)).eval()
    >>> clean, corrupted = torch.tensor([[1, 5, 7, 9]]), torch.tensor([[1, 6, 7, 9]])
    >>> metric = logit_difference(torch.tensor([3]), torch.tensor([4]))
    >>> with torch.no_grad():
    ...     effect = patch_by_position(model, clean, corrupted, metric)
    >>> tuple(effect.shape)  # [layers, positions]
    (2, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from alignlab.errors import InterpretError
from alignlab.interpret.hooks import HookFn, check_hook_name, hooks, n_layers, run_with_cache

Metric = Callable[[Tensor], Tensor]
"""``metric(logits [b, p, vocab]) -> scalar tensor``, e.g. :func:`logit_difference`."""

HEAD_AXIS = {"attn.hook_pattern": 1, "attn.hook_attn_scores": 1}
"""Axis of the head index in a per-head point (after the batch axis at 0); 2 for ``[b, p, h, ...]`` points."""

PER_HEAD_POINTS = ("attn.hook_z", "attn.hook_q", "attn.hook_result", "attn.hook_rot_q", "attn.hook_pattern",
                   "attn.hook_attn_scores")
"""Points with one slice per query head (``hook_k``/``hook_v`` have key/value heads; patch them by position)."""


def logit_difference(correct: Tensor, wrong: Tensor, position: int = -1) -> Metric:
    """Metric: mean over the batch of ``logit[correct] - logit[wrong]`` at ``position`` (``correct``/``wrong``:
    token ids ``[b]``), the IOI paper's measure of how much the model prefers the right answer."""

    def metric(logits: Tensor) -> Tensor:
        last = logits[:, position]  # [b, vocab]
        rows = torch.arange(last.shape[0], device=last.device)
        return (last[rows, correct.to(last.device)] - last[rows, wrong.to(last.device)]).mean()

    return metric


def _check_pair(clean_ids: Tensor, corrupted_ids: Tensor) -> None:
    if clean_ids.shape != corrupted_ids.shape:
        raise InterpretError(f"clean_ids {list(clean_ids.shape)} and corrupted_ids {list(corrupted_ids.shape)} "
                             "differ in shape; activation patching swaps activations position by position, so "
                             "both inputs need the same number of tokens (pad or choose same-length prompts)")


def _patcher(sites_by_name: dict[str, list[tuple[int, tuple]]], clean: dict[str, Tensor], batch: int) -> HookFn:
    """Hook for a forward over ``len(runs)`` stacked copies of the corrupted batch: copy ``run`` gets the clean
    activation at its own ``index``."""

    def patch(activation: Tensor, name: str) -> Tensor:
        patched = activation.clone()
        for run, index in sites_by_name[name]:
            rows = slice(run * batch, (run + 1) * batch)
            patched[(rows, *index)] = clean[name][(slice(None), *index)]
        return patched

    return patch


def _patched_runs(model: nn.Module, corrupted_ids: Tensor, sites: Sequence[tuple[str, tuple]],
                  clean: dict[str, Tensor], metric: Metric, runs_per_batch: int, **forward_kwargs) -> Tensor:
    """``metric`` of the corrupted run with ``activation[:, *index] = clean[name][:, *index]`` at one site
    per run; ``runs_per_batch`` runs share one forward (the corrupted batch repeated, each copy patched at its
    own site). Returns one value per site."""
    batch = corrupted_ids.shape[0]
    values = []
    for start in range(0, len(sites), runs_per_batch):
        chunk = sites[start:start + runs_per_batch]
        sites_by_name: dict[str, list[tuple[int, tuple]]] = {}
        for run, (name, index) in enumerate(chunk):
            sites_by_name.setdefault(name, []).append((run, index))
        patch = _patcher(sites_by_name, clean, batch)
        stacked = {k: torch.cat([v] * len(chunk)) if isinstance(v, Tensor) else v for k, v in forward_kwargs.items()}
        with hooks(model, {name: patch for name in sites_by_name}):
            logits = model(input_ids=torch.cat([corrupted_ids] * len(chunk)), **stacked).logits
        values += [metric(logits[run * batch:(run + 1) * batch]) for run in range(len(chunk))]
    return torch.stack(values)


def patch_by_position(model: nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric,
                      point: str = "hook_resid_pre", *, runs_per_batch: int = 8, **forward_kwargs) -> Tensor:
    """Patch ``blocks.L.<point>`` at one position at a time, every layer and position: ``[layers, positions]``
    of ``metric`` on the patched corrupted run (TransformerLens's ``get_act_patch_resid_pre`` for the
    default point). ``point`` is any ``[b, p, ...]`` point (residual stream, ``hook_attn_out``, ...)."""
    _check_pair(clean_ids, corrupted_ids)
    layers, positions = n_layers(model), clean_ids.shape[1]
    names = [f"blocks.{layer}.{point}" for layer in range(layers)]
    for name in names:
        check_hook_name(model, name)
    _, clean = run_with_cache(model, clean_ids, names=names, **forward_kwargs)
    sites = [(name, (pos,)) for name in names for pos in range(positions)]
    values = _patched_runs(model, corrupted_ids, sites, dict(clean), metric, runs_per_batch, **forward_kwargs)
    return values.reshape(layers, positions)


def patch_by_head(model: nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric,
                  point: str = "attn.hook_z", *, runs_per_batch: int = 8, **forward_kwargs) -> Tensor:
    """Patch one head's ``blocks.L.<point>`` at every position, every layer and head: ``[layers, heads]``."""
    _check_pair(clean_ids, corrupted_ids)
    if point not in PER_HEAD_POINTS:
        raise InterpretError(f"patch_by_head patches per-query-head points ({', '.join(PER_HEAD_POINTS)}); "
                             f"got '{point}'")
    layers, heads = n_layers(model), model.config.num_attention_heads
    names = [f"blocks.{layer}.{point}" for layer in range(layers)]
    _, clean = run_with_cache(model, clean_ids, names=names, **forward_kwargs)
    axis = HEAD_AXIS.get(point, 2)
    sites = [(name, (slice(None),) * (axis - 1) + (head,)) for name in names for head in range(heads)]
    values = _patched_runs(model, corrupted_ids, sites, dict(clean), metric, runs_per_batch, **forward_kwargs)
    return values.reshape(layers, heads)


def attribution_patching(model: nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric,
                         point: str = "hook_resid_pre", *, by: str = "position", **forward_kwargs) -> Tensor:
    """First-order estimate of :func:`patch_by_position` (``by="position"``, ``[layers, positions]``) or
    :func:`patch_by_head` (``by="head"``, ``[layers, heads]``) *minus the corrupted metric*, from one clean
    forward, one corrupted forward and one backward pass: ``(a_clean - a_corrupted) · ∂metric/∂a``."""
    _check_pair(clean_ids, corrupted_ids)
    if by not in ("position", "head"):
        raise InterpretError(f"by must be 'position' or 'head', got '{by}'")
    names = [f"blocks.{layer}.{point}" for layer in range(n_layers(model))]
    _, clean = run_with_cache(model, clean_ids, names=names, **forward_kwargs)
    kept: dict[str, Tensor] = {}

    def keep(activation: Tensor, name: str) -> Tensor:
        # Returned as its own replacement so the rest of the forward uses this very tensor (a per-head view
        # such as hook_z is otherwise not on the graph); with frozen weights below, the graph starts here.
        if not activation.requires_grad:
            activation = activation.detach().requires_grad_(True)
        activation.retain_grad()
        kept[name] = activation
        return activation

    with torch.enable_grad(), hooks(model, {name: keep for name in names}):
        metric(model(input_ids=corrupted_ids, **forward_kwargs).logits).backward()
    estimates = []
    for name in names:
        contribution = (clean[name] - kept[name].detach()) * kept[name].grad  # [b, ...]
        if by == "position":  # [b, p, ...] → [p]
            estimates.append(contribution.sum(0).flatten(1).sum(-1))
        else:
            axis = HEAD_AXIS.get(point, 2)
            estimates.append(contribution.movedim(axis, 0).flatten(1).sum(-1))
    return torch.stack(estimates)


def correlation(estimate: Tensor, actual: Tensor) -> float:
    """Pearson correlation of two effect maps (e.g. attribution vs real patching effects), flattened."""
    x, y = estimate.flatten().double(), actual.flatten().double()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-300))


def ablation_hook(kind: str, reference: Tensor | None = None, *, heads: Sequence[int] | None = None,
                  head_axis: int = 2, positions: Sequence[int] | None = None, seed: int = 0) -> HookFn:
    """A hook function that ablates the activation it is given.

    ``kind``: ``"zero"``; ``"mean"``: the mean of ``reference`` (the same point's activations on a reference
    batch, e.g. from :func:`run_with_cache`) over its batch axis, and over positions (axis 1) for ``[b, p,
    ...]`` points so any length can be ablated (over the batch only for the pattern and scores); ``"resample"``: each example's activation replaced by that of
    a randomly drawn reference example (``reference`` must have the activation's shape past the batch axis).
    ``heads`` restricts it to those heads (``head_axis`` 2 for ``[b, p, h, d]``, 1 for the pattern),
    ``positions`` to those positions (axis 1).

    Example:
        >>> hook = ablation_hook("mean", torch.arange(12.).reshape(2, 3, 2), positions=[0])
        >>> hook(torch.zeros(1, 3, 2), "blocks.0.hook_resid_pre")[0].tolist()
        [[5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]
    """
    if kind not in ("zero", "mean", "resample"):
        raise InterpretError(f"unknown ablation '{kind}'; use zero, mean or resample")
    if kind != "zero" and reference is None:
        raise InterpretError(f"{kind} ablation needs reference activations of the hooked point")
    generator = torch.Generator().manual_seed(seed)

    def hook(activation: Tensor, name: str) -> Tensor:
        if kind == "zero":
            value = torch.zeros_like(activation)
        elif kind == "mean":
            over = (0,) if name.endswith(("hook_pattern", "hook_attn_scores")) else (0, 1)
            value = reference.mean(over, keepdim=True).to(activation.dtype).expand_as(activation)
        else:
            if reference.shape[1:] != activation.shape[1:]:
                raise InterpretError(f"{name}: resample ablation needs reference activations shaped "
                                     f"[n, {', '.join(map(str, activation.shape[1:]))}], got "
                                     f"{list(reference.shape)}")
            drawn = torch.randint(reference.shape[0], (activation.shape[0],), generator=generator)
            value = reference[drawn].to(activation.dtype)
        mask = torch.ones(activation.shape[1:], dtype=torch.bool)
        if heads is not None:
            keep = torch.ones(activation.shape[head_axis], dtype=torch.bool)
            keep[list(heads)] = False
            mask[(slice(None),) * (head_axis - 1) + (keep,)] = False
        if positions is not None:
            keep = torch.ones(activation.shape[1], dtype=torch.bool)
            keep[list(positions)] = False
            mask[keep] = False
        return torch.where(mask.to(activation.device), value, activation)

    return hook
