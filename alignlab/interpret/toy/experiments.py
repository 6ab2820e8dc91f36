"""The toy experiments over several seeds, each writing ``results.json`` (with command, commit, seeds and
machine) and ``report.html`` into a run directory. ``alignlab interpret toy ...`` and ``alignlab interpret sae``
are thin layers over these functions.

Example::

    >>> results = induction_experiment(InductionExperiment(output="runs/induction"))   # doctest: +SKIP
    >>> results["summary"]["formation_step"]["2"]                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError
from alignlab.interpret.toy.attention_only import InductionConfig
from alignlab.interpret.toy.sae_run import SAERunConfig
from alignlab.interpret.toy.solu import SoluConfig
from alignlab.interpret.toy.superposition import SuperpositionConfig


@dataclass
class Experiment:
    """What every toy experiment needs: a run directory and its seeds."""

    output: str
    """run directory for results.json and report.html"""
    seed: int = 0
    """first seed"""
    seeds: int = 3
    """number of seeds (seed, seed + 1, ...); the spread over them is reported"""
    progress: bool = True
    """show progress bars"""

    def seed_list(self) -> list[int]:
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        return list(range(self.seed, self.seed + self.seeds))


def mean_se(values: list[float]) -> dict[str, float | int]:
    """Mean, standard error and count of ``values`` (SE 0 for a single value)."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "se": se, "n": len(values)}


def start(config: Experiment) -> Path:
    """Refuse a directory holding foreign files; mark it as an alignlab run (config.yaml and the marker)."""
    from alignlab.core.rundir import announce_config, foreign_files, write_run_files

    output = Path(config.output)
    if files := foreign_files(output):
        raise ConfigError(f"output directory '{output}' holds files alignlab did not write "
                          f"({', '.join(files[:5])}); choose another --output")
    announce_config(config, output)
    write_run_files(output)
    return output


def clock() -> tuple[float, float]:
    """Wall and CPU (this process, all its threads) seconds, to time a run from its start."""
    return time.perf_counter(), time.process_time()


def finish(config: Experiment, results: dict[str, Any], report, began: tuple[float, float]) -> Path:
    """Write results.json (with the run's wall and CPU seconds, all seeds) and report.html. CPU seconds are the
    honest measure on a shared machine: wall time grows with other people's load, CPU time does not."""
    from alignlab.core.provenance import write_result

    wall, cpu = clock()
    results["wall_seconds"], results["cpu_seconds"] = wall - began[0], cpu - began[1]
    output = Path(config.output)
    path = write_result(output / "results.json", results, seed=config.seed, config=config, seeds=config.seed_list())
    report.write(output / "report.html")
    return path


# ---- induction heads and circuits ------------------------------------------------------------------------

@dataclass
class InductionExperiment(Experiment):
    """Attention-only transformers of each depth trained on repeated random sequences; the 2-layer model's
    circuits."""

    layers: list[int] = field(default_factory=lambda: [1, 2])
    """depths to train (a 1-layer model cannot form an induction head: the control)"""
    train: InductionConfig = field(default_factory=InductionConfig)
    """model shape and training budget (its n_layers and seed are set per run)"""


def induction_experiment(config: InductionExperiment) -> dict[str, Any]:
    """Train every depth for every seed; per run the measurement history and formation step, and for 2-layer
    models the QK/OV circuit analysis (composition scores, the previous-token → induction K-composition)."""
    from alignlab.interpret.toy import circuits, plots
    from alignlab.interpret.toy.attention_only import formation_step, train_induction
    from alignlab.report.html import Report

    began, _ = clock(), start(config)
    results: dict[str, Any] = {"seeds": {}}
    for seed in config.seed_list():
        runs = {}
        for n_layers in config.layers:
            train = dataclasses.replace(config.train, seed=seed,
                                        model=dataclasses.replace(config.train.model, n_layers=n_layers))
            model, history = train_induction(train, progress=config.progress)
            run: dict[str, Any] = {"history": history, "formation_step": formation_step(history, train.formation_threshold),
                                   "final": {k: history[-1][k] for k in ("loss", "icl_score", "induction", "previous_token")}}
            if n_layers >= 2:
                final = history[-1]
                circuit = circuits.induction_circuit(model, final["previous_token"], final["induction"],
                                                     train.formation_threshold)
                run["circuit"] = circuit
                run["copying_score"] = [circuits.copying_score(model, layer).tolist() for layer in range(n_layers)]
            runs[str(n_layers)] = run
        results["seeds"][str(seed)] = {"layers": runs}
    results["summary"] = induction_summary(results, config.train.formation_threshold)
    report = Report("Induction heads in attention-only transformers")
    report.table("Over seeds (mean ± SE)", ["quantity", "mean", "SE", "n"],
                 [[name, v["mean"], v["se"], v["n"]] for name, v in results["summary"]["table"].items()])
    report.figure(plots.induction_figure(results), "phase change")
    if "2" in next(iter(results["seeds"].values()))["layers"]:
        report.figure(plots.composition_figure(results), "composition")
    finish(config, results, report, began)
    return results


