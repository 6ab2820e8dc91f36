"""Tables of the attacks page (docs/attacks/index.md), generated from the result files the attack commands wrote."""

from __future__ import annotations

import json

from _common import ROOT, cell, cite, commit, load, machine

ROBUSTNESS = "attacks/world_robustness.json"
PERPLEXITY = "attacks/perplexity_filter.json"
ADVERSARIAL = "attacks/adversarial_training.json"
SPEED = ROOT / "benchmarks" / "results" / "gcg_vs_nanogcg.json"


def _asr(r: dict) -> str:
    if r.get("asr") is None:
        return "–"
    return f"{r['asr']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['k']}/{r['n']})"


def robustness() -> str:
    """Attack success by the world judge per model (rows) and attack variant (columns), with Wilson intervals."""
    record = load(ROBUSTNESS)
    models = record["results"]["models"]
    variants = list(dict.fromkeys(v for attacks in models.values() for a in attacks.values() for v in a["summary"]))
    rows = ["| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for name, attacks in models.items():
        by_variant = {v: r for a in attacks.values() for v, r in a["summary"].items()}
        rows.append(f"| {name} | " + " | ".join(_asr(by_variant[v]["world"]) if v in by_variant else "–"
                                                for v in variants) + " |")
    refusal = ["| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for name, attacks in models.items():
        by_variant = {v: r for a in attacks.values() for v, r in a["summary"].items()}
        refusal.append(f"| {name} | " + " | ".join(_asr(by_variant[v]["refusal_rule"]) if v in by_variant else "–"
                                                   for v in variants) + " |")
    return ("\n".join(rows) + "\n\nThe same responses by Zou et al.'s refusal-phrase rule:\n\n" + "\n".join(refusal)
            + "\n\n" + cite(ROBUSTNESS))


def perplexity_filter() -> str:
    record = load(PERPLEXITY)
    r = record["results"]
    fpr = r["false_positive_rate"]
    rows = ["| prompts | flagged | rate [95% interval] |", "|---|---|---|",
            f"| benign held-out world prompts (false positives) | {fpr['k']}/{fpr['n']} | "
            f"{fpr['rate']:.2f} [{fpr['low']:.2f}, {fpr['high']:.2f}] |"]
    for name, d in r["detection_rate"].items():
        rows.append(f"| {cell(name)} (detection) | {d['k']}/{d['n']} | {d['rate']:.2f} [{d['low']:.2f}, {d['high']:.2f}] |")
    return (f"Threshold: perplexity {r['threshold']:.1f} (the maximum over {r['n_calibration']} benign calibration "
            "prompts).\n\n" + "\n".join(rows) + "\n\n" + cite(PERPLEXITY))


def adversarial_training() -> str:
    """GCG success on held-out prompts before and after adversarial training, by each rule."""
    record = load(ADVERSARIAL)
    r = record["results"]
    rules = [rule for rule in ("world", "refusal_rule", "target_match") if rule in r["before"]["gcg"]]
    rows = ["| model | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
    for when in ("before", "after"):
        rows.append(f"| {when} | " + " | ".join(_asr(r[when]["gcg"][rule]) for rule in rules) + " |")
    losses = r["mean_best_loss"]
    rows[0] += " mean best GCG loss |"
    rows[1] += "---|"
    for i, when in enumerate(("before", "after"), start=2):
        rows[i] += f" {losses[when]:.3f} |"
    found = r["found"]["gcg"]["world"]
    return (f"Suffixes were found on {found['n']} training prompts (world-judge success {found['k']}/{found['n']}); "
            f"{r['n_adversarial_pairs']} adversarial pairs were mixed with {r['n_pairs'] - r['n_adversarial_pairs']} "
            "world preference pairs.\n\n" + "\n".join(rows) + "\n\n" + cite(ADVERSARIAL))


def gcg_speed() -> str:
    if not SPEED.exists():
        raise SystemExit("gen_results: benchmarks/results/gcg_vs_nanogcg.json is missing: run benchmarks/gcg_vs_nanogcg.py")
    record = json.loads(SPEED.read_text())
    steps = record["steps_per_s"]
    rows = ["| side | steps/s (wall) | steps per CPU-second |", "|---|---|---|"]
    for side in steps["wall"]:
        rows.append(f"| {side} | {steps['wall'][side]:.3f} | {steps['cpu'][side]:.3f} |")
    ratios = ", ".join(f"{k}: **{v:.2f}×**" for k, v in record["ratios"].items())
    share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in record["alignlab_phase_share"].items())
    work = record["workload"]
    return ("\n".join(rows) + f"\n\nRatios (alignlab / peer, median over rounds): {ratios}. alignlab's wall time by "
            f"phase: {share}. Model: {work['params_m']:.1f}M parameters, {work['dtype']}; search width "
            f"{work['search_width']}, top-k {work['topk']}.\n\n*From `benchmarks/results/gcg_vs_nanogcg.json`: "
            f"`{cell(' '.join(record['command']))}` at commit `{commit(record)}` on {cell(machine(record))}.*")


BLOCKS = {"attacks-gcg-speed": gcg_speed, "attacks-robustness": robustness,
          "attacks-perplexity-filter": perplexity_filter, "attacks-adversarial-training": adversarial_training}
