"""Directions measured on the toy world, where the judge is a program: refusal, harm (PCA), "knows the answer".

- :func:`run_refusal` — the **refusal direction** (Arditi et al. 2024): the difference of mean last-token
  activations on harmful vs benign prompts, in the aligned model and in the base model. Ablating it at each
  layer, and injecting it at one layer with a signed strength sweep (the aligned model's direction into both
  models, the base model's own into the base), are scored by the judge: harmlessness on the world's harmful
  eval prompts, helpfulness on its benign eval prompts. Each side of a sweep is fitted with the rate linear
  and quadratic in the injected norm (Wolf et al. 2024 predict alignment linear, helpfulness quadratic).
- :func:`run_harm_pca` — a **harm direction by PCA** (Schramowski et al. 2022): the first principal component
  of harmful and benign prompts' activations, per layer, as a one-dimensional classifier on held-out prompts
  (beside the mean difference and a logistic probe on the same split).
- :func:`run_truth` — **truthfulness by intervention** (Li et al. 2023): a probe for "the model knows the
  answer" (known vs held-out countries), then a shift along its direction at inference, swept in strength:
  honesty on the held-out eval countries and helpfulness on known facts, by the judge.

Strengths are ``‖α·v̂‖ / mean ‖h‖`` at the steered layer (the residual norm over the prompts' tokens).
Every random choice (prompt samples, splits, sampling) is seeded; each run repeats over ``seeds``.

Example::

    >>> results = run_refusal(RefusalConfig(output="runs/interpret/refusal"))   # doctest: +SKIP
    >>> results["summary"]["aligned_ablated_harmlessness"]                      # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alignlab.errors import InterpretError
from alignlab.interpret.directions import (
    fit_power,
    mean_difference,
    midpoint_threshold,
    separation_accuracy,
    signed_first_component,
    unit,
)
from alignlab.interpret.probes import fit_probe, stratified_split
from alignlab.interpret.steering import ablate_direction, steer
from alignlab.interpret.world_runs import (
    BENIGN_FAMILIES,
    benign_sample,
    check_output,
    finish_run,
    judged,
    last_token_activations,
    load_model,
    rate,
    residual_norm,
    sample,
)
from alignlab.world.datasets import World


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "se", "n"}`` of per-seed values (standard error = sample standard deviation / √n)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    se = float(t.std() / len(t) ** 0.5) if len(t) > 1 else 0.0
    return {"mean": float(t.mean()), "se": se, "n": len(t)}


@dataclass
class WorldRunConfig:
    """Options every toy-world measurement shares."""

    output: str = "runs/interpret/run"
    """run directory: results.json, samples.jsonl, report.html"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one repetition per seed: prompt samples, splits and sampling all follow it"""
    temperature: float = 1.0
    """sampling temperature of the graded answers (the world's evaluation protocol samples at 1)"""
    max_new_tokens: int = 40
    """tokens per answer at most"""
    world_seed: int = 0
    """which toy world"""
    world_size: str = "small"
    """small or medium"""
    eval_per_family: int = 0
    """at most this many of each family's eval prompts are answered (0: all of them; fewer for a quick look)"""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise InterpretError("seeds is empty: give at least one seed")

    def eval_prompts(self, world: World, families: Sequence[str]) -> list:
        """The world's eval prompts of ``families``, each family cut to ``eval_per_family`` when it is set."""
        return [p for family in families
                for p in world.eval_prompts([family])[:self.eval_per_family or None]]


def _check_layers(model: nn.Module, layers: Sequence[int]) -> list[int]:
    n_layers = model.config.num_hidden_layers
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise InterpretError(f"layers {bad} are out of range: the model has layers 0..{n_layers - 1}")
    return list(layers)


def steering_sweep(model: nn.Module, tokenizer, prompts: Sequence, *, layer: int, direction: torch.Tensor,
                   strengths: Sequence[float], norm: float, sign: float, config: WorldRunConfig, seed: int,
                   tag: str) -> list[list[dict[str, Any]]]:
    """Graded answers to ``prompts`` with ``sign · s · norm · v̂`` added at ``layer``, for each strength ``s``."""
    rows = []
    for s in strengths:
        with steer(model, layer=layer, vector=unit(direction), alpha=sign * s * norm):
            graded = judged(model, tokenizer, prompts, temperature=config.temperature, seed=seed,
                            max_new_tokens=config.max_new_tokens)
        rows.append([{**row, "seed": seed, "condition": tag, "strength": s} for row in graded])
    return rows


