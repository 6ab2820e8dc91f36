"""Tables of SENSEI and UDDIA-style decoding on the toy world (docs/results/outer/sensei/results.json and
docs/results/outer/uddia/results.json, the results.json that `alignlab bench sensei|uddia --world` wrote)."""

from __future__ import annotations

from _common import cite, fmt, load

RATES = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")


def _table(relative: str, extra: tuple[tuple[str, str], ...]) -> str:
    record = load(relative)
    summary = record["results"]["summary"]
    header = ["", *(r.replace("_", " ") for r in RATES), *(label for _, label in extra)]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, values in summary.items():
        cells = []
        for key in (*RATES, *(k for k, _ in extra)):
            value = values.get(key, {"mean": None})
            cells.append("–" if value["mean"] is None else fmt(value["mean"], value["se"], 1 if key in (
                "tokens_per_s", "train_seconds", "seconds") else 3))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    seeds = len(record["results"]["runs"])
    return "\n".join(rows) + f"\n\nMean ± standard error over {seeds} seeds.\n\n{cite(relative)}"


def sensei() -> str:
    return _table("outer/sensei/results.json", (("kl_to_sft", "KL to SFT (nats/answer)"),
                                                ("train_seconds", "train s"), ("tokens_per_s", "tokens/s")))


def sensei_gain() -> str:
    """Each steered row minus the truncation-only control, paired per seed (what the heads add beyond top-k)."""
    record = load("outer/sensei/results.json")
    results = record["results"]
    if "control" not in results:
        return "*The committed result file predates the truncation-only control; re-run the bench.*"
    header = ["", *(f"{r.replace('_', ' ')} gain" for r in RATES)]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, values in results["summary"].items():
        if values.get("true_reward_gain", {"mean": None})["mean"] is not None:
            per_seed = [[run["rows"][name][f"{r}_gain"] for run in results["runs"]] for r in RATES]
            rows.append(f"| {name} | " + " | ".join(
                fmt(values[f"{r}_gain"]["mean"], values[f"{r}_gain"]["se"], 3)
                + f" ({sum(g > 0 for g in gains)}/{len(gains)})" for r, gains in zip(RATES, per_seed)) + " |")
    return ("\n".join(rows) + f"\n\nAgainst `{results['control']}`, paired per seed; mean ± standard error over "
            f"{len(results['runs'])} seeds, (k/n): seeds where the gain is positive.\n\n"
            f"{cite('outer/sensei/results.json')}")


def uddia(relative: str = "outer/uddia/results.json") -> str:
    record = load(relative)["results"]
    probe = (f"\n\nThe attribute probe's accuracy on the {record['probe_held_out_answers']} held-out answers: "
             f"{record['probe_accuracy']:.3f} (share labelled undesired: {record['probe_positive_rate']:.3f}). "
             "Interventions per answer: " + "; ".join(
                 f"{name} " + fmt(values["interventions"]["mean"], values["interventions"]["se"])
                 for name, values in record["summary"].items() if values["interventions"]["mean"] is not None)
             + ". *probe p* is the attribute probe's mean probability of 'undesired' for the final answers, read "
             "from the unchanged model.")
    return _table(relative, (("attribute", "probe p"), ("tokens_per_s", "tokens/s"), ("seconds", "decode s"))) + probe


def dexperts() -> str:
    """DExperts on the same base model (`alignlab bench decoding`, one result file per seed), mean ± SE over seeds."""
    from _common import RESULTS, mean_se

    files = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "outer" / "uddia").glob("dexperts-seed*.json"))
    if not files:
        return "*No DExperts run is committed under `docs/results/outer/uddia/` yet.*"
    records = [load(f) for f in files]
    names = [row["rule"] for row in records[0]["results"]["rows"]]
    header = ["", *(r.replace("_", " ") for r in RATES), "tokens/s"]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in names:
        per_seed = [next(r for r in rec["results"]["rows"] if r["rule"] == name) for rec in records]
        cells = []
        for key in (*RATES, "tokens_per_s"):
            mean, se = mean_se([r[key] for r in per_seed])
            cells.append(fmt(mean, se if len(per_seed) > 1 else None, 1 if key == "tokens_per_s" else 3))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\nMean ± standard error over {len(records)} seed(s).\n\n" + "\n\n".join(
        cite(f) for f in files)


BLOCKS = {"outer-sensei": sensei, "outer-sensei-gain": sensei_gain, "outer-uddia": uddia, "outer-uddia-dexperts": dexperts,
          "outer-uddia-world1": lambda: uddia("outer/uddia/world-seed1.json")}
