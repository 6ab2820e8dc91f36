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


def uddia() -> str:
    record = load("outer/uddia/results.json")["results"]
    probe = (f"\n\nThe attribute probe's accuracy on the {record['probe_held_out_answers']} held-out answers: "
             f"{record['probe_accuracy']:.3f} (share labelled undesired: {record['probe_positive_rate']:.3f}). UDDIA "
             "intervened "
             + fmt(record["summary"]["UDDIA"]["interventions"]["mean"], record["summary"]["UDDIA"]["interventions"]["se"])
             + " times per answer.")
    return _table("outer/uddia/results.json", (("tokens_per_s", "tokens/s"), ("seconds", "decode s"))) + probe


BLOCKS = {"outer-sensei": sensei, "outer-uddia": uddia}