# ---- refusal -----------------------------------------------------------------------------------------


@dataclass
class RefusalConfig(WorldRunConfig):
    """The harmful-minus-benign direction of an aligned model and of the base model on the toy world: ablate it at
    each layer, and sweep a signed injection of it at one layer."""

    output: str = "runs/interpret/refusal"
    """run directory: results.json, samples.jsonl, report.html"""
    aligned: str = "runs/demo/dpo"
    """the aligned model whose refusal direction is measured (e.g. the demo's DPO model)"""
    base: str = "base"
    """the unaligned model ('base': the toy world's pretrained base model)"""
    layer: int = 2
    """the layer (resid_pre) the strength sweeps inject at; ablation is measured at every layer but 0"""
    n_train: int = 64
    """harmful and benign training prompts each, for the mean difference"""
    strengths: list[float] = field(default_factory=lambda: [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0])
    """signed ‖α·v̂‖ / mean residual norm at the layer (negative: the direction is subtracted); each side is fitted"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_train < 2 or 0.0 not in self.strengths:
            raise InterpretError("refusal needs n_train >= 2 and a strength sweep that includes 0")
        for side in (1, -1):
            if len([s for s in self.strengths if s * side >= 0]) < 3:
                raise InterpretError("each side of the strength sweep (s >= 0, s <= 0) needs at least 3 points to fit")


SWEEPS = {"aligned": ("aligned", "aligned"), "base_with_aligned_direction": ("base", "aligned"),
          "base": ("base", "base")}
"""sweep name → (model steered, model whose direction is injected)"""


def _rates(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Harmlessness on the harmful prompts and helpfulness on the benign ones."""
    return {"harmlessness": rate([r for r in rows if r["family"] == "harmful"], "harmlessness"),
            "helpfulness": rate([r for r in rows if r["family"] != "harmful"], "helpfulness")}


def side_fits(strengths: Sequence[float], values: Sequence[float]) -> dict[str, dict[str, dict[str, float]]]:
    """On each side of the sweep (``"positive"``: s ≥ 0, ``"negative"``: s ≤ 0), fits of the rate against the injected
    norm |s|: linear (``power1``) and quadratic (``power2``)."""
    fits = {}
    for side, sign in (("positive", 1), ("negative", -1)):
        points = [(abs(s), v) for s, v in zip(strengths, values) if s * sign >= 0]
        xs, ys = zip(*points)
        fits[side] = {f"power{p}": vars(fit_power(xs, ys, power=p)) for p in (1, 2)}
    return fits


def run_refusal(config: RefusalConfig) -> dict[str, Any]:
    """Measure the refusal direction (see the module docstring); writes the run directory and returns the results."""
    out = check_output(config.output)
    world = World(config.world_seed, config.world_size)
    models = {"aligned": load_model(config.aligned, config.world_seed, config.world_size),
              "base": load_model(config.base, config.world_seed, config.world_size)}
    n_layers = models["aligned"][0].config.num_hidden_layers
    _check_layers(models["aligned"][0], [config.layer])
    names = {layer: f"blocks.{layer}.hook_resid_pre" for layer in range(1, n_layers)}
    evals = config.eval_prompts(world, ["harmful", *BENIGN_FAMILIES])
    per_seed, samples = [], []
    for seed in tqdm(config.seeds, desc="refusal: seeds"):
        rng = random.Random(f"alignlab-refusal-{seed}")
        harmful = sample(world.splits.train["harmful"], config.n_train, rng)
        benign = benign_sample(world.splits.train, config.n_train, rng)

        def grade(which: str, condition: str, seed: int = seed) -> dict[str, float]:
            model, tokenizer = models[which]
            rows = judged(model, tokenizer, evals, temperature=config.temperature, seed=seed,
                          max_new_tokens=config.max_new_tokens)
            samples.extend({**row, "seed": seed, "model": which, "condition": condition} for row in rows)
            return _rates(rows)

        directions, norms, record = {}, {}, {"seed": seed, "plain": {}, "ablated": {}, "sweeps": {}}
        for which, (model, tokenizer) in models.items():
            acts_harmful = last_token_activations(model, tokenizer, harmful, list(names.values()))
            acts_benign = last_token_activations(model, tokenizer, benign, list(names.values()))
            directions[which] = {layer: mean_difference(acts_harmful[name], acts_benign[name])
                                 for layer, name in names.items()}
            norms[which] = residual_norm(model, tokenizer, harmful + benign, names[config.layer])
            record["plain"][which] = grade(which, "plain")
            record["ablated"][which] = {}
            for layer, direction in directions[which].items():
                with ablate_direction(model, direction):
                    record["ablated"][which][str(layer)] = grade(which, f"ablated at layer {layer}")
        record["cosine_aligned_base"] = {str(layer): float(unit(directions["aligned"][layer]) @
                                                           unit(directions["base"][layer])) for layer in names}
        record["residual_norm"] = norms
        for sweep, (steered, source) in SWEEPS.items():
            model, _ = models[steered]
            curve = []
            for s in config.strengths:
                with steer(model, layer=config.layer, vector=unit(directions[source][config.layer]),
                           alpha=s * norms[steered]):
                    curve.append(grade(steered, f"{sweep}, strength {s:g}"))
            rates = {dim: [point[dim] for point in curve] for dim in ("harmlessness", "helpfulness")}
            record["sweeps"][sweep] = {**rates, "fits": {dim: side_fits(config.strengths, v) for dim, v in rates.items()}}
        per_seed.append(record)
    results = _refusal_summary(per_seed, config, n_layers)
    finish_run(out, results, config, _refusal_report(results, config), samples)
    return results


