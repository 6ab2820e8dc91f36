"""SoLU against GELU: same world corpus, same budget; loss and how monosemantic the MLP neurons are.

Elhage et al. 2022 ("Softmax Linear Units") report that ``LN(x · softmax(x))`` makes more MLP neurons
interpretable at little cost in loss. Here both activations are options of alignlab's (Llama) models
(``hidden_act="gelu"`` / ``"solu"``, the latter registered by :mod:`alignlab.core.activations`, so it saves and
loads with ``save_pretrained``); in Llama's gated MLP the activation applies to the gate,
``down(act(gate(x)) · up(x))``, and a neuron is one unit of ``act(gate(x)) · up(x)`` (the hook point
``blocks.{L}.mlp.hook_post``).

Each activation trains a fresh tiny model from the same seed on the world's pretraining corpus with the one
training loop. Then, on held-out world transcripts whose every token is labelled from the world's ground truth
(:mod:`~alignlab.interpret.toy.world_labels`):

- **loss**: mean next-token cross-entropy;
- **monosemanticity**: for each neuron, the purity of its ``top_k`` most active tokens by prompt family and by
  entity kind (the fraction sharing the most common label); the mean over neurons, beside the purity of random
  tokens (chance).

Example::

    >>> config = SoluConfig(max_steps=2)       # doctest: +SKIP
    >>> results = compare_activations(config, "runs/solu")   # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignlab.errors import InterpretError


@dataclass
class SoluConfig:
    """The SoLU-vs-GELU comparison: model shape, training budget, measurement."""

    activations: list[str] = field(default_factory=lambda: ["gelu", "solu"])
    """MLP activations to compare (any name in transformers' ACT2FN, plus solu)"""
    hidden_size: int = 64
    """model width"""
    layers: int = 2
    """transformer blocks"""
    heads: int = 4
    """attention heads"""
    intermediate_size: int = 256
    """MLP neurons per block"""
    max_steps: int = 400
    """optimiser steps of each model (same budget for every activation)"""
    batch_size: int = 16
    """sequences per step"""
    lr: float = 2e-3
    """peak learning rate (cosine schedule, 10% warmup)"""
    eval_transcripts: int = 300
    """held-out labelled transcripts for loss and neuron purity"""
    top_k: int = 20
    """top activations per neuron whose labels are scored"""
    world_seed: int = 0
    """which world's corpus and knowledge base"""
    seed: int = 0
    """seed of the initialisation, data order and evaluation transcripts"""

    def __post_init__(self) -> None:
        from transformers.activations import ACT2FN

        from alignlab.core import activations  # noqa: F401  (registers solu)

        for name in self.activations:
            if name not in ACT2FN:
                import difflib

                close = difflib.get_close_matches(name, list(ACT2FN), n=3)
                raise InterpretError(f"unknown activation '{name}'" + (f"; did you mean {', '.join(close)}?" if close else ""))


def train_world_lm(config: SoluConfig, activation: str, output_dir: Path):
    """A fresh tiny Llama with MLP activation ``activation``, trained on the world corpus with the one loop."""
    from alignlab.core.models import load_tokenizer, tiny_llama
    from alignlab.core.objectives import TokenNLLObjective
    from alignlab.core.tokenize import CompletionCollator
    from alignlab.core.trainer import TrainConfig, train
    from alignlab.world.base_model import corpus_examples
    from alignlab.world.build import build_world

    paths = build_world(seed=config.world_seed, verbose=False)
    tokenizer = load_tokenizer(str(paths.tokenizer))
    examples = corpus_examples(paths, tokenizer)
    model = tiny_llama(len(tokenizer), hidden_size=config.hidden_size, layers=config.layers, heads=config.heads,
                       intermediate_size=config.intermediate_size, max_positions=256, seed=config.seed,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, hidden_act=activation)
    loop = TrainConfig(max_steps=config.max_steps, batch_size=config.batch_size, lr=config.lr,
                       warmup_ratio=0.1, scheduler="cosine", weight_decay=0.01, mixed_precision="no",
                       seed=config.seed, save_total_limit=1, overwrite=True, progress=False)
    train(model, TokenNLLObjective(), examples, CompletionCollator(tokenizer.pad_token_id), loop, output_dir)
    return model.eval(), tokenizer


def chance_purity(labels: list[str], k: int, draws: int, seed: int) -> float:
    """Mean purity of ``draws`` random ``k``-subsets of ``labels`` (what a neuron with random top tokens gets)."""
    from alignlab.interpret.toy.world_labels import purity

    rng = random.Random(seed)
    return sum(purity(rng.sample(labels, k)) for _ in range(draws)) / draws


@torch.no_grad()
def neuron_report(model, tokenizer, config: SoluConfig) -> dict[str, Any]:
    """Held-out loss and per-layer neuron purity (by family and entity kind) on labelled world transcripts."""
    from alignlab.interpret.hooks import run_with_cache
    from alignlab.interpret.toy.world_labels import labelled_transcripts, top_activation_purity

    data = labelled_transcripts(tokenizer, config.eval_transcripts, seed=1000 + config.seed,
                                world_seed=config.world_seed)
    names = [f"blocks.{layer}.mlp.hook_post" for layer in range(config.layers)]
    logits, cache = run_with_cache(model, data.input_ids, names=names, attention_mask=data.attention_mask)
    real = data.attention_mask.bool()
    targets = data.input_ids[:, 1:].masked_fill(~real[:, 1:], -100)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=-100)
    labels = {"family": [f for f, ents in zip(data.family, data.entity) for _ in ents],
              "entity": [e for ents in data.entity for e in ents]}
    report: dict[str, Any] = {"loss": float(loss), "layers": {}}
    for name in names:
        acts = cache[name][real].float()  # [tokens, neurons]
        scores = top_activation_purity(acts, labels, config.top_k)
        report["layers"][name] = {key: sum(v) / len(v) for key, v in scores.items()}
    report["purity_family"] = sum(v["family"] for v in report["layers"].values()) / len(names)
    report["purity_entity"] = sum(v["entity"] for v in report["layers"].values()) / len(names)
    report["chance_family"] = chance_purity(labels["family"], config.top_k, 500, config.seed)
    report["chance_entity"] = chance_purity(labels["entity"], config.top_k, 500, config.seed)
    return report


def compare_activations(config: SoluConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train one model per activation (same seed, data and budget) and report loss and neuron purity of each.
    Each model is saved with ``save_pretrained`` under ``output_dir/<activation>``."""
    from alignlab.core.models import save_pretrained_atomic

    results = {}
    for activation in config.activations:
        model_dir = Path(output_dir) / activation
        model, tokenizer = train_world_lm(config, activation, model_dir / "train")
        save_pretrained_atomic(model, tokenizer, model_dir)
        results[activation] = neuron_report(model, tokenizer, config)
    return results
