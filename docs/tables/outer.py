"""Tables of the outer-alignment experiments beyond the offline and online benches (docs/results/outer/*.json,
each the results.json an `alignlab bench ...` command wrote)."""

from __future__ import annotations

from _common import cite, fmt, load

PLANNERS = {"proxy": "the proxy reward", "ird": "IRD (risk-averse, posterior 5% quantile)", "true": "the true reward"}


def ird() -> str:
    record = load("outer/ird.json")
    summary = record["results"]["summary"]
    blind = record["config"]["blind_families"]
    rows = ["| planner | true reward (all held-out prompts) | bias rate | "
            + " | ".join(f"true reward on {family}" for family in blind) + " |", "|---" * (3 + len(blind)) + "|"]
    for name, label in PLANNERS.items():
        s = summary[name]
        cells = [fmt(s[key]["mean"], s[key]["se"]) for key in ("true_reward", "bias_rate",
                                                                 *(f"{family}_true_reward" for family in blind))]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = len(record["results"]["runs"])
    return "\n".join(rows) + f"\n\nMean ± standard error over {seeds} seeds.\n\n{cite('outer/ird.json')}"


RLSF = {"synthetic_label_accuracy": "synthetic labels agree with the true reward",
        "synthetic_rm_accuracy": "reward model on synthetic pairs: held-out accuracy",
        "annotated_rm_accuracy": "reward model on as many annotator-labelled pairs: held-out accuracy"}


def rlsf() -> str:
    record = load("outer/rlsf.json")
    result = record["results"]
    rows = ["| measure | mean ± standard error |", "|---|---|"]
    rows += [f"| {label} | {fmt(result['summary'][key]['mean'], result['summary'][key]['se'])} |"
             for key, label in RLSF.items()]
    pairs = ", ".join(str(run["pairs"]) for run in result["runs"])
    return ("\n".join(rows) + f"\n\nOver {len(result['runs'])} seeds (synthetic pairs per seed: {pairs}; "
            f"{result['eval_pairs']} held-out pairs).\n\n{cite('outer/rlsf.json')}")


BLOCKS = {"outer-ird": ird, "outer-rlsf": rlsf}