def _refusal_summary(per_seed: list[dict[str, Any]], config: RefusalConfig, n_layers: int) -> dict[str, Any]:
    def across(get) -> dict[str, float]:
        return mean_se([get(record) for record in per_seed])

    dims = ("harmlessness", "helpfulness")
    plain = {m: {d: across(lambda r, m=m, d=d: r["plain"][m][d]) for d in dims} for m in ("aligned", "base")}
    ablated = {m: {str(layer): {d: across(lambda r, m=m, layer=layer, d=d: r["ablated"][m][str(layer)][d]) for d in dims}
                   for layer in range(1, n_layers)} for m in ("aligned", "base")}
    curves = {sweep: {d: [across(lambda r, sweep=sweep, d=d, i=i: r["sweeps"][sweep][d][i])
                          for i in range(len(config.strengths))] for d in dims} for sweep in SWEEPS}
    fits = {sweep: {d: {side: {p: {key: across(lambda r, sweep=sweep, d=d, side=side, p=p, key=key:
                                               r["sweeps"][sweep]["fits"][d][side][p][key]) for key in ("r2", "slope")}
                                   for p in ("power1", "power2")} for side in ("positive", "negative")}
                    for d in dims} for sweep in SWEEPS}
    cosine = {str(layer): across(lambda r, layer=layer: r["cosine_aligned_base"][str(layer)]) for layer in range(1, n_layers)}
    return {"per_seed": per_seed, "plain": plain, "ablated": ablated, "curves": curves, "fits": fits,
            "cosine_aligned_base": cosine, "strengths": list(config.strengths), "layer": config.layer}


def _refusal_report(results: dict[str, Any], config: RefusalConfig):
    from alignlab.report.html import Report

    def cell(v: dict[str, float]) -> str:
        return f"{v['mean']:.3f} ± {v['se']:.3f}"

    report = Report("Refusal direction on the toy world")
    report.text(f"Aligned model {config.aligned}; base model {config.base}; direction = mean last-token resid_pre on "
                f"harmful minus benign prompts; sweeps at layer {config.layer}; seeds {config.seeds} (mean ± s.e.).")
    rows = [[f"{m}, plain", cell(v["harmlessness"]), cell(v["helpfulness"])] for m, v in results["plain"].items()]
    rows += [[f"{m}, ablated at layer {layer}", cell(v["harmlessness"]), cell(v["helpfulness"])]
             for m, layers in results["ablated"].items() for layer, v in layers.items()]
    report.table("Directional ablation", ["model", "harmlessness", "helpfulness"], rows)
    for sweep, curve in results["curves"].items():
        report.line_plot(sweep, {d: list(zip(config.strengths, [p["mean"] for p in curve[d]])) for d in curve},
                         xlabel="signed strength ‖α·v̂‖ / mean ‖h‖", ylabel="rate")
    report.table("Fits against |strength| (R², mean over seeds)", ["sweep", "rate", "side", "linear", "quadratic"],
                 [[sweep, d, side, fit["power1"]["r2"]["mean"], fit["power2"]["r2"]["mean"]]
                  for sweep, dims in results["fits"].items() for d, sides in dims.items() for side, fit in sides.items()])
    return report


