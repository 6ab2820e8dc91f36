"""The toy interpretability experiments' tables and figures (docs/results/interpret/toy_*.json, each the
``results.json`` an ``alignlab interpret toy ...`` / ``alignlab interpret sae`` run wrote), and the SAE
throughput benchmark (benchmarks/results/sae_throughput.json)."""

from __future__ import annotations

import json
from pathlib import Path

from _common import ROOT, cite, fmt, load, mean_se

INDUCTION = "interpret/toy_induction.json"
INDUCTION_WORLD = "interpret/toy_induction_world.json"
SUPERPOSITION = "interpret/toy_superposition.json"
SOLU = "interpret/toy_solu.json"
SAE = "interpret/toy_sae.json"
THROUGHPUT = ROOT / "benchmarks" / "results" / "sae_throughput.json"


def _summary_row(name: str, value: dict) -> str:
    if ": seeds" in name:
        return f"| {name} | {value['mean']:.0f} of {value['n']} |"
    shown = fmt(value["mean"], value["se"], 0 if "formation step" in name else 3)
    return f"| {name} | {shown} |"


def induction(relative: str = INDUCTION) -> str:
    from alignlab.interpret.toy.experiments import induction_summary

    record = load(relative)
    threshold = record["config"]["train"]["formation_threshold"]
    summary = induction_summary(record["results"], threshold)  # from the per-seed numbers the file holds
    rows = ["| quantity (mean ± SE over seeds) | value |", "|---|---|"]
    rows += [_summary_row(name, value) for name, value in summary["table"].items()]
    steps = ", ".join(f"{d} layer(s): {v}" for d, v in summary["formation_step"].items())
    return "\n".join(rows) + f"\n\nFormation step per seed — {steps} (None: never reached the threshold " \
        f"{threshold}).\n\n{cite(relative)}"


def superposition() -> str:
    record = load(SUPERPOSITION)
    cells = record["results"]["summary"]["cells"]
    sparsities = sorted({c["sparsity"] for c in cells})
    rows = ["| model | importance | " + " | ".join(f"S={s:g}" for s in sparsities) + " |",
            "|---|---|" + "---|" * len(sparsities)]
    for model in ("linear", "relu"):
        for decay in sorted({c["importance_decay"] for c in cells}):
            by_s = {c["sparsity"]: c["n_superposed"] for c in cells
                    if c["model"] == model and c["importance_decay"] == decay}
            rows.append(f"| {model} | {decay:g}^i | "
                        + " | ".join(fmt(by_s[s]["mean"], by_s[s]["se"], 1) for s in sparsities) + " |")
    trend = ["| model, importance | Spearman ρ (sparsity, superposed count) | most superposed in any seed |",
             "|---|---|---|"]
    for name, value in record["results"]["summary"]["trend"].items():
        rho = "– (never superposes)" if value["spearman_rho"] is None else f"{value['spearman_rho']:.2f}"
        trend.append(f"| {name} | {rho} | {value['max_superposed']} |")
    n, m = record["config"]["toy"]["n_features"], record["config"]["toy"]["n_hidden"]
    return (f"Superposed features of {n} through {m} dimensions (mean ± SE over {len(record['seeds'])} seeds):\n\n"
            + "\n".join(rows) + "\n\n" + "\n".join(trend) + f"\n\n{cite(SUPERPOSITION)}")


def solu() -> str:
    record = load(SOLU)
    summary = record["results"]["summary"]
    keys = [("loss", "held-out loss"), ("purity_family", "neuron purity by family"),
            ("chance_family", "chance (family)"), ("purity_entity", "neuron purity by entity kind"),
            ("chance_entity", "chance (entity kind)")]
    rows = ["| activation | " + " | ".join(label for _, label in keys) + " |", "|---|" + "---|" * len(keys)]
    for activation, values in summary.items():
        rows.append(f"| {activation} | " + " | ".join(fmt(values[k]["mean"], values[k]["se"]) for k, _ in keys) + " |")
    return "\n".join(rows) + f"\n\nMean ± SE over {len(record['seeds'])} seeds. {cite(SOLU)}"


def sae() -> str:
    record = load(SAE)
    summary = record["results"]["summary"]
    keys = [("l0", "L0"), ("explained_variance", "explained variance"), ("ce_loss_score", "CE loss recovered"),
            ("dead_fraction", "dead fraction"), ("aligned_features", "features aligned with a concept"),
            ("aligned_features_untrained", "same, untrained SAE")]
    rows = ["| architecture | " + " | ".join(label for _, label in keys) + " |", "|---|" + "---|" * len(keys)]
    for architecture, values in summary.items():
        rows.append(f"| {architecture} | " + " | ".join(fmt(values[k]["mean"], values[k]["se"]) for k, _ in keys) + " |")
    archs = record["results"]["architectures"]
    first = next(iter(archs.values()))
    run = next(iter(first.values()))
    header = "| concept | " + " | ".join(f"{a}: aligned features | {a}: best F1" for a in archs) \
        + " | untrained: best F1 |"
    per = [header, "|---|" + "---|" * (2 * len(archs) + 1)]
    for concept in run["concepts"]["aligned_per_concept"]:
        cells = []
        for runs in archs.values():
            cells.append(fmt(*mean_se([r["concepts"]["aligned_per_concept"][concept] for r in runs.values()]), 1))
            cells.append(fmt(*mean_se([r["concepts"]["best_f1"][concept] for r in runs.values()]), 2))
        cells.append(fmt(*mean_se([r["concepts_untrained"]["best_f1"][concept] for r in first.values()]), 2))
        per.append(f"| {concept} | " + " | ".join(cells) + " |")
    return ("\n".join(rows) + f"\n\nAt `{run['hook']}` of the world's base model ({run['d_in']} → {run['d_sae']} "
            f"features), mean ± SE over {len(record['seeds'])} seeds. Per concept: features aligned with it (≥ "
            f"{record['config']['sae']['min_precision']:g} of their held-out activations on it), and the best F1 of any "
            "one feature's activity as a detector of it (the untrained column: the first architecture's SAE before "
            "training):\n\n" + "\n".join(per) + f"\n\n{cite(SAE)}")


