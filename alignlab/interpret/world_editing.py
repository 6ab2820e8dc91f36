"""Fact editing and knowledge neurons measured exactly on the toy world: "the capital of X is Y'".

For each edit (a known country whose capital the model answers right, and a counterfactual capital taken
from another country), at each layer:

1. **Knowledge neurons** (Dai et al. 2022): integrated-gradient attributions of the layer's MLP neurons to
   log P(the model's own answer | prompt); the completeness gap ``|Σ attr − (F(a) − F(0))|``; and the
   change of that log-probability when the top-``k`` neurons are zeroed, against ``k`` random neurons.
2. **Rank-one edit** (ROME, :mod:`alignlab.interpret.editing`): the key at the country's last token of the
   edit phrasing, a value optimised so the model gives its own answer with the capital replaced, the key
   second moment ``C`` from the world's texts. Then, by greedy generation and exact string checks:

   - *efficacy*: the edit phrasing's answer names the new capital and not the old one;
   - *generalisation*: the same on the other phrasings of the capital question;
   - *specificity*: other countries' capital answers, and the same country's other facts, are unchanged
     (identical text), and other countries' capitals are still right.

The weight is restored after each edit, so edits are measured one at a time.

Example::

    >>> results = run_edit(EditConfig(output="runs/interpret/edit"))      # doctest: +SKIP
    >>> results["layers"]["1"]["efficacy"]                               # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alignlab.core.generation import encode_prompts, left_pad
from alignlab.core.tokenize import render_prompt
from alignlab.errors import InterpretError
from alignlab.interpret.editing import (
    edited_weight,
    key_second_moment,
    mlp_keys,
    neuron_attributions,
    optimise_value,
)
from alignlab.interpret.world_directions import WorldRunConfig, _check_layers, mean_se
from alignlab.interpret.world_runs import check_output, finish_run, judged, load_model
from alignlab.world.datasets import World
from alignlab.world.families import FAMILIES, WorldPrompt, mentions


@dataclass
class EditConfig(WorldRunConfig):
    """Edit world facts (the capital of a country) with a rank-one MLP edit, and attribute them to neurons."""

    output: str = "runs/interpret/edit"
    """run directory: results.json, samples.jsonl, report.html"""
    model: str = "runs/demo/dpo"
    """the model to edit (a copy in memory; the directory is only read)"""
    layers: list[int] = field(default_factory=lambda: [0, 1, 2])
    """MLP layers to edit, each separately (not the last: its output at the subject token reaches no later token)"""
    n_edits: int = 8
    """edits per seed (countries whose capital the model answers right, each given another country's capital)"""
    template: int = 0
    """the phrasing of the capital question the edit is computed on; the others measure generalisation"""
    value_steps: int = 60
    """Adam steps of the value optimisation"""
    value_lr: float = 0.5
    """its learning rate"""
    value_weight_decay: float = 1e-4
    """L2 penalty on the value shift δ"""
    value_through_edit: bool = True
    """optimise δ as the rank-one edit applies it, on every token of the sequence (false: at the subject token
    only, as ROME does)"""
    covariance_prompts: int = 1000
    """world prompts (train split, every family) whose tokens' keys estimate C, beside one copy of the world's
    knowledge-base texts"""
    ig_steps: int = 50
    """integrated-gradient steps (midpoint rule)"""
    top_neurons: int = 5
    """knowledge neurons zeroed (against as many random neurons)"""
    temperature: float = 0.0
    """greedy answers: every check is on the model's most likely answer"""


def subject_position(tokenizer, prompt: WorldPrompt) -> int:
    """The position of the country name's last token in the rendered prompt (the key ROME reads)."""
    text = render_prompt(tokenizer, prompt.messages)
    country = prompt.meta["country"]
    end = text.rfind(country) + len(country)
    if end < len(country):
        raise InterpretError(f"'{country}' does not occur in the rendered prompt {text!r}")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return max(i for i, (start, _) in enumerate(offsets) if start < end)


def covariances(model: nn.Module, tokenizer, world: World, layers: list[int], n_prompts: int,
                batch_size: int = 64) -> dict[int, torch.Tensor]:
    """``C = E[k kᵀ]`` of each layer's MLP keys over world texts (prompts as the model sees them, and prose)."""
    rng = random.Random("alignlab-edit-covariance")
    prompts = world.sample_prompts(n_prompts, rng, split="train")
    texts = [render_prompt(tokenizer, p.messages) for p in prompts]
    texts += [tokenizer.bos_token + d["text"] + tokenizer.eos_token for d in world.corpus_documents(repeats=1)]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def batches():
        for lo in range(0, len(encoded), batch_size):
            yield left_pad(encoded[lo:lo + batch_size], tokenizer.pad_token_id)

    return {layer: key_second_moment(mlp_keys(model, batches(), layer=layer)) for layer in layers}


def _knowledge_neurons(model: nn.Module, ids: torch.Tensor, answer_start: int, layer: int, config: EditConfig,
                       rng: random.Random) -> dict[str, float]:
    """IG attributions of ``layer``'s neurons to the answer, completeness gap, and the effect of zeroing the top ones."""
    from alignlab.interpret.hooks import hooks

    name, position = f"blocks.{layer}.mlp.hook_post", answer_start - 1
    targets = ids[answer_start:]

    def answer_logprob(zeroed: list[int]) -> float:
        def zero(act: torch.Tensor, _name: str) -> torch.Tensor:
            act = act.clone()
            act[:, position, zeroed] = 0.0
            return act

        with torch.no_grad(), hooks(model, {name: zero}):
            logits = model(ids[None]).logits[0, answer_start - 1:-1].float()
        return float(logits.log_softmax(-1).gather(-1, targets[:, None]).sum())

    attributions = neuron_attributions(model, ids, answer_start, layer=layer, steps=config.ig_steps)
    d_ff = len(attributions)
    full, baseline = answer_logprob([]), answer_logprob(list(range(d_ff)))
    top = attributions.topk(config.top_neurons).indices.tolist()
    random_neurons = rng.sample(range(d_ff), config.top_neurons)
    return {"completeness_gap": abs(float(attributions.sum()) - (full - baseline)), "logprob_change": full - baseline,
            "top_zeroed_change": answer_logprob(top) - full, "random_zeroed_change": answer_logprob(random_neurons) - full}


def run_edit(config: EditConfig) -> dict[str, Any]:
    """Edit capitals at each layer and measure efficacy, generalisation, specificity and knowledge neurons."""
    out = check_output(config.output)
    world = World(config.world_seed, config.world_size)
    model, tokenizer = load_model(config.model, config.world_seed, config.world_size)
    layers = _check_layers(model, config.layers)
    if model.config.num_hidden_layers - 1 in layers:
        raise InterpretError(f"layer {model.config.num_hidden_layers - 1} is the last: an edit of its MLP at the subject "
                             "token cannot reach the answer (no attention layer reads it afterwards)")
    facts = FAMILIES["facts"].prompts(world.kb)
    capitals = [p for p in facts if p.meta["attribute"] == "capital"]
    n_templates = 1 + max(p.meta["template"] for p in capitals)
    if not 0 <= config.template < n_templates:
        raise InterpretError(f"template must be in 0..{n_templates - 1} (the capital question has {n_templates} phrasings)")
    others = [p for p in facts if p.meta["attribute"] != "capital" and p.meta["template"] == 0]
    checked = capitals + others

    def answers() -> list[str]:
        rows = judged(model, tokenizer, checked, temperature=0.0, seed=0, max_new_tokens=config.max_new_tokens)
        return [row["response"] for row in rows]

    before = answers()
    before_of = {p.text: a for p, a in zip(checked, before)}
    known = [p for p in capitals if p.meta["template"] == config.template and mentions(before_of[p.text], {p.answer})]
    if len(known) < config.n_edits:
        raise InterpretError(f"the model answers only {len(known)} capitals right; asked for {config.n_edits} edits")
    cov = covariances(model, tokenizer, world, layers, config.covariance_prompts)
    records, samples = [], []
    for seed in tqdm(config.seeds, desc="edit: seeds"):
        rng = random.Random(f"alignlab-edit-{seed}")
        for prompt in rng.sample(known, config.n_edits):
            country, old = prompt.meta["country"], prompt.answer
            new = rng.choice([c.capital for c in world.kb.countries if c.capital != old])
            target = before_of[prompt.text].replace(old, new)
            prompt_ids = encode_prompts(tokenizer, [prompt.messages])[0]
            ids = torch.tensor(prompt_ids + tokenizer(target, add_special_tokens=False)["input_ids"]
                               + [tokenizer.eos_token_id])
            original_ids = torch.tensor(prompt_ids + tokenizer(before_of[prompt.text], add_special_tokens=False)["input_ids"]
                                        + [tokenizer.eos_token_id])
            position = subject_position(tokenizer, prompt)
            for layer in layers:
                neurons = _knowledge_neurons(model, original_ids, len(prompt_ids), layer, config, rng)
                key, delta = optimise_value(model, ids, len(prompt_ids), layer=layer, position=position,
                                            steps=config.value_steps, lr=config.value_lr,
                                            weight_decay=config.value_weight_decay,
                                            C=cov[layer] if config.value_through_edit else None)
                with edited_weight(model, layer, key, delta, cov[layer]):
                    after = answers()
                record = score_edit(checked, before, after, country=country, old=old, new=new,
                                    template=config.template)
                records.append({"seed": seed, "layer": layer, "country": country, "old": old, "new": new,
                                **record, **neurons})
                samples += [{"seed": seed, "layer": layer, "edit": f"{country}: {old} -> {new}", "prompt": p.text,
                             "before": b, "after": a} for p, b, a in zip(checked, before, after)
                            if p.meta["country"] == country or a != b]
    results = {"edits": records, "layers": summarise_edits(records, layers, config.seeds), "n_known_capitals": len(known)}
    finish_run(out, results, config, _edit_report(results, config), samples)
    return results


def score_edit(checked: list[WorldPrompt], before: list[str], after: list[str], *, country: str, old: str, new: str,
               template: int) -> dict[str, float]:
    """Efficacy, generalisation and specificity of one edit, from the answers before and after it (exact checks)."""
    def says_new(answer: str) -> float:
        return float(mentions(answer, {new}) and not mentions(answer, {old}))

    same = [(p, b, a) for p, b, a in zip(checked, before, after) if p.meta["country"] == country]
    other_capitals = [(p, b, a) for p, b, a in zip(checked, before, after)
                      if p.meta["country"] != country and p.meta["attribute"] == "capital"]
    edit = [a for p, _, a in same if p.meta["attribute"] == "capital" and p.meta["template"] == template]
    paraphrases = [a for p, _, a in same if p.meta["attribute"] == "capital" and p.meta["template"] != template]
    same_other = [(b, a) for p, b, a in same if p.meta["attribute"] != "capital"]
    return {
        "efficacy": says_new(edit[0]),
        "generalisation": sum(map(says_new, paraphrases)) / len(paraphrases),
        "specificity_other_countries": sum(a == b for _, b, a in other_capitals) / len(other_capitals),
        "other_capitals_right_after": sum(mentions(a, {p.answer}) for p, _, a in other_capitals) / len(other_capitals),
        "specificity_same_country": sum(a == b for b, a in same_other) / len(same_other),
    }


METRICS = ("efficacy", "generalisation", "specificity_other_countries", "other_capitals_right_after",
           "specificity_same_country", "completeness_gap", "logprob_change", "top_zeroed_change",
           "random_zeroed_change")


def summarise_edits(records: list[dict[str, Any]], layers: list[int], seeds: list[int]) -> dict[str, Any]:
    """Per layer: each metric's per-seed mean, then mean ± standard error over seeds."""
    out = {}
    for layer in layers:
        per_seed = {seed: [r for r in records if r["layer"] == layer and r["seed"] == seed] for seed in seeds}
        out[str(layer)] = {metric: mean_se([sum(r[metric] for r in rows) / len(rows) for rows in per_seed.values()])
                           for metric in METRICS}
    return out


def _edit_report(results: dict[str, Any], config: EditConfig):
    from alignlab.report.html import Report

    report = Report("Fact editing on the toy world")
    report.text(f"Model {config.model}; {config.n_edits} capital edits per seed, seeds {config.seeds}; greedy answers, "
                "exact string checks (mean over seeds ± standard error).")
    report.table("Rank-one edits by layer", ["layer", *METRICS[:5]],
                 [[layer] + [f"{v[m]['mean']:.3f} ± {v[m]['se']:.3f}" for m in METRICS[:5]]
                  for layer, v in results["layers"].items()])
    report.table("Knowledge neurons by layer (change of log P(answer))", ["layer", *METRICS[5:]],
                 [[layer] + [f"{v[m]['mean']:.3f} ± {v[m]['se']:.3f}" for m in METRICS[5:]]
                  for layer, v in results["layers"].items()])
    report.bar_plot("Edit quality by layer", [f"layer {k}" for k in results["layers"]],
                    {m: [v[m]["mean"] for v in results["layers"].values()] for m in METRICS[:3]})
    return report
