"""Tables of docs/interpret/index.md from the result files of the hooks, the cache benchmark and the toy-world
runs (``docs/results/interpret/``, ``benchmarks/results/cache_vs_transformerlens.json``)."""

from __future__ import annotations

import json

from _common import ROOT, cell, cite, command, commit, load, machine

BENCHMARK = ROOT / "benchmarks" / "results" / "cache_vs_transformerlens.json"
POINTS = ("hook_resid_pre", "attn.hook_pattern", "attn.hook_z", "hook_mlp_out", "hook_resid_post", "logits")
WORKLOADS = {"filtered": "residual stream before every block", "pattern": "every attention pattern",
             "all": "every hook point"}


def parity() -> str:
    record = load("interpret/parity_transformerlens.json")
    gaps = record["results"]["max_abs_difference"]
    rows = ["| family | " + " | ".join(f"`{p}`" for p in POINTS) + " |", "|---" * (len(POINTS) + 1) + "|"]
    rows += [f"| {family} | " + " | ".join(f"{gaps[family][p]:.1e}" for p in POINTS) + " |" for family in gaps]
    return "\n".join(rows) + f"\n\nLargest absolute difference over both layers, batch " \
        f"{record['results']['batch']}, TransformerLens {record['results']['transformer_lens']}.\n\n" + \
        cite("interpret/parity_transformerlens.json")


def speed() -> str:
    record = json.loads(BENCHMARK.read_text())
    ratios, memory = record["ratios"], record["memory_bytes"]
    mib = 2 ** 20
    rows = ["| cached | alignlab / plain forward | TransformerLens / plain forward | peak memory growth: alignlab "
            "/ TransformerLens / plain forward (MiB) | cached tensors: alignlab / TransformerLens (MiB) |",
            "|---|---|---|---|---|"]
    for workload, what in WORKLOADS.items():
        ours, peer = f"alignlab_{workload}", f"transformerlens_{workload}"
        rows.append(f"| {what} | {ratios[ours + '_over_hf']:.2f}× | {ratios[peer + '_over_hf']:.2f}× | "
                    f"{memory[ours + '_peak_growth'] / mib:.1f} / {memory[peer + '_peak_growth'] / mib:.1f} / "
                    f"{memory['hf_peak_growth'] / mib:.1f} | {memory[ours + '_cached_bytes'] / mib:.1f} / "
                    f"{memory[peer + '_cached_bytes'] / mib:.1f} |")
    headline = ratios["alignlab_filtered_over_hf"]
    work = record["workload"]
    precision = "bf16 autocast" if record["precision"]["both_sides"] == "bf16" else "fp32"
    return ("\n".join(rows) + f"\n\nTarget: a filtered cache at most 1.5× the plain forward: "
            f"{headline:.2f}× ({'met' if headline <= 1.5 else '**not met**'}). {work['params_m']:.1f}M-parameter "
            f"Llama, batch {work['batch']} × {work['length']} tokens, {precision}, median of "
            f"{record['config']['rounds']} alternating rounds. *From `benchmarks/results/cache_vs_transformerlens."
            f"json`: `{cell(command(record))}` at commit `{commit(record)}`, on {cell(machine(record))}.*")


def world() -> str:
    heads = load("interpret/sft_heads.json")["results"]
    lines = ["**Head scores** (" + heads["input"] + f", {heads['shape'][0]} × {heads['shape'][1]} tokens, BOS "
             "attention excluded):", "", "| kind | best head (layer.head) | its score | mean over heads |",
             "|---|---|---|---|"]
    for kind, best in heads["best"].items():
        scores = [s for row in heads["scores"][kind] for s in row]
        lines.append(f"| {kind.replace('_', ' ')} | {best['layer']}.{best['head']} | {best['score']:.3f} | "
                     f"{sum(scores) / len(scores):.3f} |")
    lines += ["", cite("interpret/sft_heads.json"), ""]

    lens = load("interpret/sft_lens.json")["results"]["prompts"]
    lines += ["**Logit lens**: the most likely next token read from each layer at the last position "
              "(probability in brackets):", "", "| prompt | " + " | ".join(
                  f"layer {i}" if i < len(lens[0]["last_position_top"]) - 1 else "final"
                  for i in range(len(lens[0]["last_position_top"]))) + " |",
              "|---" * (len(lens[0]["last_position_top"]) + 1) + "|"]
    for entry in lens:
        top = [f"`{cell(row[0][0])}` ({row[0][1]:.2f})" for row in entry["last_position_top"]]
        lines.append(f"| {cell(entry['prompt'])} | " + " | ".join(top) + " |")
    lines += ["", cite("interpret/sft_lens.json"), ""]

    patch = load("interpret/sft_patch.json")["results"]
    by_position, tokens = patch["by_position"], patch["tokens"]
    correlation = patch["attribution_correlation"]
    lines += [f"**Activation patching** of `hook_resid_pre`, clean country → corrupted country (metric: mean "
              f"logit(answer) − logit(wrong) over {len(load('interpret/sft_patch.json')['config']['clean'])} "
              f"pairs): clean {patch['clean_logit_diff']:.2f}, corrupted {patch['corrupted_logit_diff']:.2f}. "
              "Where patching one position's residual recovers the most, per layer (tokens of the first pair):",
              "", "| layer | position | token | metric after patching |", "|---|---|---|---|"]
    for layer, row in enumerate(by_position):
        position = max(range(len(row)), key=row.__getitem__)
        lines.append(f"| {layer} | {position} | `{cell(tokens[position])}` | {row[position]:.2f} |")
    lines += ["", f"Attribution patching's correlation with real patching: {correlation['by_position']:.3f} by "
              f"position, {correlation['by_head']:.3f} by head.", "",
              "![patching heatmap](figures/sft_patching.png)", "", cite("interpret/sft_patch.json")]
    return "\n".join(lines)


def draw_patching(path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patch = load("interpret/sft_patch.json")["results"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bound = max(abs(v) for row in patch["by_position"] for v in row)
    image = ax.imshow(patch["by_position"], aspect="auto", origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(patch["tokens"])), patch["tokens"], rotation=60, ha="right", fontsize=7)
    ax.set(xlabel="position (clean token)", ylabel="layer", title="Patching hook_resid_pre: logit difference")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


BLOCKS = {"interpret-hooks-parity": parity, "interpret-hooks-speed": speed, "interpret-hooks-world": world}
FIGURES = {"docs/interpret/figures/sft_patching.png": draw_patching}
