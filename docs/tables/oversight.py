"""Tables of the scalable-oversight protocols (docs/results/oversight/*.json, each the results.json an
`alignlab oversee ...` command wrote)."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load


def consistency() -> str:
    if not (RESULTS / "oversight" / "consistency.json").exists():
        return "*No result file yet: run the command above.*"
    record = load("oversight/consistency.json")
    rows = ["| check | pairs | parse rate | error rate (truth) | flag rate | precision | recall |",
            "|---|---|---|---|---|---|---|"]
    for check, s in record["results"]["summary"].items():
        cells = [s["pairs"], fmt(s["parse_rate"]), fmt(s["error_rate"]), fmt(s["flag_rate"])]
        cells += ["–" if s[k] is None else fmt(s[k]) for k in ("precision", "recall")]
        rows.append(f"| {check} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows) + f"\n\n{cite('oversight/consistency.json')}"


def self_consistency() -> str:
    if not (RESULTS / "oversight" / "self-consistency.json").exists():
        return "*No result file yet: run the command above.*"
    record = load("oversight/self-consistency.json")
    result = record["results"]
    rows = ["| sampled answers k | majority accuracy |", "|---|---|"]
    rows += [f"| {k} | {fmt(result['accuracy'][k], result['stderr'][k])} |" for k in result["accuracy"]]
    return ("\n".join(rows) + f"\n\n{result['prompts']} held-out prompts; parse rate {fmt(result['parse_rate'])}."
            f"\n\n{cite('oversight/self-consistency.json')}")


BLOCKS = {"oversight-consistency": consistency, "oversight-self-consistency": self_consistency}
