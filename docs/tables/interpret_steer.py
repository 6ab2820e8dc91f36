"""Tables and figures of docs/interpret/steering.md and docs/interpret/editing.md, from the result files the
``alignlab interpret refusal|harm-pca|truth|edit`` commands wrote (docs/results/interpret/steer_*.json)."""

from __future__ import annotations

from pathlib import Path

from _common import cite, fmt, load

REFUSAL, HARM, TRUTH, EDIT = ("interpret/steer_refusal.json", "interpret/steer_harm_pca.json",
                              "interpret/steer_truth.json", "interpret/steer_edit.json")
SWEEP_NAMES = {"aligned": "aligned model + s·v̂ (its own direction)",
               "base_with_aligned_direction": "base model + s·v̂ (the aligned model's direction)",
               "base": "base model + s·v̂ (its own direction)"}


def _ms(value: dict) -> str:
    return fmt(value["mean"], value["se"])


def _model_name(path: str) -> str:
    return "base" if path == "base" else Path(path).name


def refusal_ablation() -> str:
    results = load(REFUSAL)["results"]
    rows = ["| model | intervention | harmlessness (harmful prompts) | helpfulness (benign prompts) |",
            "|---|---|---|---|"]
    for model in ("aligned", "base"):
        plain = results["plain"][model]
        rows.append(f"| {model} | none | {_ms(plain['harmlessness'])} | {_ms(plain['helpfulness'])} |")
        for layer, rates in results["ablated"][model].items():
            rows.append(f"| {model} | its direction ablated from every residual write (layer {layer}'s) | "
                        f"{_ms(rates['harmlessness'])} | {_ms(rates['helpfulness'])} |")
    cosines = ", ".join(f"layer {k}: {v['mean']:.3f}" for k, v in results["cosine_aligned_base"].items())
    return "\n".join(rows) + f"\n\nCosine between the aligned and the base model's directions: {cosines}.\n\n" + cite(REFUSAL)


