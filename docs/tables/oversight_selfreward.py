"""Tables and figure of self-rewarding, R-Tuning and process supervision (docs/results/oversight/<method>/seed*.json,
each the results.json an ``alignlab oversee ...`` command wrote, one per seed): mean ± standard error over seeds."""

from __future__ import annotations

from pathlib import Path

from _common import RESULTS, cite, fmt, load, mean_se

MISSING = "*No result files yet: run the commands above.*"


def _seeds(method: str) -> list[str]:
    return sorted(f"oversight/{method}/{p.name}" for p in (RESULTS / "oversight" / method).glob("seed*.json"))


def _cell(values: list[float | None], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    return fmt(*mean_se(values), digits=digits) if values else "–"


def _cites(files: list[str]) -> str:
    return "\n\n".join(cite(f) for f in files)


def _second_world(method: str, columns: dict[str, callable]) -> str:
    """A check of the same settings on world seed 1 (mean ± standard error over its seeds), when its result
    files exist."""
    files = sorted(f"oversight/{method}/{p.name}" for p in (RESULTS / "oversight" / method).glob("world1-seed*.json"))
    if not files:
        return "\n\n*World seed 1: not run.*"
    runs = [load(f)["results"]["rows"] for f in files]
    table = [f"| model (world seed 1, {len(files)} seed(s)) | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    table += [f"| {row['method']} | " + " | ".join(_cell([get(r[i]) for r in runs]) for get in columns.values()) + " |"
              for i, row in enumerate(runs[0])]
    return "\n\n" + "\n".join(table) + "\n\n" + _cites(files)


def self_rewarding() -> str:
    files = _seeds("self-rewarding")
    if not files:
        return MISSING
    runs = [load(f)["results"]["rows"] for f in files]
    head = ["| model | true reward | helpfulness | honesty | harmlessness | judged rating (own samples) | true rating "
            "(same samples) | judged − true | rating accuracy | best-vs-worst agrees with truth | parse rate |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(runs[0]):
        rows = [r[i] for r in runs]
        cells = [_cell([r[k] for r in rows]) for k in ("true_reward", "helpfulness", "honesty", "harmlessness")]
        cells += [_cell([r["judge"][k] for r in rows]) for k in ("judged_rating", "true_rating", "judge_gap",
                                                                  "rating_accuracy", "pair_agreement", "parse_rate")]
        head.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    data = ["| iteration's training data (written and judged by the previous model) | pairs | best-vs-worst agrees "
            "with truth | true reward gap chosen − rejected | ties in truth | rating accuracy | parse rate |",
            "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(runs[0]):
        if not row.get("data"):
            continue
        rows = [r[i]["data"] for r in runs]
        cells = [_cell([r["pairs"] for r in rows], digits=1)]
        cells += [_cell([r[k] for r in rows]) for k in ("pair_agreement", "pair_true_gap", "pair_tie_rate",
                                                        "rating_accuracy", "parse_rate")]
        data.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    second = _second_world("self-rewarding", {
        "true reward": lambda r: r["true_reward"], "harmlessness": lambda r: r["harmlessness"],
        "true rating (own samples)": lambda r: r["judge"]["true_rating"],
        "judged − true": lambda r: r["judge"]["judge_gap"], "best-vs-worst agrees with truth":
        lambda r: r["judge"]["pair_agreement"], "parse rate": lambda r: r["judge"]["parse_rate"]})
    return "\n".join(head) + "\n\n" + "\n".join(data) + f"\n\n{len(files)} seeds.\n\n" + _cites(files) + second


def r_tuning() -> str:
    files = _seeds("r-tuning")
    if not files:
        return MISSING
    runs = [load(f)["results"] for f in files]
    head = ["| model | honesty | helpfulness | refuses answerable questions | accuracy on questions answered | "
            "honesty on unknowns | true reward (all prompts) |", "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(runs[0]["rows"]):
        rows = [r["rows"][i] for r in runs]
        cells = [_cell([r["questions"][k] for r in rows]) for k in ("honesty", "helpfulness", "refusal_rate_answerable",
                                                                     "accuracy_answered", "honesty_unknowns")]
        cells.append(_cell([r["true_reward"] for r in rows]))
        head.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    known = _cell([r["known_fraction"] for r in runs])
    return ("\n".join(head) + f"\n\nThe base model answered {known} of the {runs[0]['train_questions']} training "
            f"questions right (its own greedy answer). {len(files)} seeds.\n\n" + _cites(files)
            + _second_world("r-tuning", {name: (lambda r, k=k: r["questions"][k]) for name, k in (
                ("honesty", "honesty"), ("helpfulness", "helpfulness"), ("refuses answerable questions",
                "refusal_rate_answerable"), ("accuracy on questions answered", "accuracy_answered"))}))


NAMES = {"prm": "PRM (product of step probabilities)", "orm": "ORM",
         "base": "base model, no training (summed log-prob of the stated step results)", "vote": "majority vote",
         "distinct": "uniform over distinct texts (diagnostic: an uninformed pick)",
         "pass": "pass@N (some sample right: the ceiling)"}
VERIFIERS = {"prm": "PRM", "orm": "ORM", "base": "base model"}


def _curves(files: list[str]) -> dict[str, dict[str, list[float]]]:
    curves = [load(f)["results"]["curves"] for f in files]
    return {m: {n: [c[m][n]["accuracy"] for c in curves] for n in curves[0][m]} for m in curves[0]}


def process_supervision() -> str:
    files = _seeds("process-supervision")
    if not files:
        return MISSING
    curves = _curves(files)
    ns = list(curves["prm"])
    rows = ["| selector | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    rows += [f"| {NAMES[m]} | " + " | ".join(_cell(curves[m][n]) for n in ns) + " |" for m in NAMES if m in curves]
    results = [load(f)["results"] for f in files]
    ranked = [m for m in VERIFIERS if all(m in r["ranking_auc"] for r in results)]
    labels = " ".join([
        "How often a right solution outscores a wrong one of the same problem:",
        ", ".join(f"{VERIFIERS[m]} {_cell([r['ranking_auc'][m] for r in results])}" for m in ranked) + ".",
        f"PRM on held-out step labels: accuracy {_cell([r['prm_step_labels']['step_accuracy'] for r in results])},",
        f"recall of invalid steps {_cell([r['prm_step_labels']['invalid_step_recall'] for r in results])}.",
        f"Training data per seed: {_cell([r['train']['solutions'] for r in results], 1)} solutions,",
        f"{_cell([r['train']['invalid_steps'] for r in results], 1)} invalid of",
        f"{_cell([r['train']['step_labels'] for r in results], 1)} step labels; solution parse rate",
        f"{_cell([r['parse_rate'] for r in results])}."])
    if all("training_loss" in r for r in results):
        labels += " Training loss per label (mean of the first and of the last tenth of the steps) against the loss of "
        labels += "the best constant prediction: " + "; ".join(
            f"{VERIFIERS[m]} {_cell([r['training_loss'][m]['loss_start'] for r in results])} → "
            f"{_cell([r['training_loss'][m]['loss_end'] for r in results])} (constant "
            f"{_cell([r['training_loss'][m]['loss_constant'] for r in results])})" for m in ("prm", "orm")) + "."
        labels += " Solutions stating fewer steps than the problem has operations: "
        labels += f"{_cell([r['too_few_steps']['all'] for r in results])} of all samples, " + ", ".join(
            f"{_cell([r['too_few_steps'][m] for r in results])} of the {VERIFIERS[m]}'s picks among all {ns[-1]}"
            for m in VERIFIERS) + "."
        labels += f" Distinct texts among the {ns[-1]} samples of a problem: "
        labels += f"{_cell([r['distinct_texts_per_problem'] for r in results], 1)}."
    return "\n".join(rows) + f"\n\n{labels} {len(files)} seeds.\n\n" + _cites(files) + _more_labels()


def _more_labels() -> str:
    """One run with more training problems and verifier steps (seed 0), when its file exists."""
    relative = "oversight/process-supervision/more-labels-seed0.json"
    if not (RESULTS / relative).exists():
        return ""
    record = load(relative)
    r, config = record["results"], record["config"]
    loss = r["training_loss"]
    return "\n\n" + " ".join([
        f"With {config['train_problems']} training problems ({r['train']['invalid_steps']} invalid of",
        f"{r['train']['step_labels']} step labels) and {config['verifier_steps']} verifier steps (seed 0 only): a",
        f"right solution outscores a wrong one for the PRM {fmt(r['ranking_auc']['prm'])}, the ORM",
        f"{fmt(r['ranking_auc']['orm'])}; training loss PRM {fmt(loss['prm']['loss_start'])} →",
        f"{fmt(loss['prm']['loss_end'])} (constant {fmt(loss['prm']['loss_constant'])}), ORM",
        f"{fmt(loss['orm']['loss_start'])} → {fmt(loss['orm']['loss_end'])} (constant",
        f"{fmt(loss['orm']['loss_constant'])}); best-of-{list(r['curves']['prm'])[-1]} PRM",
        f"{fmt(list(r['curves']['prm'].values())[-1]['accuracy'])}, ORM",
        f"{fmt(list(r['curves']['orm'].values())[-1]['accuracy'])}."]) + "\n\n" + cite(relative)


def draw_best_of_n(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(_seeds("process-supervision"))
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m, name in NAMES.items():
        if m not in curves:
            continue
        ns = [int(n) for n in curves[m]]
        stats = [mean_se(curves[m][str(n)]) for n in ns]
        ax.errorbar(ns, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("solutions per problem (N)")
    ax.set_ylabel("best-of-N accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


BLOCKS = {"oversight_selfreward-self-rewarding": self_rewarding, "oversight_selfreward-r-tuning": r_tuning,
          "oversight_selfreward-process-supervision": process_supervision}
FIGURES = {"docs/oversight/figures/best-of-n.png": draw_best_of_n} if _seeds("process-supervision") else {}