def throughput() -> str:
    if not THROUGHPUT.exists():
        return "*No benchmark result yet: run `python benchmarks/sae_throughput.py`.*"
    record = json.loads(THROUGHPUT.read_text())
    rows = ["| architecture | tokens/s (median) | GFLOP per token (fwd + bwd) | achieved GFLOP/s |", "|---|---|---|---|"]
    for name, value in record["results"].items():
        rows.append(f"| {name} | {value['tokens_per_s']:,.0f} | {value['flops_per_token'] / 1e9:.4f} | "
                    f"{value['gflops_per_s']:.1f} |")
    info = record["machine"]
    return "\n".join(rows) + (f"\n\n*From `benchmarks/results/sae_throughput.json` at commit "
                              f"`{(record.get('commit') or 'unknown')[:10]}`, on {info.get('cpu')} "
                              f"({info.get('capability')}), {info.get('threads')} thread(s); precision "
                              f"{record['config']['precision']}.*")


def times() -> str:
    """Each experiment's default run (all its seeds): wall and CPU seconds as its results.json recorded them."""
    rows = ["| experiment | command | seeds | CPU time (min) | wall time (min) | threads |", "|---|---|---|---|---|---|"]
    cpu_times, options = {}, set()
    for relative in (INDUCTION, INDUCTION_WORLD, SUPERPOSITION, SOLU, SAE):
        record = load(relative)
        results = record["results"]
        cpu, wall = results.get("cpu_seconds"), results.get("wall_seconds")
        argv = record["command"]
        if cpu is not None:
            cpu_times[Path(relative).stem] = cpu / 60
        if "--set" in argv:  # a setting beyond the command's default
            options.add(Path(relative).stem)
        shown = " ".join(a for i, a in enumerate(argv) if a != "--output" and (i == 0 or argv[i - 1] != "--output"))
        rows.append(f"| `{Path(relative).stem}` | `{shown}` | {len(record['seeds'])} | "
                    f"{'–' if cpu is None else f'{cpu / 60:.1f}'} | {'–' if wall is None else f'{wall / 60:.1f}'} | "
                    f"{record['machine']['threads']} |")
    defaults = {name: t for name, t in cpu_times.items() if name not in options}
    longest = max(defaults, key=defaults.get)
    verdict = "within" if defaults[longest] <= 5 else "beyond"
    missing = 5 - len(cpu_times)
    note = (f"Of the defaults, the longest CPU time is {defaults[longest]:.1f} min (`{longest}`), {verdict} the five "
            "minutes the toy experiments are meant to take by default"
            + "".join(f"; `{name}` is a larger setting (an option), {cpu_times[name]:.1f} min" for name in sorted(options)
                      if name in cpu_times)
            + (f"; {missing} run(s) recorded wall time only." if missing else "."))
    return ("\n".join(rows) + f"\n\n{note}\n\n"
            + "\n\n".join(cite(r) for r in (INDUCTION, INDUCTION_WORLD, SUPERPOSITION, SOLU, SAE)))


def _figure(relative: str, name: str, *args):
    def draw(path: Path) -> None:
        from alignlab.interpret.toy import plots

        fig = getattr(plots, name)(load(relative)["results"], *args)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
    return draw


BLOCKS = {"interpret-toy-induction": induction, "interpret-toy-induction-world": lambda: induction(INDUCTION_WORLD),
          "interpret-toy-superposition": superposition,
          "interpret-toy-solu": solu, "interpret-sae": sae, "interpret-sae-throughput": throughput,
          "interpret-toy-times": times}
FIGURES = {
    "docs/interpret/figures/induction.png": _figure(INDUCTION, "induction_figure"),
    "docs/interpret/figures/composition.png": _figure(INDUCTION, "composition_figure"),
    "docs/interpret/figures/superposition_count.png": _figure(SUPERPOSITION, "superposition_count_figure"),
    "docs/interpret/figures/feature_norms.png": _figure(SUPERPOSITION, "feature_norm_figure"),
    "docs/interpret/figures/phase_diagram.png": _figure(SUPERPOSITION, "phase_figure"),
    "docs/interpret/figures/solu.png": _figure(SOLU, "solu_figure"),
    "docs/interpret/figures/sae_concepts.png": _figure(SAE, "sae_figure"),
}
