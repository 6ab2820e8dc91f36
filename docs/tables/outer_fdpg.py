"""f-DPG's divergences from one SFT model, for reward and diversity (docs/results/outer/fdpg/seed<S>.json, the
results.json that `alignlab bench fdpg --world` wrote per seed)."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

# (key, header, digits): the world's verdicts and KL on the held-out answers, their diversity, then the training tail
COLUMNS = (("true_reward", "true reward", 3), ("gain_vs_sft", "gain vs SFT", 3), ("kl_to_sft", "KL/answer", 3),
           ("kl_per_token", "KL/token", 4), ("unique", "distinct answers", 3), ("distinct_1", "distinct-1", 3),
           ("distinct_2", "distinct-2", 3), ("self_bleu", "self-BLEU", 3), ("train_entropy", "train entropy", 3),
           ("train_reward", "train reward", 3))
FIGURE = "docs/training/figures/fdpg_divergences.png"


def _files() -> list[str]:
    return sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "outer" / "fdpg").glob("seed*.json"))


def divergences() -> str:
    """One row per divergence (the SFT model first): each column's mean ± standard error over seeds."""
    files = _files()
    if not files:
        return "*No `alignlab bench fdpg` run is committed under `docs/results/outer/fdpg/`.*"
    records = [load(f) for f in files]
    runs = [{r["method"]: r for r in record["results"]["rows"]} for record in records]
    lines = ["| policy | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in runs[0]:
        cells = []
        for key, _, digits in COLUMNS:
            values = [run[name][key] for run in runs if run[name].get(key) is not None]
            cells.append(fmt(*mean_se(values), digits) if values else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    config, first = records[0]["config"], records[0]["results"]
    lines += ["", f"Mean ± standard error over {len(files)} seed(s); {config['max_steps']} rollout steps per divergence "
              f"(β = {config['beta']}), {config['eval_samples']} answers to each of {first['prompts']} held-out prompts; "
              f"SFT model `{first['sft_model']}`. Diversity is among one prompt's answers, averaged over prompts "
              f"(self-BLEU: lower is more varied). Train entropy and reward: means over the last "
              f"{config['tail_fraction']:g} of the training steps. CPU-minutes per seed (whole run): "
              + ", ".join(f"{r['results']['cpu_seconds'] / 60:.1f}" for r in records) + ".",
              "", "![training reward, KL and entropy per step](figures/fdpg_divergences.png)", ""]
    return "\n".join(lines) + "\n" + "\n\n".join(cite(f) for f in files)


def draw_trajectories(path) -> None:
    """Training reward, KL to the SFT model and entropy per rollout step, per divergence (seed 0; a 10-step running
    mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r["method"]: r for r in load(_files()[0])["results"]["rows"]}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for name, row in rows.items():
        if "trajectory" not in row:
            continue
        steps, reward, kl, entropy = zip(*row["trajectory"], strict=True)
        for ax, values in zip(axes, (reward, kl, entropy), strict=True):
            smooth = [sum(values[max(0, i - 9):i + 1]) / len(values[max(0, i - 9):i + 1]) for i in range(len(values))]
            ax.plot(steps, smooth, label=name)
    for ax, label in zip(axes, ("training reward", "KL to SFT (per answer)", "entropy (nats/token)"), strict=True):
        ax.set(xlabel="rollout step", ylabel=label)
    axes[0].legend(fontsize=8)
    fig.suptitle("f-DPG by divergence (seed 0, 10-step running mean)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


BLOCKS = {"outer_fdpg-divergences": divergences}
FIGURES = {FIGURE: draw_trajectories} if _files() else {}