def refusal_sweep() -> str:
    results = load(REFUSAL)["results"]
    sweeps = list(results["curves"])
    head = "| strength s | " + " | ".join(f"{SWEEP_NAMES[s]}: harmless / helpful" for s in sweeps) + " |"
    rows = [head, "|---|" + "---|" * len(sweeps)]
    for i, s in enumerate(results["strengths"]):
        cells = [f"{_ms(results['curves'][w]['harmlessness'][i])} / {_ms(results['curves'][w]['helpfulness'][i])}"
                 for w in sweeps]
        rows.append(f"| {s:+.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\nInjected at layer {results['layer']}; s is ‖α·v̂‖ over the mean residual norm there.\n\n" \
        + cite(REFUSAL)


def refusal_fits() -> str:
    results = load(REFUSAL)["results"]
    rows = ["| sweep | side | rate | R², linear in \\|s\\| | R², quadratic in \\|s\\| | slope (linear) | slope (quadratic) |",
            "|---|---|---|---|---|---|---|"]
    for sweep, dims in results["fits"].items():
        for side in ("negative", "positive"):
            for dim in ("harmlessness", "helpfulness"):
                fit = dims[dim][side]
                rows.append(f"| {SWEEP_NAMES[sweep]} | s {'≤' if side == 'negative' else '≥'} 0 | {dim} | "
                            f"{_ms(fit['power1']['r2'])} | {_ms(fit['power2']['r2'])} | "
                            f"{_ms(fit['power1']['slope'])} | {_ms(fit['power2']['slope'])} |")
    return "\n".join(rows) + "\n\n" + cite(REFUSAL)


def harm_pca() -> str:
    results = load(HARM)["results"]
    rows = ["| model | layer (resid_post) | PC1 | mean difference | logistic probe | PC1's share of variance |",
            "|---|---|---|---|---|---|"]
    for model, layers in results["models"].items():
        for name, v in layers.items():
            rows.append(f"| {_model_name(model)} | {name.split('.')[1]} | {_ms(v['pca'])} | {_ms(v['mean_difference'])} | "
                        f"{_ms(v['probe'])} | {_ms(v['pc1_explained'])} |")
    return "\n".join(rows) + "\n\n" + cite(HARM)


def truth() -> str:
    record = load(TRUTH)
    results = record["results"]
    blocks = []
    for model, v in results["models"].items():
        probe = ", ".join(f"layer {k}: {_ms(a)}" for k, a in v["probe_accuracy"].items())
        rows = [f"**{_model_name(model)}** — held-out probe accuracy {probe}; layer used per seed: {v['layers_chosen']}.",
                "", "| strength s | honesty on held-out countries | helpfulness on known facts |", "|---|---|---|"]
        for i, s in enumerate(results["strengths"]):
            rows.append(f"| {s:+.2f} | {_ms(v['curves']['honesty_unknown'][i])} | {_ms(v['curves']['helpfulness_facts'][i])} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n\n" + cite(TRUTH)


EDIT_COLUMNS = {"efficacy": "efficacy", "generalisation": "generalisation (other phrasings)",
                "specificity_other_countries": "other capitals unchanged",
                "other_capitals_right_after": "other capitals still right",
                "specificity_same_country": "same country's other facts unchanged"}
NEURON_COLUMNS = {"logprob_change": "F(a) − F(0)", "completeness_gap": "\\|Σ attr − (F(a) − F(0))\\|",
                  "top_zeroed_change": "Δ log P, top neurons zeroed", "random_zeroed_change": "Δ log P, random neurons zeroed"}


def _per_layer(columns: dict[str, str]) -> str:
    record = load(EDIT)
    rows = ["| layer | " + " | ".join(columns.values()) + " |", "|---|" + "---|" * len(columns)]
    for layer, v in record["results"]["layers"].items():
        rows.append(f"| {layer} | " + " | ".join(_ms(v[key]) for key in columns) + " |")
    config = record["config"]
    return "\n".join(rows) + (f"\n\n{config['n_edits']} edits per seed; the model answered "
                              f"{record['results']['n_known_capitals']} capitals right before editing.\n\n") + cite(EDIT)


def edit_quality() -> str:
    return _per_layer(EDIT_COLUMNS)


def knowledge_neurons() -> str:
    return _per_layer(NEURON_COLUMNS)


def draw_refusal(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load(REFUSAL)["results"]
    fig, axes = plt.subplots(1, len(results["curves"]), figsize=(12, 3.6), sharey=True)
    for ax, (sweep, curves) in zip(axes, results["curves"].items()):
        for dim, colour in (("harmlessness", "tab:green"), ("helpfulness", "tab:blue")):
            means = [p["mean"] for p in curves[dim]]
            ses = [p["se"] for p in curves[dim]]
            ax.errorbar(results["strengths"], means, yerr=ses, marker="o", markersize=3, capsize=2, color=colour, label=dim)
        ax.set(title=SWEEP_NAMES[sweep], xlabel="strength s (‖α·v̂‖ / mean ‖h‖)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rate (world judge)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_truth(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load(TRUTH)["results"]
    fig, axes = plt.subplots(1, len(results["models"]), figsize=(9, 3.6), sharey=True, squeeze=False)
    for ax, (model, v) in zip(axes[0], results["models"].items()):
        for key, label, colour in (("honesty_unknown", "honesty, held-out countries", "tab:orange"),
                                   ("helpfulness_facts", "helpfulness, known facts", "tab:blue")):
            ax.errorbar(results["strengths"], [p["mean"] for p in v["curves"][key]],
                        yerr=[p["se"] for p in v["curves"][key]], marker="o", markersize=3, capsize=2,
                        color=colour, label=label)
        ax.set(title=_model_name(model), xlabel="strength s (towards 'knows the answer')")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("rate (world judge)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


BLOCKS = {
    "interpret_steer-refusal-ablation": refusal_ablation,
    "interpret_steer-refusal-sweep": refusal_sweep,
    "interpret_steer-refusal-fits": refusal_fits,
    "interpret_steer-harm-pca": harm_pca,
    "interpret_steer-truth": truth,
    "interpret_steer-edit": edit_quality,
    "interpret_steer-neurons": knowledge_neurons,
}
FIGURES = {
    "docs/interpret/figures/steer_refusal.png": draw_refusal,
    "docs/interpret/figures/steer_truth.png": draw_truth,
}
