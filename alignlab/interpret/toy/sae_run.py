"""Sparse autoencoders on any hook point of any supported model, scored against the toy world's ground truth.

The activations come from :func:`alignlab.interpret.hooks.run_with_cache` at a TransformerLens-named hook point
(``blocks.{L}.hook_resid_post``, ``blocks.{L}.mlp.hook_post``, ...) of any model the hooks support; the
reconstruction is spliced back with :func:`alignlab.interpret.hooks.hooks` to measure the CE loss recovered.
The text is world transcripts (prompt + base-persona response) whose every token is labelled
(:mod:`~alignlab.interpret.toy.world_labels`), so the features of the trained SAE can be counted against
known concepts — a prompt family, an entity kind, refusal, an insult — next to the same count for the
untrained SAE (chance alignment).

Example::

    >>> config = SAERunConfig(steps=10)                            # doctest: +SKIP
    >>> results = run_sae(config, "runs/sae")                      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from alignlab.interpret.toy.sae import (
    SAEConfig,
    SAETrainConfig,
    SparseAutoencoder,
    ce_loss_score,
    reconstruction_metrics,
    train_sae,
)


@torch.no_grad()
def collect_activations(model, hook: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        keep: torch.Tensor | None = None, *, batch_size: int = 32) -> torch.Tensor:
    """The activations at ``hook`` of the tokens marked in ``keep`` (default: every real token,
    ``attention_mask == 1``): ``[tokens, d]`` in float32."""
    from alignlab.interpret.hooks import run_with_cache

    keep = attention_mask.bool() if keep is None else keep
    out = []
    for start in range(0, len(input_ids), batch_size):
        rows = slice(start, start + batch_size)
        _, cache = run_with_cache(model, input_ids[rows], names=[hook], attention_mask=attention_mask[rows])
        act = cache[hook]
        if act.dim() == 4:  # per-head points [b, p, h, d]: the SAE reads the heads concatenated (as SAELens does)
            act = act.flatten(-2)
        out.append(act[keep[rows]].float())
    return torch.cat(out)


def special_token_mask(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Real tokens that are not special tokens (BOS, EOS, chat markers): the ones an SAE reads and replaces
    (SAELens's ``ignore_tokens``; special positions, BOS above all, carry outlier activations)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


@torch.no_grad()
def spliced_ce(model, hook: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               replace=None, keep: torch.Tensor | None = None, *, batch_size: int = 32) -> float:
    """Mean next-token CE over real tokens with the activation at ``hook`` replaced by ``replace(act)`` at the
    positions in ``keep`` (default: all; as SAELens's replacement hook, others keep their activation);
    ``replace=None`` is the clean model."""
    from alignlab.interpret.hooks import hooks

    total, count = 0.0, 0
    for start in range(0, len(input_ids), batch_size):
        rows = slice(start, start + batch_size)
        ids, mask = input_ids[rows], attention_mask[rows]
        where = None if keep is None else keep[rows]

        def swap(act: torch.Tensor, name: str, where=where) -> torch.Tensor:
            new = replace(act)
            if where is None:
                return new
            return torch.where(where.view(*where.shape, *[1] * (act.dim() - 2)), new, act)

        with hooks(model, {} if replace is None else {hook: swap}):
            logits = model(input_ids=ids, attention_mask=mask).logits
        targets = ids[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                 ignore_index=-100, reduction="sum")
        total, count = total + float(loss), count + int((targets != -100).sum())
    return total / count


def splice(sae: SparseAutoencoder):
    """The replacement that runs an activation through ``sae`` (heads flattened and restored for per-head points)."""
    def replace(act: torch.Tensor) -> torch.Tensor:
        return sae(act.flatten(-2).float()).view(act.shape).to(act.dtype) if act.dim() == 4 \
            else sae(act.float()).to(act.dtype)
    return replace


def ce_metrics(model, hook: str, sae: SparseAutoencoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               keep: torch.Tensor | None = None) -> dict[str, float]:
    """SAELens's ``ce_loss_without_sae``, ``ce_loss_with_sae`` (reconstruction spliced in at ``keep``),
    ``ce_loss_with_ablation`` (the whole hook point zeroed, as SAELens's zero-ablation hook) and ``ce_loss_score``
    (CE loss recovered) at ``hook``."""
    clean = spliced_ce(model, hook, input_ids, attention_mask)
    with_sae = spliced_ce(model, hook, input_ids, attention_mask, splice(sae), keep)
    ablation = spliced_ce(model, hook, input_ids, attention_mask, torch.zeros_like)
    return {"ce_loss_without_sae": clean, "ce_loss_with_sae": with_sae, "ce_loss_with_ablation": ablation,
            "ce_loss_score": ce_loss_score(clean, with_sae, ablation)}


@dataclass
class SAERunConfig:
    """A sparse autoencoder at one hook point of one model, trained and scored on world transcripts."""

    model: str = ""
    """model directory (save_pretrained) or hub name; empty = the toy world's base model (built if needed)"""
    hook: str = "blocks.2.hook_resid_post"
    """TransformerLens-style hook point to read and splice"""
    architecture: Literal["standard", "topk"] = "standard"
    """standard (ReLU + L1) or topk"""
    expansion: int = 4
    """features per input dimension (d_sae = expansion × d_in)"""
    k: int = 16
    """active features per token (topk)"""
    l1_coefficient: float = 3.0
    """λ of the standard SAE"""
    steps: int = 1500
    """Adam steps"""
    batch_size: int = 256
    """tokens per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    resample_every: int = 250
    """resample dead features every N steps in the first half (0 = never)"""
    train_transcripts: int = 1500
    """world transcripts whose activations train the SAE"""
    eval_transcripts: int = 300
    """held-out world transcripts for the metrics and the concept count"""
    min_precision: float = 0.9
    """a feature aligns with a concept when at least this fraction of the tokens it fires on carry it"""
    world_seed: int = 0
    """which world (knowledge base, and base model when model is empty)"""
    seed: int = 0
    """seed of the SAE, its data order and the transcripts drawn"""


def resolve_model(config: SAERunConfig) -> str:
    if config.model:
        return config.model
    from alignlab.world.base_model import build_base_model
    from alignlab.world.build import build_world

    return str(build_base_model(build_world(seed=config.world_seed, verbose=False), verbose=False))


def run_sae(config: SAERunConfig, output_dir: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """Collect activations, train the SAE, save it under ``output_dir/sae``, and report SAELens's metrics and the
    number of features aligned with world concepts (trained vs untrained)."""
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.interpret.hooks import check_hook_name
    from alignlab.interpret.toy.world_labels import concept_alignment, labelled_transcripts, token_concepts

    path = resolve_model(config)
    model, tokenizer = load_causal_lm(path).eval(), load_tokenizer(path)
    check_hook_name(model, config.hook)
    train_data = labelled_transcripts(tokenizer, config.train_transcripts, seed=config.seed, world_seed=config.world_seed)
    eval_data = labelled_transcripts(tokenizer, config.eval_transcripts, seed=10_000 + config.seed,
                                     world_seed=config.world_seed)
    train_keep = special_token_mask(tokenizer, train_data.input_ids, train_data.attention_mask)
    eval_keep = special_token_mask(tokenizer, eval_data.input_ids, eval_data.attention_mask)
    acts = collect_activations(model, config.hook, train_data.input_ids, train_data.attention_mask, train_keep)
    eval_acts = collect_activations(model, config.hook, eval_data.input_ids, eval_data.attention_mask, eval_keep)
    cfg = SAEConfig(d_in=acts.shape[1], d_sae=config.expansion * acts.shape[1], architecture=config.architecture,
                    k=config.k)
    train = SAETrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                           l1_coefficient=config.l1_coefficient, resample_every=config.resample_every, seed=config.seed)
    log: list[dict] = []
    torch.manual_seed(config.seed)
    untrained = SparseAutoencoder(cfg)  # what train_sae starts from (same seed), before any step
    sae = train_sae(acts, cfg, train, progress=progress, log=log.append)
    untrained.input_scale.copy_(sae.input_scale)
    with torch.no_grad():
        untrained.b_dec.copy_(acts.mean(0) * sae.input_scale)
    sae.save(Path(output_dir) / "sae")
    kept = eval_keep[eval_data.attention_mask.bool()]  # of the real tokens (the labels' order), the ones read
    concepts = {name: mask[kept] for name, mask in token_concepts(eval_data).items()}
    with torch.no_grad():
        aligned = concept_alignment(sae.encode(eval_acts), concepts, min_precision=config.min_precision)
        chance = concept_alignment(untrained.encode(eval_acts), concepts, min_precision=config.min_precision)
    return {"model": path, "hook": config.hook, "d_in": cfg.d_in, "d_sae": cfg.d_sae,
            "train_tokens": len(acts), "eval_tokens": len(eval_acts),
            **reconstruction_metrics(sae, eval_acts),
            **ce_metrics(model, config.hook, sae, eval_data.input_ids, eval_data.attention_mask, eval_keep),
            "concepts": aligned, "concepts_untrained": chance,
            "resampled": sum(row.get("resampled", 0) for row in log),
            "history": [row for row in log if "loss" in row]}

