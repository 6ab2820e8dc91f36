"""Tables of the outer-alignment experiments beyond the offline and online benches (docs/results/outer/*.json,
each the results.json an `alignlab bench ...` command wrote)."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

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


def _over_seeds(values: list[float], ses: list[float | None]) -> str:
    """Mean ± standard error over seeds; for one seed, its own standard error (over answers) where it has one."""
    if len(values) > 1:
        return fmt(*mean_se(values))
    return fmt(values[0], ses[0])


def rules() -> str:
    """Sparrow-style rule reward then GRPO: per-rule accuracy and violation rates, over the seeds' files."""
    files = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "outer").glob("rules_seed*.json"))
    results = [load(f)["results"] for f in files]
    rows = ["| rule | held-out accuracy of the rule reward | violation rate before GRPO | after |", "|---|---|---|---|"]
    for rule in results[0]["rule_accuracy"]:
        cells = [_over_seeds([r["rule_accuracy"][rule] for r in results], [None] * len(results))]
        for when in ("violations_before", "violations_after"):
            cells.append(_over_seeds([r[when][rule]["rate"] for r in results], [r[when][rule]["se"] for r in results]))
        rows.append(f"| {rule} | " + " | ".join(cells) + " |")
    reward = {when: _over_seeds([r["true_reward"][when] for r in results],
                                [r["true_reward"][f"{when}_se"] for r in results]) for when in ("before", "after")}
    spread = (f"mean ± standard error over {len(results)} seeds" if len(results) > 1 else
              "one seed; ± is the standard error over held-out answers")
    return ("\n".join(rows) + f"\n\nTrue reward {reward['before']} before, {reward['after']} after ({spread}).\n\n"
            + "\n\n".join(cite(f) for f in files))


DECODING = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")


def decoding() -> str:
    """DExperts at several α, anti-expert re-ranking and the expert alone, on the frozen base model, over the seeds."""
    files = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "outer").glob("decoding_seed*.json"))
    runs = [load(f)["results"]["rows"] for f in files]
    rows = ["| decoding | " + " | ".join(k.replace("_", " ") for k in DECODING) + " | tokens/s |",
            "|---|" + "---|" * (len(DECODING) + 1)]
    for i, row in enumerate(runs[0]):
        same = [run[i] for run in runs]
        cells = [_over_seeds([r[k] for r in same], [r["stderr"][k] for r in same]) for k in DECODING]
        speeds = [r["tokens_per_s"] for r in same if r.get("tokens_per_s") is not None]
        cells.append(f"{sum(speeds) / len(speeds):.0f}" if speeds else "–")
        rows.append(f"| {row['rule']} | " + " | ".join(cells) + " |")
    spread = (f"Mean ± standard error over {len(runs)} seeds" if len(runs) > 1 else
              "One seed (± is the standard error over held-out answers, clustered by prompt)")
    return ("\n".join(rows) + f"\n\n{spread}; tokens/s (mean) were measured in the same runs on a machine shared "
            "with other jobs, so compare them within the table only.\n\n" + "\n\n".join(cite(f) for f in files))


FINDINGS = ("fact_accuracy", "true_reward", "helpfulness", "honesty", "harmlessness")


def findings() -> str:
    """The two instruction-tuning findings: contradicting facts, and simplified or delusive task definitions."""
    record = load("outer/findings.json")
    result = record["results"]
    header = " | ".join(k.replace("_", " ") for k in FINDINGS)
    parts = []
    for title, key, label in (("Contradicting facts", "contradicting_facts", "contradict_fraction"),
                              ("Task definitions", "task_definitions", "definition")):
        rows = [f"**{title}**", "", f"| {label.replace('_', ' ')} | {header} |", "|---|" + "---|" * len(FINDINGS)]
        for row in result[key]:
            rows.append(f"| {row[label]} | " + " | ".join(fmt(row[k], row[f'{k}_se']) for k in FINDINGS) + " |")
        parts.append("\n".join(rows))
    seeds = result["contradicting_facts"][0]["seeds"]
    return ("\n\n".join(parts) + f"\n\nMean ± standard error over {seeds} seeds; fact accuracy is on held-out "
            f"questions about other countries.\n\n{cite('outer/findings.json')}")


BLOCKS = {"outer-findings": findings, "outer-ird": ird, "outer-rlsf": rlsf, "outer-rules": rules, "outer-decoding": decoding}
