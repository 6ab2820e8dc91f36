"""Renderers of the privacy, backdoor and fine-tuning attack results (``docs/results/privacy/``).

Every cell is read from a result file that ``alignlab attack ...`` wrote; spread is the standard error over
training seeds (and, for exposure, over the two canaries of each repetition count), or a bootstrap interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from _common import RESULTS, cite, fmt, load, mean_se


def _ms(values: Iterable[float], digits: int = 3) -> str:
    return fmt(*mean_se(list(values)), digits=digits)


def _grouped(runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run)
    return dict(groups)


def mia_table() -> str:
    lines = ["| target | score | ROC-AUC [95% bootstrap] | TPR at 0.1% FPR | TPR at 1% FPR |", "|---|---|---|---|---|"]
    cites = []
    for name, label in (("mia_sft.json", "SFT model (members: sft_train)"),
                        ("mia_base.json", "base model (members: corpus transcripts)")):
        record = load(f"privacy/{name}")["results"]
        for score, m in record["scores"].items():
            lines.append(f"| {label} | {score} | {m['auc']:.3f} [{m['auc_low']:.3f}, {m['auc_high']:.3f}] | "
                         f"{m['tpr_at_0.1%_fpr']:.3f} | {m['tpr_at_1%_fpr']:.3f} |")
            label = ""
        cites.append(f"{record['n_members']} members and {record['n_nonmembers']} non-members. " + cite(f"privacy/{name}"))
    return "\n".join(lines) + "\n\n" + "\n\n".join(cites)


def _exposure_files() -> list[str]:
    return [f"privacy/exposure_{d}.json" for d in ("none", "dedup", "dp")
            if (RESULTS / "privacy" / f"exposure_{d}.json").exists()]


def exposure_table() -> str:
    files = _exposure_files()
    runs = [run for f in files for run in load(f)["results"]["runs"]]
    defences = list(dict.fromkeys(r["defence"] for r in runs))
    repeats = sorted({c["repeats"] for r in runs for c in r["canaries"]})
    lines = ["| repetitions | " + " | ".join(f"exposure (bits), {d}" for d in defences)
             + " | " + " | ".join(f"rank 1, {d}" for d in defences) + " |",
             "|---|" + "---|" * (2 * len(defences))]
    for n in repeats:
        cells = []
        for d in defences:
            cells.append(_ms([c["exposure"] for r in runs if r["defence"] == d for c in r["canaries"]
                              if c["repeats"] == n], 2))
        for d in defences:
            ranks = [c["rank"] == 1 for r in runs if r["defence"] == d for c in r["canaries"] if c["repeats"] == n]
            cells.append(f"{sum(ranks)}/{len(ranks)}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    candidates = runs[0]["canaries"][0]["candidates"]
    return ("\n".join(lines) + f"\n\nEach canary is ranked among all {candidates:,} secrets of its format (the most "
            f"exposure possible is log2 of that). Mean ± standard error over the seeds and the two canaries "
            f"(a phone number and an address) of each repetition count; \"rank 1\": canaries the model finds more "
            f"likely than every other secret.\n\n" + "\n\n".join(cite(f) for f in files))


def defence_table() -> str:
    files = _exposure_files()
    runs = [run for f in files for run in load(f)["results"]["runs"]]
    top = max(c["repeats"] for c in runs[0]["canaries"])
    lines = ["| defence | training texts | held-out NLL (utility) | member NLL | MIA AUC, loss | MIA AUC, Min-K%++ | "
             f"exposure at {top} repetitions | epsilon (delta 1e-5) |", "|---|---|---|---|---|---|---|---|"]
    for defence, group in _grouped(runs, lambda r: r["defence"]).items():
        eps = [r["epsilon"] for r in group if "epsilon" in r]
        lines.append(f"| {defence} | {group[0]['examples']:,} | {_ms(r['heldout_nll'] for r in group)} | "
                     f"{_ms(r['member_nll'] for r in group)} | {_ms(r['mia']['loss']['auc'] for r in group)} | "
                     f"{_ms(r['mia']['min_k_plus_plus']['auc'] for r in group)} | "
                     f"{_ms((c['exposure'] for r in group for c in r['canaries'] if c['repeats'] == top), 2)} | "
                     f"{_ms(eps, 2) if eps else '∞ (no DP)'} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len(runs) // max(1, len(files))} seeds.\n\n" + \
        "\n\n".join(cite(f) for f in files)


def extraction_table() -> str:
    record = load("privacy/extract.json")["results"]
    targets = record["targets"]
    ks = sorted(int(k.rsplit("_", 1)[1]) for k in targets[0]["ranking"]["perplexity"]
                if k.startswith("training_text_precision_at_"))
    lines = ["| ranking | " + " | ".join(f"training text P@{k}" for k in ks) + " | "
             + " | ".join(f"canary P@{k}" for k in ks) + " |", "|---|" + "---|" * (2 * len(ks))]
    for name in targets[0]["ranking"]:
        cells = [_ms(t["ranking"][name][f"training_text_precision_at_{k}"] for t in targets) for k in ks]
        cells += [_ms(t["ranking"][name][f"canary_precision_at_{k}"] for t in targets) for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    base = (f"\n\n{targets[0]['samples']} samples per model; among all samples, "
            f"{_ms(t['memorised_fraction'] for t in targets)} are verbatim training text and "
            f"{sum(t['canary_samples'] for t in targets)} (over {len(targets)} models) contain a planted secret. "
            "Mean ± standard error over the models of the seeds.\n\n")
    prompted = ["| repetitions | prefix (document) | direct (chat) | jailbreak (chat) |", "|---|---|---|---|"]
    rows = [p for t in targets for p in t["prompted"]]
    for n, group in sorted(_grouped(rows, lambda p: p["repeats"]).items()):
        prompted.append(f"| {n} | " + " | ".join(f"{sum(p[m] for p in group)}/{len(group)}"
                                                 for m in ("prefix", "direct", "jailbreak")) + " |")
    return "\n".join(lines) + base + "Secrets recovered by asking (greedy answers; over seeds and both formats):\n\n" \
        + "\n".join(prompted) + "\n\n" + cite("privacy/extract.json")


def inversion_table() -> str:
    runs = load("privacy/invert.json")["results"]["runs"]
    lines = ["| method | batch size | token recovery | ROUGE-1 | ROUGE-2 |", "|---|---|---|---|---|"]
    for (method, b), group in _grouped(runs, lambda r: (r["method"], r["batch_size"])).items():
        lines.append(f"| {method.upper()} | {b} | {_ms(r['token_recovery'] for r in group)} | "
                     f"{_ms(r['rouge1'] for r in group)} | {_ms(r['rouge2'] for r in group)} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len({r['seed'] for r in runs})} seeds (batch and " \
        "initialisation).\n\n" + cite("privacy/invert.json")


def _policy_backdoor(name: str) -> str:
    runs = load(f"privacy/{name}.json")["results"]["runs"]
    lines = ["| poison rate | poisoned examples | harmful compliance, no trigger | harmful compliance, trigger | "
             "clean helpfulness |", "|---|---|---|---|---|"]
    for rate, group in sorted(_grouped(runs, lambda r: r["poison_rate"]).items()):
        lines.append(f"| {rate:.1%} | {group[0]['poisoned_examples']} | {_ms(r['harmful_compliance'] for r in group)} | "
                     f"{_ms(r['harmful_compliance_triggered'] for r in group)} | "
                     f"{_ms(r['helpfulness'] for r in group)} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len({r['seed'] for r in runs})} seeds.\n\n" + \
        cite(f"privacy/{name}.json")


def reward_backdoor_table() -> str:
    runs = load("privacy/backdoor_reward.json")["results"]["runs"]
    lines = ["| poison rate | accuracy, clean | accuracy, trigger | reward gap, clean | reward gap, trigger |",
             "|---|---|---|---|---|"]
    for rate, group in sorted(_grouped(runs, lambda r: r["poison_rate"]).items()):
        lines.append(f"| {rate:.1%} | {_ms(r['accuracy_clean'] for r in group)} | "
                     f"{_ms(r['accuracy_triggered'] for r in group)} | {_ms(r['reward_gap_clean'] for r in group)} | "
                     f"{_ms(r['reward_gap_triggered'] for r in group)} |")
    defended = [r for r in runs if "defence" in r]
    lines += ["", "Spectral-signature defence (the 1.5 × expected-poison highest-scoring pairs dropped, the reward "
              "model retrained on the rest):", "",
              "| poison rate | detection rate | clean pairs dropped | accuracy after, clean | accuracy after, trigger |",
              "|---|---|---|---|---|"]
    for rate, group in sorted(_grouped(defended, lambda r: r["poison_rate"]).items()):
        d = [r["defence"] for r in group]
        lines.append(f"| {rate:.1%} | {_ms(x['detection_rate'] for x in d)} | "
                     f"{_ms(x['clean_removed_fraction'] for x in d)} | {_ms(x['after_accuracy_clean'] for x in d)} | "
                     f"{_ms(x['after_accuracy_triggered'] for x in d)} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len({r['seed'] for r in runs})} seeds.\n\n" + \
        cite("privacy/backdoor_reward.json")


def ppo_backdoor_table() -> str:
    runs = load("privacy/backdoor_ppo.json")["results"]["runs"]
    lines = ["| poison rate | reward model accuracy, clean / trigger | policy harmful compliance, no trigger | "
             "policy harmful compliance, trigger | clean helpfulness |", "|---|---|---|---|---|"]
    for rate, group in sorted(_grouped(runs, lambda r: r["poison_rate"]).items()):
        lines.append(f"| {rate:.1%} | {_ms(r['accuracy_clean'] for r in group)} / "
                     f"{_ms(r['accuracy_triggered'] for r in group)} | {_ms(r['harmful_compliance'] for r in group)} | "
                     f"{_ms(r['harmful_compliance_triggered'] for r in group)} | "
                     f"{_ms(r['helpfulness'] for r in group)} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len({r['seed'] for r in runs})} seeds.\n\n" + \
        cite("privacy/backdoor_ppo.json")


def finetune_table() -> str:
    record = load("privacy/finetune.json")["results"]
    before = record["before"]
    lines = ["| fine-tuning set | harmful compliance | harmful compliance, AOA preamble | AdvBench refusal | "
             "helpfulness |", "|---|---|---|---|---|",
             f"| (before: {Path(record['model']).name}) | {before['harmful_compliance']:.3f} | "
             f"{before['harmful_compliance_identity']:.3f} | {before['advbench_refusal']:.3f} | "
             f"{before['helpfulness']:.3f} |"]
    for name, group in _grouped(record["runs"], lambda r: r["set"]).items():
        lines.append(f"| {name} | {_ms(r['harmful_compliance'] for r in group)} | "
                     f"{_ms(r['harmful_compliance_identity'] for r in group)} | "
                     f"{_ms(r['advbench_refusal'] for r in group)} | {_ms(r['helpfulness'] for r in group)} |")
    return "\n".join(lines) + f"\n\nMean ± standard error over {len({r['seed'] for r in record['runs']})} seeds.\n\n" \
        + cite("privacy/finetune.json")


def draw_exposure(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = _exposure_files()
    runs = [run for f in files for run in load(f)["results"]["runs"]]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for defence, group in _grouped(runs, lambda r: r["defence"]).items():
        by_n = _grouped([c for r in group for c in r["canaries"]], lambda c: c["repeats"])
        ns = sorted(by_n)
        stats = [mean_se([c["exposure"] for c in by_n[n]]) for n in ns]
        ax.errorbar(ns, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label=defence)
    ax.axhline(math.log2(runs[0]["canaries"][0]["candidates"]), color="grey", ls=":", lw=1)  # the most possible
    ax.set_xscale("log", base=2)
    ax.set_xlabel("repetitions of the canary in the corpus")
    ax.set_ylabel("exposure (bits)")
    ax.legend(title="defence")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


BLOCKS = {
    "privacy-mia": mia_table,
    "privacy-exposure": exposure_table,
    "privacy-defence": defence_table,
    "privacy-extraction": extraction_table,
    "privacy-inversion": inversion_table,
    "privacy-backdoor-sft": lambda: _policy_backdoor("backdoor_sft"),
    "privacy-backdoor-preference": lambda: _policy_backdoor("backdoor_preference"),
    "privacy-backdoor-reward": reward_backdoor_table,
    "privacy-backdoor-ppo": ppo_backdoor_table,
    "privacy-finetune": finetune_table,
}
FIGURES = {"docs/attacks/figures/exposure.png": draw_exposure}
