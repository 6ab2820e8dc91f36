"""Figures of the toy experiments, drawn from their result dictionaries (the same ones written to JSON), so the
HTML reports and the documentation's figures are the same pictures of the same numbers.

Each function takes a command's ``results`` and returns a matplotlib figure.
"""

from __future__ import annotations

import statistics
from typing import Any

PHASES = ("not represented", "dedicated", "superposed")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def induction_figure(results: dict[str, Any], seed: str | None = None):
    """Loss, in-context-learning score and every head's induction score over training (one seed; 2-layer solid,
    1-layer dashed), with the 2-layer model's formation step marked."""
    plt = _plt()
    seed = seed or next(iter(results["seeds"]))
    runs = results["seeds"][seed]["layers"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for n_layers, run in sorted(runs.items()):
        style = "-" if n_layers == "2" else "--"
        steps = [row["step"] for row in run["history"]]
        axes[0].plot(steps, [row["loss"] for row in run["history"]], style, label=f"{n_layers} layer(s)")
        axes[1].plot(steps, [row["icl_score"] for row in run["history"]], style, label=f"{n_layers} layer(s)")
        for layer in range(len(run["history"][0]["induction"])):
            for head in range(len(run["history"][0]["induction"][layer])):
                axes[2].plot(steps, [row["induction"][layer][head] for row in run["history"]], style, linewidth=1,
                             label=f"{n_layers}L: L{layer}H{head}")
        if n_layers == "2" and run["formation_step"] is not None:
            for ax in axes:
                ax.axvline(run["formation_step"], color="grey", linestyle=":", linewidth=1)
    for ax, title in zip(axes, ("eval loss", "ICL score (late − early loss)", "induction score per head")):
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Induction-head phase change (seed {seed}; dotted: formation step)")
    fig.tight_layout()
    return fig


def composition_figure(results: dict[str, Any], seed: str | None = None):
    """Q-, K- and V-composition of each layer-0 head into each layer-1 head of the 2-layer model (one seed), as
    the excess over the random-matrix baseline where the results hold it (0: what unrelated heads score)."""
    plt = _plt()
    seed = seed or next(iter(results["seeds"]))
    circuit = results["seeds"][seed]["layers"]["2"]["circuit"]
    baseline = circuit.get("composition_baseline", 0.0)
    shown = {kind: [[v - baseline for v in row] for row in circuit["scores"][kind]] for kind in "qkv"}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    top = max(abs(v) for kind in "qkv" for row in shown[kind] for v in row)
    for ax, kind in zip(axes, "qkv"):
        image = ax.imshow(shown[kind], vmin=-top if baseline else 0, vmax=top, cmap="RdBu_r" if baseline else "viridis")
        ax.set(title=f"{kind.upper()}-composition", xlabel="layer-1 head", ylabel="layer-0 head")
        ax.set_xticks(range(len(shown[kind][0])))
        ax.set_yticks(range(len(shown[kind])))
    prev, ind = circuit["previous_token_head"][1], circuit["induction_head"][1]
    axes[1].add_patch(plt.Rectangle((ind - 0.5, prev - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    fig.colorbar(image, ax=axes[-1])
    above = f" minus the random baseline {baseline:.3f}" if baseline else ""
    fig.suptitle(f"Composition scores{above} (seed {seed}; box: previous-token head → induction head)")
    return fig


def superposition_count_figure(results: dict[str, Any]):
    """Superposed features against sparsity, linear and ReLU, one line per importance decay (mean ± SE over seeds)."""
    plt = _plt()
    seeds = list(results["seeds"].values())
    fig, ax = plt.subplots(figsize=(6.5, 4))
    cells = seeds[0]["sweep"]["cells"]
    for kind, style in (("relu", "-o"), ("linear", "--s")):
        for decay in sorted({c["importance_decay"] for c in cells}):
            keys = [(c["model"], c["importance_decay"], c["sparsity"]) for c in cells
                    if c["model"] == kind and c["importance_decay"] == decay]
            counts = [[next(c["n_superposed"] for c in s["sweep"]["cells"]
                            if (c["model"], c["importance_decay"], c["sparsity"]) == key) for s in seeds] for key in keys]
            means = [statistics.fmean(v) for v in counts]
            errors = [statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0 for v in counts]
            xs = [1 - key[2] for key in keys]
            ax.errorbar(xs, means, yerr=errors, fmt=style, markersize=3, capsize=2, label=f"{kind}, I=({decay})^i")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set(xlabel="feature density 1 − S (sparser →)", ylabel="superposed features",
           title="Superposed features vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def feature_norm_figure(results: dict[str, Any], decay: float | None = None, seed: str | None = None):
    """Per-feature ‖W_i‖ as bars coloured by interference, one panel per sparsity, linear (top) and ReLU (bottom)."""
    plt = _plt()
    seed = seed or next(iter(results["seeds"]))
    cells = results["seeds"][seed]["sweep"]["cells"]
    decay = decay if decay is not None else cells[0]["importance_decay"]
    sparsities = sorted({c["sparsity"] for c in cells})
    fig, axes = plt.subplots(2, len(sparsities), figsize=(1.9 * len(sparsities), 4.6), sharey=True)
    cmap = plt.get_cmap("viridis")
    for row, kind in enumerate(("linear", "relu")):
        for col, s in enumerate(sparsities):
            cell = next(c for c in cells if (c["model"], c["importance_decay"], c["sparsity"]) == (kind, decay, s))
            colours = [cmap(min(i, 1.0)) for i in cell["interference"]]
            ax = axes[row][col]
            ax.barh(range(len(cell["norm"])), cell["norm"], color=colours)
            ax.set_yticks([])
            ax.set_title(f"{kind}, S={s}", fontsize=8)
    axes[0][0].invert_yaxis()  # once: the y axes are shared, so every call would flip them all again
    fig.suptitle(f"‖W_i‖ per feature (top: most important), colour: interference Σ(Ŵ_i·W_j)² "
                 f"(yellow ≥ 1); I=({decay})^i, seed {seed}", fontsize=9)
    fig.tight_layout()
    return fig


def phase_figure(results: dict[str, Any]):
    """Feature 2's phase (2 features in 1 dimension) over relative importance × density, majority over seeds."""
    plt = _plt()
    seeds = list(results["seeds"].values())
    cells = seeds[0]["phase"]["cells"]
    importances = sorted({c["relative_importance"] for c in cells})
    densities = sorted({c["density"] for c in cells}, reverse=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    cmap = plt.get_cmap("viridis", len(PHASES))
    for ax, kind in zip(axes, ("linear", "relu")):
        grid = []
        for r in importances:
            row = []
            for d in densities:
                phases = [next(c["phase"] for c in s["phase"]["cells"]
                               if (c["model"], c["relative_importance"], c["density"]) == (kind, r, d)) for s in seeds]
                row.append(PHASES.index(max(PHASES, key=phases.count)))
            grid.append(row)
        image = ax.imshow(grid, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(PHASES) - 0.5, aspect="auto")
        ax.set_xticks(range(len(densities)), [f"{d:g}" for d in densities])
        ax.set_yticks(range(len(importances)), [f"{r:g}" for r in importances])
        ax.set(title=f"{kind} model", xlabel="feature density 1 − S", ylabel="relative importance of feature 2")
    bar = fig.colorbar(image, ax=axes[-1], ticks=range(len(PHASES)))
    bar.ax.set_yticklabels(PHASES)
    fig.suptitle(f"Phase diagram: 2 features in 1 dimension (majority of {len(seeds)} seeds)")
    return fig


def solu_figure(results: dict[str, Any]):
    """Mean neuron purity (by family, by entity kind) per activation, mean ± SE over seeds, chance dashed."""
    plt = _plt()
    seeds = list(results["seeds"].values())
    activations = list(seeds[0])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key in zip(axes, ("family", "entity")):
        values = [[s[a][f"purity_{key}"] for s in seeds] for a in activations]
        means = [statistics.fmean(v) for v in values]
        errors = [statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0 for v in values]
        ax.bar(activations, means, yerr=errors, capsize=4, color=["#1f77b4", "#ff7f0e", "#2ca02c"][: len(activations)])
        ax.axhline(statistics.fmean(s[activations[0]][f"chance_{key}"] for s in seeds), color="grey",
                   linestyle="--", label="chance")
        ax.set(title=f"neuron top-activation purity by {key}", ylim=(0, 1))
        ax.legend()
    fig.tight_layout()
    return fig


def sae_figure(results: dict[str, Any]):
    """Features aligned with world concepts, trained vs untrained SAE, per architecture (mean ± SE over seeds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(results["architectures"])
    for offset, (label, key) in enumerate((("trained", "concepts"), ("untrained", "concepts_untrained"))):
        values = [[run[key]["n_aligned_units"] for run in results["architectures"][a].values()] for a in names]
        means = [statistics.fmean(v) for v in values]
        errors = [statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0 for v in values]
        ax.bar([i + 0.4 * offset for i in range(len(names))], means, width=0.4, yerr=errors, capsize=3, label=label)
    ax.set_xticks([i + 0.2 for i in range(len(names))], names)
    ax.set(ylabel="features aligned with a world concept", title="SAE features vs the world's ground truth")
    ax.legend()
    fig.tight_layout()
    return fig
