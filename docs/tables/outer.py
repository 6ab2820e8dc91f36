"""Tables of the outer-alignment experiments beyond the offline and online benches (docs/results/outer/*.json,
each the results.json an `alignlab bench ...` command wrote)."""

from __future__ import annotations

from _common import cite, fmt, load

PLANNERS = {"proxy": "the proxy reward", "ird": "IRD (risk-averse, posterior 5% quantile)", "true": "the true reward"}


def ird() -> str:
    record = load("outer/ird.json")
    summary = record["results"]["summary"]
    blind = ", ".join(record["config"]["blind_families"])
    rows = [f"| planner | true reward (all held-out prompts) | bias rate | true reward on {blind} |",
            "|---|---|---|---|"]
    for name, label in PLANNERS.items():
        s = summary[name]
        rows.append(f"| {label} | {fmt(s['true_reward']['mean'], s['true_reward']['se'])} | "
                    f"{fmt(s['bias_rate']['mean'], s['bias_rate']['se'])} | "
                    f"{fmt(s[f'{blind}_true_reward']['mean'], s[f'{blind}_true_reward']['se'])} |")
    seeds = len(record["results"]["runs"])
    return "\n".join(rows) + f"\n\nMean ± standard error over {seeds} seeds.\n\n{cite('outer/ird.json')}"


BLOCKS = {"outer-ird": ird}
