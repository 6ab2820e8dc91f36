"""The demo's results (docs/results/demo/*.json, each the ``results.json`` an ``alignlab demo`` run wrote): one
table per run, and which of the demo's comparisons hold in every run (a second seed, a second thread count).

A comparison "holds" when, in every run, the difference has the same sign and is at least two of its standard
errors wide (the two models' errors combined as √(se₁² + se₂²); the models are evaluated on the same prompts,
so this is conservative for a paired difference).
"""

from __future__ import annotations

import math
from pathlib import Path

from _common import RESULTS, cite, load

RATES = ["helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward"]
HIGHER_IS_BETTER = {"toxicity": False, "bias": False}
COMPARISONS = [("sft", "base"), ("dpo", "base"), ("dpo", "sft")]
Z_HOLDS = 2.0


def runs() -> list[str]:
    return sorted(str(p.relative_to(RESULTS)) for p in (RESULTS / "demo").glob("*.json"))


def _cell(result: dict, rate: str) -> str:
    value, se = result[rate], result.get("stderr", {}).get(rate)
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def run_tables() -> str:
    parts = []
    for relative in runs():
        record = load(relative)
        rows = ["| model | " + " | ".join(RATES) + " | KL to base |", "|---" * (len(RATES) + 2) + "|"]
        for model in ("base", "sft", "dpo"):
            result = record[model]
            rows.append(f"| {model} | " + " | ".join(_cell(result, r) for r in RATES)
                        + f" | {result.get('kl_to_reference', 0.0):.3f} |")
        threads = record["machine"]["threads"]
        parts.append(f"**{Path(relative).stem}** (seed {record['seed']}, {threads} thread(s); reward model pairwise "
                     f"accuracy {record['reward_model']['pairwise_accuracy']:.3f})\n\n" + "\n".join(rows)
                     + f"\n\n{cite(relative)}")
    return "\n\n".join(parts) if parts else "*No demo result files yet: see above for the commands.*"


def difference(record: dict, better: str, worse: str, rate: str) -> tuple[float, float]:
    """(difference, z): ``better``'s rate minus ``worse``'s, and that over its combined standard error."""
    a, b = record[better], record[worse]
    diff = a[rate] - b[rate]
    se = ((a["stderr"][rate] or 0.0) ** 2 + (b["stderr"][rate] or 0.0) ** 2) ** 0.5
    return diff, (diff / se if se else math.copysign(math.inf, diff) if diff else 0.0)


def conclusions() -> str:
    records = [load(r) for r in runs()]
    if not records:
        return "*No demo result files yet.*"
    names = [Path(r).stem for r in runs()]
    rows = ["| comparison | rate | " + " | ".join(f"{n}: difference (z)" for n in names) + " | holds in every run |",
            "|---|---|" + "---|" * len(names) + "---|"]
    for better, worse in COMPARISONS:
        for rate in RATES:
            cells, signs = [], []
            for record in records:
                diff, z = difference(record, better, worse, rate)
                cells.append(f"{diff:+.3f} ({z:+.1f})")
                improved = diff > 0 if HIGHER_IS_BETTER.get(rate, True) else diff < 0
                signs.append(("better" if improved else "worse") if abs(z) >= Z_HOLDS else "within noise")
            verdict = f"**{signs[0]}**" if len(set(signs)) == 1 and signs[0] != "within noise" else "no"
            rows.append(f"| {better} vs {worse} | {rate} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(rows)


BLOCKS = {"demo-runs": run_tables, "demo-conclusions": conclusions}
