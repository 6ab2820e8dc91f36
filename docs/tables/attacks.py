"""Tables of the attacks page (docs/attacks/index.md), generated from the result files the attack commands wrote."""

from __future__ import annotations

import json

from _common import RESULTS, ROOT, cell, cite, commit, fmt, load, machine, mean_se

# one file per seed (alignlab attack robustness --seed N): the tables average over those present
ROBUSTNESS_SEEDS = sorted(f"attacks/{p.name}" for p in (ROOT / "docs" / "results" / "attacks").glob("world_robustness_seed*.json"))
PERPLEXITY = "attacks/perplexity_filter.json"
ADVERSARIAL = "attacks/adversarial_training.json"
SPEED = ROOT / "benchmarks" / "results" / "gcg_vs_nanogcg.json"


def _asr(r: dict) -> str:
    """ASR [Wilson interval] (k/n)."""
    if r.get("asr") is None:
        return "–"
    return f"{r['asr']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['k']}/{r['n']})"


def _spread(values: list[float], digits: int = 2) -> str:
    """The mean, ± its standard error when there are several seeds."""
    mean, se = mean_se(values)
    return fmt(mean, se if len(values) > 1 else None, digits=digits)


def _over_seeds(records: list[dict], rule: str) -> dict[str, dict[str, str]]:
    """{model: {variant: "mean ± se (k/n pooled)"}} of one rule's ASR over the seed files."""
    out: dict[str, dict[str, str]] = {}
    for model in records[0]["results"]["models"]:
        cells: dict[str, list[dict]] = {}
        for record in records:
            for attack in record["results"]["models"][model].values():
                for variant, rules in attack["summary"].items():
                    cells.setdefault(variant, []).append(rules[rule])
        out[model] = {v: f"{_spread([r['asr'] for r in rs])} ({sum(r['k'] for r in rs)}/"
                         f"{sum(r['n'] for r in rs)})" for v, rs in cells.items()}
    return out


def _grid(table: dict[str, dict[str, str]]) -> str:
    variants = list(dict.fromkeys(v for cells in table.values() for v in cells))
    rows = ["| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    rows += [f"| {model} | " + " | ".join(cells.get(v, "–") for v in variants) + " |" for model, cells in table.items()]
    return "\n".join(rows)


def robustness() -> str:
    """Attack success by the world judge per model (rows) and attack variant (columns): mean ± standard error over
    the seeds, with the pooled counts."""
    if not ROBUSTNESS_SEEDS:
        raise SystemExit("gen_results: no docs/results/attacks/world_robustness_seed*.json: run alignlab attack robustness")
    records = [load(path) for path in ROBUSTNESS_SEEDS]
    trained = []
    for method in records[0]["results"]["trained"]:
        final = [r["results"]["trained"][method] for r in records]
        parts = [f"{key.removeprefix('final_')} {_spread([f[key] for f in final])}"
                 for key in ("final_reward", "final_cost", "final_kl") if key in final[0]]
        trained.append(f"{method} ({', '.join(parts)})")
    return (_grid(_over_seeds(records, "world")) + "\n\nThe same responses by Zou et al.'s refusal-phrase rule:\n\n"
            + _grid(_over_seeds(records, "refusal_rule")) + f"\n\nTrained here from sft (mean over each run's last 10 "
            f"steps; the reward is the reward model's): {'; '.join(trained)}. {_seeds(records)}"
            + "\n\n" + "\n".join(f"- {cite(path)}" for path in ROBUSTNESS_SEEDS))


def _seeds(records: list[dict]) -> str:
    seeds = ", ".join(str(r["seed"]) for r in records)
    return (f"Seeds {seeds}: mean ± standard error over them." if len(records) > 1
            else f"One seed ({seeds}) so far: no spread.")


def red_teaming() -> str:
    """RL red teaming per target: success of the sampled prompts (world judge) and their diversity, over seeds."""
    records = [load(path) for path in ROBUSTNESS_SEEDS]
    rows = ["| target | ASR (world) | found in training | distinct-1 | distinct-2 | self-BLEU | successful: distinct-2 |"
            " successful: self-BLEU |", "|---|---|---|---|---|---|---|---|"]

    def measure(values: list) -> str:
        values = [v for v in values if v is not None]
        return _spread(values) if values else "–"

    for model in records[0]["results"]["models"]:
        runs = [r["results"]["models"][model].get("redteam-rl") for r in records]
        if any(run is None for run in runs):
            continue
        asr = measure([run["summary"]["redteam-rl"]["world"]["asr"] for run in runs])
        found = _spread([run["red_team"]["found_in_training"] for run in runs], digits=1)
        every = [run["diversity"]["redteam-rl"]["all"] for run in runs]
        good = [run["diversity"]["redteam-rl"]["successful"] for run in runs]
        rows.append(f"| {model} | {asr} | {found} | " + " | ".join(
            [measure([d[m] for d in every]) for m in ("distinct_1", "distinct_2", "self_bleu")]
            + [measure([d[m] for d in good]) for m in ("distinct_2", "self_bleu")]) + " |")
    rl = records[0]["config"]["rl"]
    return ("\n".join(rows) + f"\n\nRed LM: {records[0]['config']['red_model']}, {rl['steps']} GRPO steps of "
            f"{rl['prompts_per_step']} requests × {rl['group_size']} continuations, novelty bonus '{rl['diversity']}' "
            f"(λ = {rl['diversity_coef']}), {rl['samples']} prompts sampled per held-out request. {_seeds(records)} "
            "'–' where no prompt succeeded.\n\n" + "\n".join(f"- {cite(p)}" for p in ROBUSTNESS_SEEDS))


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


def adversarial_training_base() -> str:
    """GCG's world-judge success before and after adversarial training of the base model, per seed and pooled."""
    files = sorted(p.relative_to(RESULTS).as_posix()
                   for p in (RESULTS / "attacks").glob("adversarial_training_base_seed*.json"))
    records = [load(f) for f in files]
    rows = ["| seed | " + " | ".join(f"{when} (world judge)" for when in ("before", "after")) + " |", "|---|---|---|"]
    pooled = {"before": [0, 0], "after": [0, 0]}
    for record in records:
        cells = []
        for when in ("before", "after"):
            verdict = record["results"][when]["gcg"]["world"]
            pooled[when][0] += verdict["k"]
            pooled[when][1] += verdict["n"]
            cells.append(_asr(verdict))
        rows.append(f"| {record['seed']} | " + " | ".join(cells) + " |")
    rows.append("| pooled | " + " | ".join(f"{k}/{n}" for k, n in pooled.values()) + " |")
    return "\n".join(rows) + "\n\n" + "\n\n".join(cite(f) for f in files)


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


BLOCKS = {"attacks-gcg-speed": gcg_speed, "attacks-robustness": robustness, "attacks-red-teaming": red_teaming,
          "attacks-perplexity-filter": perplexity_filter, "attacks-adversarial-training": adversarial_training,
          "attacks-adversarial-training-base": adversarial_training_base}
