"""Tables of the scalable-oversight protocols (docs/results/oversight/*.json, each the results.json an
`alignlab oversee ...` command wrote)."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

SCORES = ("true_reward", "helpfulness", "honesty", "harmlessness")


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


def _mean_cell(values: list) -> str:
    values = [v for v in values if v is not None]
    return fmt(*mean_se(values)) if values else "–"


def world_table(pattern: str, caption: str) -> str:
    """Every oversight method's rows (``alignlab.oversight.world_run.table_row``) from the files matching
    ``pattern`` under docs/results/oversight/<method>/, mean ± standard error over the files (seeds)."""
    files = sorted((RESULTS / "oversight").glob(pattern))
    if not files:
        return "*No result files yet: run the commands of the method pages.*"
    grouped: dict[tuple[str, str], list[dict]] = {}
    sources: dict[str, list[str]] = {}
    for path in files:
        relative = str(path.relative_to(RESULTS))
        sources.setdefault(path.parent.name, []).append(relative)
        for row in load(relative)["results"]["rows"]:
            grouped.setdefault((path.parent.name, row["method"]), []).append(row)
    lines = [f"| experiment | model | baseline | {' | '.join(s.replace('_', ' ') for s in SCORES)} | own metric | "
             "value | parse rate | runs |", "|---|---|---|" + "---|" * (len(SCORES) + 4)]
    for (experiment, method), rows in grouped.items():
        metric = rows[0].get("metric")
        cells = [experiment, method, rows[0].get("baseline") or "–"]
        cells += [_mean_cell([r.get(k) for r in rows]) for k in SCORES]
        cells += [metric or "–", _mean_cell([r.get("value") for r in rows]) if metric else "–",
                  _mean_cell([r.get("parse_rate") for r in rows]), str(len(rows))]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    cites = [cite(relative) for relatives in sources.values() for relative in relatives[:1]]
    return "\n".join(lines) + f"\n\n{caption}\n\n" + "\n\n".join(cites)


def world_seed0() -> str:
    return world_table("*/seed*.json", "Mean ± standard error over training seeds (the runs column) on world seed 0; "
                       "one file of each experiment is cited (the others differ only in seed).")


def world_seed1() -> str:
    return world_table("*/world1-seed*.json", "The same settings on a second world (world seed 1): does each "
                       "method's effect keep its direction on a world it was not tuned on?")


def _row_cell(row: dict, key: str) -> str:
    return "–" if row.get(key) is None else fmt(row[key], row.get(f"{key}_stderr"))


def _served_stages(sources: dict) -> tuple[str, str, str]:
    """Of a result's ``sources``: the stages that sampled through the server, those that sampled a trained local
    copy (a role in brackets where a stage sampled several models), and the fine-tunings (from which weights)."""
    through, local = [], []
    for stage in sources["stages"]:
        sampled = stage.get("samples_from", {})
        for role, model in (sampled.items() if isinstance(sampled, dict) else [(None, sampled)]):
            name = f"{stage['stage']} ({role})" if role and isinstance(sampled, dict) and len(sampled) > 1 else stage["stage"]
            (through if model.startswith(sources["model"]) else local).append(name)
    def short(path: str) -> str:  # a stage's model directory is <stage>/model: keep the stage
        parts = path.rstrip("/").split("/")
        return "/".join(parts[-2:]) if parts[-1] == "model" else parts[-1]

    trained = [f"{s['stage']} ({short(s['trained_from'])})" for s in sources["stages"] if "trained" in s]
    return tuple(", ".join(dict.fromkeys(names)) or "–" for names in (through, local, trained))


def served() -> str:
    """Every oversight method run against the oversight base model behind `alignlab serve`: the rows with their
    ground truth and parse rates, then where each run's samples came from and what it trained."""
    files = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "oversight" / "served").glob("*.json"))
    if not files:
        return "*No result files yet.*"
    lines = [f"| method | model | baseline | {' | '.join(s.replace('_', ' ') for s in SCORES)} | own metric | value | "
             "parse rate |", "|---|---|---|" + "---|" * (len(SCORES) + 3)]
    where = ["| method | sampled through the server | sampled from a trained local copy | fine-tuned (from) |",
             "|---|---|---|---|"]
    for relative in files:
        name, result = relative.split("/")[-1][:-5], load(relative)["results"]
        for row in result["rows"]:
            cells = [name, row["method"], row.get("baseline") or "–", *(_row_cell(row, k) for k in SCORES),
                     row.get("metric") or "–", _row_cell(row, "value") if row.get("metric") else "–",
                     _row_cell(row, "parse_rate")]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if "sources" in result:
            where.append(f"| {name} | " + " | ".join(_served_stages(result["sources"])) + " |")
        else:
            where.append(f"| {name} | every stage (it samples and judges only) | – | – |")
    return ("\n".join(lines) + "\n\nOne seed each (seed 0, world seed 0), at small budgets; ± is the standard error "
            "within the run (over held-out prompts or questions). A method that fine-tunes scores every row on local "
            "weights (its base row: the local copy of the served model, which its fine-tunings start from); the "
            "sampling-only protocols score the served model through the server. Where each run's samples came from "
            "and what it trained (its `sources`; runs with `push_weights` sample every iteration through the "
            "server, loaded with the current local copy):\n\n" + "\n".join(where) + "\n\n"
            + "\n\n".join(cite(f) for f in files))


BLOCKS = {"oversight-served": served, "oversight-consistency": consistency, "oversight-self-consistency": self_consistency,
          "oversight-world": world_seed0, "oversight-world-seed1": world_seed1}