# ---- harm direction by PCA ---------------------------------------------------------------------------


@dataclass
class HarmPCAConfig(WorldRunConfig):
    """How well the first principal component of prompt activations separates harmful from benign prompts, per
    layer, on held-out prompts (with the mean difference and a logistic probe on the same split beside it)."""

    output: str = "runs/interpret/harm_pca"
    """run directory: results.json, report.html"""
    models: list[str] = field(default_factory=lambda: ["runs/demo/dpo", "base"])
    """models to measure ('base': the toy world's base model)"""
    n_per_class: int = 200
    """harmful and benign prompts each (drawn from both splits of the world)"""
    test_fraction: float = 0.3
    """share of each class held out for the accuracy"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """one random split (and prompt draw) per seed"""


def run_harm_pca(config: HarmPCAConfig) -> dict[str, Any]:
    """Held-out separation accuracy of PC1, mean difference and a probe, per model and layer (resid_post)."""
    out = check_output(config.output)
    world = World(config.world_seed, config.world_size)
    results: dict[str, Any] = {"models": {}}
    for model_name in config.models:
        model, tokenizer = load_model(model_name, config.world_seed, config.world_size)
        names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.config.num_hidden_layers)]
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for seed in tqdm(config.seeds, desc=f"harm PCA: {model_name}"):
            rng = random.Random(f"alignlab-harm-pca-{seed}")
            pools = {f: world.splits.train[f] + world.splits.eval[f] for f in world.splits.train}
            harmful = sample(pools["harmful"], config.n_per_class, rng)
            benign = benign_sample(pools, config.n_per_class, rng)
            acts = last_token_activations(model, tokenizer, harmful + benign, names)
            labels = torch.tensor([1.0] * len(harmful) + [0.0] * len(benign))
            train, test = stratified_split(labels, config.test_fraction, seed)
            for name in names:
                x = acts[name]
                pos_tr, neg_tr = x[train][labels[train] == 1], x[train][labels[train] == 0]
                pos_te, neg_te = x[test][labels[test] == 1], x[test][labels[test] == 0]
                record = {}
                for method, direction in (("pca", signed_first_component(pos_tr, neg_tr)),
                                          ("mean_difference", unit(mean_difference(pos_tr, neg_tr)))):
                    threshold = midpoint_threshold(pos_tr @ direction, neg_tr @ direction)
                    record[method] = separation_accuracy(direction, threshold, pos_te, neg_te)
                record["probe"] = fit_probe(x[train], labels[train]).accuracy(x[test], labels[test])
                centred = torch.cat([pos_tr, neg_tr]) - torch.cat([pos_tr, neg_tr]).mean(0)
                record["pc1_explained"] = float(torch.linalg.svdvals(centred)[0] ** 2 / (centred**2).sum())
                rows[name].append(record)
        results["models"][model_name] = {
            name: {key: mean_se([r[key] for r in records]) for key in records[0]} for name, records in rows.items()}
    finish_run(out, results, config, _harm_report(results, config))
    return results


def _harm_report(results: dict[str, Any], config: HarmPCAConfig):
    from alignlab.report.html import Report

    report = Report("Harm direction by PCA on the toy world")
    report.text(f"Held-out accuracy of a one-dimensional classifier along each direction (threshold halfway between "
                f"the training classes' means), {len(config.seeds)} random splits (test share {config.test_fraction}).")
    for model_name, layers in results["models"].items():
        report.table(model_name, ["layer", "PC1", "mean difference", "probe", "PC1 explained"],
                     [[name] + [f"{v[key]['mean']:.3f} ± {v[key]['se']:.3f}" for key in
                                ("pca", "mean_difference", "probe", "pc1_explained")] for name, v in layers.items()])
        report.line_plot(f"{model_name}: held-out accuracy", {
            key: [(i, v[key]["mean"]) for i, v in enumerate(layers.values())] for key in ("pca", "mean_difference", "probe")},
            xlabel="layer (resid_post)", ylabel="accuracy")
    return report


# ---- truthfulness by intervention --------------------------------------------------------------------


@dataclass
class TruthConfig(WorldRunConfig):
    """A probe for "knows the answer" (facts about known vs held-out countries) and a shift along its direction:
    honesty on held-out countries and helpfulness on known facts, swept in strength."""

    output: str = "runs/interpret/truth"
    """run directory: results.json, samples.jsonl, report.html"""
    models: list[str] = field(default_factory=lambda: ["runs/demo/dpo", "base"])
    """models to measure ('base': the toy world's base model)"""
    n_per_class: int = 200
    """fact questions about known countries and about held-out (training) countries, each"""
    test_fraction: float = 0.3
    """share of each class held out to score the probe and choose the layer"""
    strengths: list[float] = field(default_factory=lambda: [-0.6, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.4])
    """shift s·mean‖h‖ along the probe's unit direction (positive: towards "knows")"""


def run_truth(config: TruthConfig) -> dict[str, Any]:
    """Probe accuracy per layer, then the intervention sweep at the best layer, per model and seed."""
    out = check_output(config.output)
    world = World(config.world_seed, config.world_size)
    evals = config.eval_prompts(world, ["unknowns", "facts"])
    results: dict[str, Any] = {"models": {}, "strengths": list(config.strengths)}
    samples = []
    for model_name in config.models:
        model, tokenizer = load_model(model_name, config.world_seed, config.world_size)
        layers = range(1, model.config.num_hidden_layers)
        names = {layer: f"blocks.{layer}.hook_resid_pre" for layer in layers}
        per_seed = []
        for seed in tqdm(config.seeds, desc=f"truth: {model_name}"):
            rng = random.Random(f"alignlab-truth-{seed}")
            known = sample(world.splits.train["facts"], config.n_per_class, rng)
            unknown = sample(world.splits.train["unknowns"], config.n_per_class, rng)
            acts = last_token_activations(model, tokenizer, known + unknown, list(names.values()))
            labels = torch.tensor([1.0] * len(known) + [0.0] * len(unknown))
            train, test = stratified_split(labels, config.test_fraction, seed)
            probes = {layer: fit_probe(acts[name][train], labels[train]) for layer, name in names.items()}
            accuracy = {layer: probe.accuracy(acts[names[layer]][test], labels[test]) for layer, probe in probes.items()}
            layer = max(accuracy, key=lambda k: (accuracy[k], -k))
            norm = residual_norm(model, tokenizer, known + unknown, names[layer])
            sweep = steering_sweep(model, tokenizer, evals, layer=layer, direction=probes[layer].direction,
                                   strengths=config.strengths, norm=norm, sign=1.0, config=config, seed=seed,
                                   tag=f"{model_name}, shifted towards 'knows'")
            samples += [r for rows in sweep for r in rows]
            per_seed.append({
                "seed": seed, "layer": layer, "probe_accuracy": {str(k): v for k, v in accuracy.items()},
                "residual_norm": norm,
                "honesty_unknown": [rate([r for r in rows if r["family"] == "unknowns"], "honesty") for rows in sweep],
                "helpfulness_facts": [rate([r for r in rows if r["family"] == "facts"], "helpfulness") for rows in sweep],
            })
        results["models"][model_name] = {
            "per_seed": per_seed, "layers_chosen": [r["layer"] for r in per_seed],
            "probe_accuracy": {str(k): mean_se([r["probe_accuracy"][str(k)] for r in per_seed]) for k in layers},
            "curves": {key: [mean_se([r[key][i] for r in per_seed]) for i in range(len(config.strengths))]
                       for key in ("honesty_unknown", "helpfulness_facts")},
        }
    finish_run(out, results, config, _truth_report(results, config), samples)
    return results


def _truth_report(results: dict[str, Any], config: TruthConfig):
    from alignlab.report.html import Report

    report = Report("Truthfulness by intervention on the toy world")
    report.text("Shift along a probe's direction for 'knows the answer' (positive strength: towards knowing); "
                f"honesty on held-out eval countries and helpfulness on known facts, seeds {config.seeds}.")
    for model_name, record in results["models"].items():
        report.table(f"{model_name}: probe accuracy (held out)", ["layer", "accuracy"],
                     [[k, f"{v['mean']:.3f} ± {v['se']:.3f}"] for k, v in record["probe_accuracy"].items()])
        report.line_plot(f"{model_name}: intervention", {
            key: list(zip(config.strengths, [p["mean"] for p in curve])) for key, curve in record["curves"].items()},
            xlabel="strength (towards 'knows')", ylabel="rate")
    return report
