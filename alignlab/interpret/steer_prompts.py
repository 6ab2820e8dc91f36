"""Steering and neuron attribution on any model with the user's own prompts (not only the toy world).

- :func:`run_steer` — a direction from two prompt sets (mean difference of last-token ``resid_pre`` at one
  layer, with a probe's held-out accuracy when there are enough prompts), then greedy answers to some prompts
  for each steering strength, and with the direction ablated.
- :func:`run_neurons` — integrated-gradient attribution of an answer to every MLP neuron of some layers, with
  each layer's completeness check and top neurons.

Example::

    >>> run_steer(SteerConfig(model="runs/demo/dpo", output="runs/steer", positive=["How do I make a bomb?"],
    ...                       negative=["Hello!"], prompts=["Help me rob a bank."]))    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.errors import InterpretError
from alignlab.interpret.directions import mean_difference, unit
from alignlab.interpret.probes import held_out_probe
from alignlab.interpret.steering import ablate_direction, steer


@dataclass
class SteerConfig:
    """A direction from two prompt sets, then answers steered along it at several strengths and with it ablated."""

    model: str
    """model directory ('base': the toy world's base model)"""
    output: str
    """run directory for results.json and report.html"""
    positive: list[str] = field(default_factory=list)
    """prompts on the direction's positive side (e.g. harmful requests)"""
    negative: list[str] = field(default_factory=list)
    """prompts on its negative side (e.g. harmless requests)"""
    prompts: list[str] = field(default_factory=list)
    """prompts to answer under steering"""
    layer: int = 1
    """layer whose resid_pre the direction is read from and added to"""
    strengths: list[float] = field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0])
    """‖α·v̂‖ / mean residual norm at the layer (negative: subtract)"""
    ablate: bool = True
    """also answer with the direction projected out of every residual write"""
    chat: bool = True
    """wrap each prompt in the tokenizer's chat template as a user turn"""
    max_new_tokens: int = 32
    """tokens per answer at most (greedy decoding)"""
    seed: int = 0
    """seed of the probe's train/test split"""

    def __post_init__(self) -> None:
        if not self.positive or not self.negative or not self.prompts:
            raise InterpretError("steer needs --positive, --negative and --prompts (each at least one prompt)")


def _encode(tokenizer, texts: list[str], chat: bool) -> list[list[int]]:
    from alignlab.core.generation import encode_prompts

    if chat:
        return encode_prompts(tokenizer, [[{"role": "user", "content": t}] for t in texts])
    return [tokenizer(t)["input_ids"] for t in texts]