def induction_summary(results: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Formation steps per depth and, over the seeds whose model formed one, means ± SE of the headline numbers
    (computed from the per-seed results alone, so a results file can be summarised again)."""
    from alignlab.interpret.toy.circuits import composition_correlation

    seeds = list(results["seeds"].values())
    depths = list(seeds[0]["layers"])
    summary: dict[str, Any] = {"formation_step": {d: [s["layers"][d]["formation_step"] for s in seeds] for d in depths},
                               "table": {}}
    for d in depths:
        runs = [s["layers"][d] for s in seeds]
        formed = [r["formation_step"] for r in runs if r["formation_step"] is not None]
        table = summary["table"]
        table[f"{d}-layer: seeds with an induction head"] = {"mean": len(formed), "se": 0.0, "n": len(runs)}
        if formed:
            table[f"{d}-layer: formation step"] = mean_se(formed)
        table[f"{d}-layer: final loss"] = mean_se([r["final"]["loss"] for r in runs])
        table[f"{d}-layer: final ICL score"] = mean_se([r["final"]["icl_score"] for r in runs])
        table[f"{d}-layer: best induction score"] = mean_se([max(max(x) for x in r["final"]["induction"]) for r in runs])
        if "circuit" in runs[0]:
            circuits = [r["circuit"] for r in runs]
            for key in ("previous_token_score", "k_composition", "q_composition", "v_composition",
                        "copying_score_induction_head"):
                table[f"{d}-layer: {key.replace('_', ' ')}"] = mean_se([c[key] for c in circuits])
            if "composition_baseline" in circuits[0]:  # files written before the baseline was reported lack it
                table[f"{d}-layer: random-matrix composition baseline"] = mean_se(
                    [c["composition_baseline"] for c in circuits])
                for kind in "kqv":
                    table[f"{d}-layer: {kind} composition above the baseline"] = mean_se(
                        [c[f"{kind}_composition_above_baseline"] for c in circuits])
            table[f"{d}-layer: mean K-composition of the other layer-0 heads"] = mean_se(
                [statistics.fmean(c["k_composition_other_heads"]) for c in circuits])
            for key, label in (("previous_token_head_is_top_k_writer", "the previous-token head is the top K-writer"),
                               ("k_is_strongest_link", "K is the pair's strongest composition")):
                table[f"{d}-layer: seeds where {label}"] = {"mean": sum(c[key] for c in circuits), "se": 0.0,
                                                            "n": len(circuits)}
            correlations = [composition_correlation(r["final"]["previous_token"], r["final"]["induction"],
                                                    r["circuit"]["scores"], threshold)[1] for r in runs]
            for kind in "qkv":
                values = [c[kind] for c in correlations]
                if None not in values:
                    table[f"{d}-layer: corr(previous-token score, {kind.upper()}-composition)"] = mean_se(values)
    return summary


# ---- superposition ---------------------------------------------------------------------------------------

@dataclass
class SuperpositionExperiment(Experiment):
    """Superposition toy models: the sparsity × importance sweep and the 2-features-in-1-dimension phase diagram."""

    toy: SuperpositionConfig = field(default_factory=SuperpositionConfig)
    """sizes, sweeps and training budget (its seed is set per run)"""


def superposition_experiment(config: SuperpositionExperiment) -> dict[str, Any]:
    from alignlab.interpret.toy import plots
    from alignlab.interpret.toy.superposition import run_phase_diagram, run_sweep
    from alignlab.report.html import Report

    began, _ = clock(), start(config)
    results: dict[str, Any] = {"seeds": {}}
    for seed in config.seed_list():
        toy = dataclasses.replace(config.toy, seed=seed)
        results["seeds"][str(seed)] = {"sweep": run_sweep(toy, progress=config.progress),
                                       "phase": run_phase_diagram(toy, progress=config.progress)}
    results["summary"] = superposition_summary(results)
    report = Report("Superposition toy models")
    report.table("Superposed features (mean ± SE over seeds)", ["model", "importance decay", "sparsity", "mean", "SE"],
                 [[r["model"], r["importance_decay"], r["sparsity"], r["n_superposed"]["mean"], r["n_superposed"]["se"]]
                  for r in results["summary"]["cells"]])
    report.figure(plots.superposition_count_figure(results), "superposed vs sparsity")
    report.figure(plots.feature_norm_figure(results), "feature norms")
    report.figure(plots.phase_figure(results), "phase diagram")
    finish(config, results, report, began)
    return results


def superposition_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per cell of the sweep, represented/superposed counts over seeds; per model, whether the count grows with
    sparsity (Spearman's ρ between sparsity and count, per importance decay) and the most any seed superposed."""
    from scipy.stats import spearmanr

    seeds = list(results["seeds"].values())
    keys = [(c["model"], c["importance_decay"], c["sparsity"]) for c in seeds[0]["sweep"]["cells"]]

    def values(key, field_name):
        return [next(c[field_name] for c in s["sweep"]["cells"]
                     if (c["model"], c["importance_decay"], c["sparsity"]) == key) for s in seeds]

    cells = [{"model": m, "importance_decay": d, "sparsity": s,
              "n_superposed": mean_se(values((m, d, s), "n_superposed")),
              "n_represented": mean_se(values((m, d, s), "n_represented")),
              "dims_per_feature": mean_se(values((m, d, s), "dims_per_feature"))} for m, d, s in keys]
    trend = {}
    for model in ("linear", "relu"):
        for decay in sorted({d for _, d, _ in keys}):
            mine = [(s, v) for (m, d, s) in keys if m == model and d == decay for v in values((m, d, s), "n_superposed")]
            rho = spearmanr([s for s, _ in mine], [v for _, v in mine]).statistic if len({v for _, v in mine}) > 1 else None
            trend[f"{model}, decay {decay}"] = {"spearman_rho": None if rho is None else float(rho),
                                                "max_superposed": max(v for _, v in mine)}
    return {"cells": cells, "trend": trend}


# ---- SoLU ------------------------------------------------------------------------------------------------

@dataclass
class SoluExperiment(Experiment):
    """SoLU against GELU on the world corpus: loss and neuron monosemanticity against ground truth."""

    compare: SoluConfig = field(default_factory=SoluConfig)
    """model shape, budget and measurement (its seed is set per run)"""


def solu_experiment(config: SoluExperiment) -> dict[str, Any]:
    from alignlab.interpret.toy import plots
    from alignlab.interpret.toy.solu import compare_activations
    from alignlab.report.html import Report

    began, output = clock(), start(config)
    results: dict[str, Any] = {"seeds": {}}
    for seed in config.seed_list():
        compare = dataclasses.replace(config.compare, seed=seed)
        results["seeds"][str(seed)] = compare_activations(compare, output / f"seed{seed}")
    seeds = list(results["seeds"].values())
    results["summary"] = {a: {key: mean_se([s[a][key] for s in seeds])
                              for key in ("loss", "purity_family", "purity_entity", "chance_family", "chance_entity")}
                          for a in config.compare.activations}
    report = Report("SoLU vs GELU: loss and neuron monosemanticity")
    report.table("Over seeds (mean ± SE)", ["activation", "quantity", "mean", "SE"],
                 [[a, key, v["mean"], v["se"]] for a, row in results["summary"].items() for key, v in row.items()])
    report.figure(plots.solu_figure(results), "purity")
    finish(config, results, report, began)
    return results


# ---- sparse autoencoders ---------------------------------------------------------------------------------

@dataclass
class SAEExperiment(Experiment):
    """Sparse autoencoders at one hook point, each architecture over the seeds, scored against ground truth."""

    architectures: list[str] = field(default_factory=lambda: ["standard", "topk"])
    """SAE architectures to train (standard, topk)"""
    sae: SAERunConfig = field(default_factory=SAERunConfig)
    """model, hook point, SAE size and training (its architecture and seed are set per run)"""


def sae_experiment(config: SAEExperiment) -> dict[str, Any]:
    from alignlab.interpret.toy import plots
    from alignlab.interpret.toy.sae_run import run_sae
    from alignlab.report.html import Report

    began, output = clock(), start(config)
    results: dict[str, Any] = {"architectures": {}}
    for architecture in config.architectures:
        runs = {}
        for seed in config.seed_list():
            run = dataclasses.replace(config.sae, architecture=architecture, seed=seed)
            runs[str(seed)] = run_sae(run, output / f"{architecture}-seed{seed}", progress=config.progress)
        results["architectures"][architecture] = runs
    keys = ("l0", "explained_variance", "ce_loss_score", "dead_fraction", "ce_loss_without_sae", "ce_loss_with_sae",
            "ce_loss_with_ablation")
    results["summary"] = {
        a: {**{key: mean_se([r[key] for r in runs.values()]) for key in keys},
            "aligned_features": mean_se([r["concepts"]["n_aligned_units"] for r in runs.values()]),
            "aligned_features_untrained": mean_se([r["concepts_untrained"]["n_aligned_units"] for r in runs.values()])}
        for a, runs in results["architectures"].items()}
    report = Report(f"Sparse autoencoders at {config.sae.hook}")
    report.table("Over seeds (mean ± SE)", ["architecture", "metric", "mean", "SE"],
                 [[a, key, v["mean"], v["se"]] for a, row in results["summary"].items() for key, v in row.items()])
    for a, runs in results["architectures"].items():
        first = next(iter(runs.values()))
        report.line_plot(f"{a}: training loss", {"loss": [(h["step"], h["loss"]) for h in first["history"]]})
        report.line_plot(f"{a}: L0", {"l0": [(h["step"], h["l0"]) for h in first["history"]]})
    report.figure(plots.sae_figure(results), "aligned features")
    finish(config, results, report, began)
    return results
