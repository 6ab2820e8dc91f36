"""Tables of debate, multi-agent debate, market making, IDA and sandwiching on the oversight world
(docs/results/oversight/<method>/seed{S}.json, each written by ``alignlab oversee <method> --record ...``): the mean
± standard error over the seeds of world seed 0, and world seed 1's runs (``world1-seed{S}.json``) beside it."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

SCORES = ("true_reward", "helpfulness", "honesty", "harmlessness")


def _runs(method: str) -> tuple[list[str], list[str]]:
    """(the seed files of world seed 0, world seed 1's files), relative to docs/results."""
    folder = RESULTS / "oversight" / method
    seeds = sorted(p.name for p in folder.glob("seed*.json")) if folder.is_dir() else []
    other = sorted(p.name for p in folder.glob("world1-*.json")) if folder.is_dir() else []
    return [f"oversight/{method}/{n}" for n in seeds], [f"oversight/{method}/{n}" for n in other]


def _over_seeds(values: list[float]) -> str:
    return fmt(*mean_se(values)) if len(values) > 1 else fmt(values[0])


def _cites(files: list[str]) -> str:
    return "\n\n".join(cite(f) for f in files)


def _missing(method: str) -> str:
    return f"*No result files yet: run the commands above (docs/results/oversight/{method}/).*"


def _row_table(method: str, key: tuple[str, ...], metric_label: str) -> str:
    """One line per row key (method and ``key`` fields): the method's number and the ground truth of its model,
    mean ± standard error over seeds, and world seed 1's number."""
    files, other = _runs(method)
    if not files:
        return _missing(method)
    grouped: dict[tuple, list[dict]] = {}
    for f in files:
        for row in load(f)["results"]["rows"]:
            grouped.setdefault((row["method"], *(row.get(k) for k in key)), []).append(row)
    second: dict[tuple, list[float]] = {}
    for f in other:
        for r in load(f)["results"]["rows"]:
            second.setdefault((r["method"], *(r.get(k) for k in key)), []).append(r["value"])
    head = ["row", *key, "baseline", metric_label, "parse rate", *SCORES, "world seed 1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, rows in grouped.items():
        cells = [f"`{group[0]}`", *(str(v) for v in group[1:]), rows[0]["baseline"] or "–",
                 _over_seeds([r["value"] for r in rows]), fmt(sum(r["parse_rate"] for r in rows) / len(rows))]
        cells += [_over_seeds([r[s] for r in rows]) for s in SCORES]
        cells.append(_over_seeds(second[group]) if group in second else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n".join(lines) + f"\n\n{len(files)} seed(s) of world seed 0, {len(other)} of world seed 1.\n\n"
            + _cites(files + other))


def debate() -> str:
    return _row_table("debate", ("rounds",), "judge accuracy")


def multiagent_debate() -> str:
    files, other = _runs("multiagent-debate")
    if not files:
        return _missing("multiagent-debate")
    curves = [load(f)["results"]["curves"] for f in files]
    second: dict[tuple[int, int], list[float]] = {}
    for f in other:
        for c in load(f)["results"]["curves"]:
            for r, at in enumerate(c["rounds"]):
                second.setdefault((c["agents"], r), []).append(at["majority_accuracy"])
    lines = ["| agents | round | majority accuracy | mean agent accuracy | agents that changed | parse rate | "
             "world seed 1 majority |", "|---|---|---|---|---|---|---|"]
    for i, curve in enumerate(curves[0]):
        for r in range(len(curve["rounds"])):
            at = [c[i]["rounds"][r] for c in curves]
            w1 = _over_seeds(second[(curve["agents"], r)]) if (curve["agents"], r) in second else "–"
            lines.append(f"| {curve['agents']} | {r} | {_over_seeds([a['majority_accuracy'] for a in at])} | "
                         f"{_over_seeds([a['agent_accuracy'] for a in at])} | {_over_seeds([a['changed'] for a in at])} | "
                         f"{fmt(sum(a['parse_rate'] for a in at) / len(at))} | {w1} |")
    questions = load(files[0])["results"]["questions"]
    asked = ", ".join(f"{n} {family}" for family, n in questions.items())
    return ("\n".join(lines) + f"\n\nQuestions: {asked}; {len(files)} seed(s) of world seed 0, {len(other)} of world "
            "seed 1.\n\n" + _cites(files + other))


def _results(method: str) -> list[dict]:
    """The results of every seed file of world seed 0."""
    return [load(f)["results"] for f in _runs(method)[0]]


def market_making() -> str:
    table, records = _row_table("market-making", (), "accuracy"), _results("market-making")
    if not records:
        return table
    rounds = max(len(r["mean_move_by_round"]) for r in records)
    moves = [_over_seeds([r["mean_move_by_round"][k] if k < len(r["mean_move_by_round"]) else 0.0 for r in records])
             for k in range(rounds)]
    moving = [_over_seeds([r["moving_by_round"][k] if k < len(r["moving_by_round"]) else 0.0 for r in records])
              for k in range(rounds)]
    lines = ["| round | mean move of the market \\|Δp\\| | share of items still moving |", "|---|---|---|"]
    lines += [f"| {k + 1} | {moves[k]} | {moving[k]} |" for k in range(rounds)]
    shown = _over_seeds([r["arguments_shown"] for r in records])
    return table + "\n\n" + "\n".join(lines) + f"\n\nArguments shown per question: {shown}."


def ida() -> str:
    files, other = _runs("ida")
    if not files:
        return _missing("ida")
    records = [load(f)["results"]["iterations"] for f in files]
    ranges = list(records[0][0]["direct_before"])
    head = ["model", *(f"direct accuracy, {r} operations" for r in ranges), "amplified accuracy (range)",
            "distilled rows"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in range(len(records[0]) + 1):
        cells = [f"M{k}" + (" (base)" if k == 0 else "")]
        for r in ranges:
            values = [(its[0]["direct_before"] if k == 0 else its[k - 1]["direct_after"])[r]["accuracy"] for its in records]
            cells.append(_over_seeds(values))
        if k < len(records[0]):
            cells.append(_over_seeds([its[k]["amplified"]["accuracy"] for its in records]) + f" ({records[0][k]['range']})")
            cells.append(f"{sum(its[k]['rows'] for its in records) / len(records):.0f}")
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n".join(lines) + f"\n\nM{{k+1}} is M{{k}} distilled on Amp(M{{k}})'s solutions; {len(files)} seed(s).\n\n"
            + _row_table("ida", ("iteration",), "direct accuracy (longest range)"))


def sandwiching() -> str:
    table, records = _row_table("sandwiching", (), "overseer accuracy"), _results("sandwiching")
    if not records:
        return table
    return (table + f"\n\nThe assistant alone (the solution that agrees with its decomposed answer): "
            f"{_over_seeds([r['assistant_alone'] for r in records])}; its decomposed answers' accuracy "
            f"{_over_seeds([r['assistant_amplified_accuracy'] for r in records])}; the expert (the world's truth): 1.")


BLOCKS = {"oversight_debate-debate": debate, "oversight_debate-multiagent": multiagent_debate,
          "oversight_debate-market": market_making, "oversight_debate-ida": ida,
          "oversight_debate-sandwiching": sandwiching}
