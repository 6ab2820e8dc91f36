"""Tables of constitutional AI, SELF-ALIGN, ILF and recursive reward modelling on the oversight world
(docs/results/oversight/<method>/seed{0,1,2}.json and world1-seed{0,1,2}.json, each written by `alignlab oversee <method>`
with ``result_file``): every model's ground truth as mean ± standard error over seeds, its change against the
row it is compared with (paired by seed), and the method's own number with the parse rate of its judge or critic."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

SCORES = ("true_reward", "helpfulness", "honesty", "harmlessness")
SEEDS = (0, 1, 2)


def _records(method: str) -> list[tuple[str, dict]]:
    names = [f"oversight/{method}/{world}seed{s}.json" for world in ("", "world1-") for s in SEEDS]
    return [(name, load(name)) for name in names if (RESULTS / name).exists()]


def _ms(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if all(isinstance(v, int) for v in values):  # counts (rows, pairs): mean with one decimal
        mean, se = mean_se(values)
        return f"{mean:.0f}" if se == 0 else f"{mean:.1f} ± {se:.1f}"
    return fmt(*mean_se(values)) if len(values) > 1 else fmt(values[0])


def _table(records: list[dict]) -> list[str]:
    """One line per model: the four scores (mean ± SE over the records), Δ true reward against its baseline
    (paired by record), the method's own number and the parse rate."""
    lines = ["| model | compared with | true reward | Δ true reward | helpfulness | honesty | harmlessness | "
             "its own number | parse rate |", "|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(records[0]["results"]["rows"]):
        rows = [r["results"]["rows"][i] for r in records]
        by_name = [{x["method"]: x for x in r["results"]["rows"]} for r in records]
        gain = "–" if row["baseline"] is None else _ms(
            [r["true_reward"] - names[row["baseline"]]["true_reward"] for r, names in zip(rows, by_name)])
        own = "–" if row["metric"] is None else f"`{row['metric']}` {_ms([r['value'] for r in rows])}"
        cells = [f"`{row['method']}`", f"`{row['baseline']}`" if row["baseline"] else "–",
                 _ms([r["true_reward"] for r in rows]), gain, *(_ms([r[k] for r in rows]) for k in SCORES[1:]),
                 own, _ms([r["parse_rate"] for r in rows])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _render(method: str, notes) -> str:
    found = _records(method)
    if not found:
        return "*No result file yet: run the commands above.*"
    world0 = [(n, r) for n, r in found if "world1" not in n]
    world1 = [(n, r) for n, r in found if "world1" in n]
    out = []
    if world0:
        out += [f"**World seed 0**, {len(world0)} seed(s) (mean ± standard error over seeds):", "",
                *_table([r for _, r in world0]), "", notes([r for _, r in world0]), ""]
    if world1:
        out += [f"**World seed 1**, {len(world1)} seed(s), the settings tuned on world 0 unchanged (mean ± standard "
                "error over seeds):", "",
                *_table([r for _, r in world1]), "", notes([r for _, r in world1]), ""]
    out += [cite(name) for name, _ in found]
    return "\n".join(out)


def _stat(records: list[dict], *path: str | int) -> str:
    values = []
    for r in records:
        value = r["results"]
        for key in path:
            value = value[key]
        values.append(value)
    return _ms(values)


def constitutional() -> str:
    def notes(records):
        return (f"SL stage: critique accuracy {_stat(records, 'sl_stage', 'critique_accuracy')} (parse rate "
                f"{_stat(records, 'sl_stage', 'critique_parse_rate')}); revisions that removed the principle's faults "
                f"{_stat(records, 'sl_stage', 'revision_success')}; true reward of the first responses "
                f"{_stat(records, 'sl_stage', 'response_reward')} and of the final revisions "
                f"{_stat(records, 'sl_stage', 'revision_reward')}. RL stage: verdict parse rate "
                f"{_stat(records, 'rl_stage', 'verdict_parse_rate')}, share of compared pairs labelled (both orders "
                f"agree) {_stat(records, 'rl_stage', 'label_rate')}, AI labels agreeing with the truth "
                f"{_stat(records, 'rl_stage', 'label_agreement')} against the annotator's "
                f"{_stat(records, 'human_label_agreement')} on its pairs.")
    return _render("constitutional", notes)


def self_align() -> str:
    def notes(records):
        return (f"Self-instruct: {_stat(records, 'prompts', 'generated')} raw prompts, "
                f"{_stat(records, 'prompts', 'kept')} new and readable"
                + (f", {_stat(records, 'prompts', 'held_out')} dropped as held-out evaluation prompts"
                   if all("held_out" in r["results"]["prompts"] for r in records) else "")
                + f". True reward of the principle-driven answers "
                f"{_stat(records, 'principle_driven_reward')} against the same model's plain answers "
                f"{_stat(records, 'plain_reward')} on the same prompts (difference "
                f"{_stat(records, 'principle_gain')}).")
    return _render("self-align", notes)


def ilf() -> str:
    def notes(records):
        return (f"Refinements that fix the feedback's fault (the world's grader): the chosen one "
                f"{_stat(records, 'refinement_stage', 'chosen_success')}, one at random "
                f"{_stat(records, 'refinement_stage', 'random_success')}, the best of the k (oracle) "
                f"{_stat(records, 'refinement_stage', 'oracle_success')}; "
                f"{_stat(records, 'refinement_stage', 'items')} answers with feedback.")
    return _render("ilf", notes)


def recursive_rm() -> str:
    def notes(records):
        parts = []
        for r, _ in enumerate(records[0]["results"]["rounds"]):
            a = ("rounds",)
            parts.append(
                f"round {r + 1}: labels agreeing with the truth, assisted {_stat(records, *a, r, 'assisted', 'label_agreement')}"
                f" on {_stat(records, *a, r, 'assisted', 'labelled')} labelled pairs, the same judge unassisted on the "
                f"same pairs {_stat(records, *a, r, 'assisted', 'same_pairs_unassisted', 'label_agreement')} on "
                f"{_stat(records, *a, r, 'assisted', 'same_pairs_unassisted', 'labelled')}; pairs labelled right "
                f"{_stat(records, *a, r, 'assisted', 'right_share')} against "
                f"{_stat(records, *a, r, 'assisted', 'same_pairs_unassisted', 'right_share')}; the assistant finds a "
                f"fault exactly when there is one {_stat(records, *a, r, 'assisted', 'fault_detection')}")
        return "Labels: " + "; ".join(parts) + "."
    return _render("recursive-rm", notes)


BLOCKS = {"oversight-constitutional": constitutional, "oversight-self-align": self_align, "oversight-ilf": ilf,
          "oversight-recursive-rm": recursive_rm}