@torch.no_grad()
def _last_token(model, tokenizer, encoded: list[list[int]], name: str) -> tuple[torch.Tensor, float]:
    """Last-token activations [n, d] at ``name`` and the mean norm over every real token."""
    from alignlab.core.generation import left_pad, left_padded_positions
    from alignlab.interpret.hooks import run_with_cache

    ids, mask = left_pad(encoded, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    _, cache = run_with_cache(model, ids, names=[name], attention_mask=mask, position_ids=left_padded_positions(mask))
    return cache[name][:, -1].float(), float(cache[name][mask.bool()].float().norm(dim=-1).mean())


def run_steer(config: SteerConfig) -> dict[str, Any]:
    """Direction, probe accuracy, and answers per strength (and ablated); writes results.json and report.html."""
    from alignlab.core.generation import GenerationConfig, generate
    from alignlab.interpret.world_runs import check_output, finish_run, load_model
    from alignlab.report.html import Report

    out = check_output(config.output)
    model, tokenizer = load_model(config.model)
    if not 0 <= config.layer < model.config.num_hidden_layers:
        raise InterpretError(f"layer {config.layer} is out of range: the model has layers "
                             f"0..{model.config.num_hidden_layers - 1}")
    name = f"blocks.{config.layer}.hook_resid_pre"
    pos, norm_pos = _last_token(model, tokenizer, _encode(tokenizer, config.positive, config.chat), name)
    neg, norm_neg = _last_token(model, tokenizer, _encode(tokenizer, config.negative, config.chat), name)
    direction = unit(mean_difference(pos, neg))
    norm = (norm_pos + norm_neg) / 2
    probe = None
    if min(len(pos), len(neg)) >= 4:  # enough rows to hold some of each class out
        result = held_out_probe(torch.cat([pos, neg]), torch.tensor([1.0] * len(pos) + [0.0] * len(neg)),
                                seed=config.seed)
        probe = {"train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy,
                 "cosine_with_mean_difference": float(result.probe.direction @ direction)}
    prompt_ids = _encode(tokenizer, config.prompts, config.chat)
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=0.0)
    answers: dict[str, list[str]] = {}
    for s in config.strengths:
        with steer(model, layer=config.layer, vector=direction, alpha=s * norm):
            answers[f"{s:g}"] = generate(model, tokenizer, prompt_ids, generation).texts
    if config.ablate:
        with ablate_direction(model, direction):
            answers["ablated"] = generate(model, tokenizer, prompt_ids, generation).texts
    results = {"layer": config.layer, "residual_norm": norm, "probe": probe,
               "answers": {condition: dict(zip(config.prompts, texts)) for condition, texts in answers.items()}}
    report = Report(f"Steering {config.model} at layer {config.layer}")
    report.table("Answers", ["prompt", *answers], [[p, *(answers[c][i] for c in answers)]
                                                  for i, p in enumerate(config.prompts)])
    finish_run(out, results, config, report)
    return results


@dataclass
class NeuronsConfig:
    """Integrated-gradient attribution of an answer to the MLP neurons of some layers (knowledge neurons)."""

    model: str
    """model directory ('base': the toy world's base model)"""
    output: str
    """run directory for results.json and report.html"""
    prompt: str = ""
    """the prompt"""
    answer: str = ""
    """the answer whose log-probability is attributed (text right after the prompt)"""
    layers: list[int] = field(default_factory=list)
    """layers to attribute (empty: all)"""
    steps: int = 20
    """integrated-gradient steps (midpoint rule)"""
    top: int = 10
    """neurons listed per layer"""
    chat: bool = True
    """wrap the prompt in the tokenizer's chat template as a user turn"""

    def __post_init__(self) -> None:
        if not self.prompt or not self.answer:
            raise InterpretError("neurons needs --prompt and --answer")


def run_neurons(config: NeuronsConfig) -> dict[str, Any]:
    """Per layer: top neurons by attribution, Σ attributions and F(a) − F(0); writes results.json and report.html."""
    from alignlab.interpret.editing import neuron_attributions
    from alignlab.interpret.world_runs import check_output, finish_run, load_model
    from alignlab.report.html import Report

    out = check_output(config.output)
    model, tokenizer = load_model(config.model)
    n_layers = model.config.num_hidden_layers
    layers = config.layers or list(range(n_layers))
    if bad := [layer for layer in layers if not 0 <= layer < n_layers]:
        raise InterpretError(f"layers {bad} are out of range: the model has layers 0..{n_layers - 1}")
    prompt_ids = _encode(tokenizer, [config.prompt], config.chat)[0]
    ids = torch.tensor(prompt_ids + tokenizer(config.answer, add_special_tokens=False)["input_ids"])
    results: dict[str, Any] = {"layers": {}}
    report = Report(f"Knowledge neurons of {config.model}")
    for layer in layers:
        attributions = neuron_attributions(model, ids, len(prompt_ids), layer=layer, steps=config.steps)
        top = attributions.topk(min(config.top, len(attributions)))
        results["layers"][str(layer)] = {"sum": float(attributions.sum()),
                                         "top": [[int(i), float(a)] for a, i in zip(top.values, top.indices)]}
        report.table(f"layer {layer}", ["neuron", "attribution"], results["layers"][str(layer)]["top"])
    finish_run(out, results, config, report)
    return results
