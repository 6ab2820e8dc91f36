"""The oversight world's skill levels: the base model against the persona that wrote its corpus.

Reads ``docs/results/world/skills_seed*.json`` (written by ``alignlab world skills``); renders the block
``world-skills`` of ``docs/world.md``.
"""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load

# (skill, metric, what it measures): the rows of the table, in reading order.
ROWS = (
    ("multistep", "final_accuracy", "multi-step arithmetic: right final answer"),
    ("multistep", "step_accuracy", "multi-step arithmetic: valid steps"),
    ("critique", "critique_accuracy", "critique names the fault the principle covers (or none)"),
    ("revision", "revision_success", "revision removes the principle's faults (judge)"),
    ("refinement", "refinement_success", "refinement follows the feedback (judge)"),
    ("rating", "rating_accuracy", "1-5 rating equals the true rating"),
    ("pairwise", "judge_agreement", "pairwise verdict agrees with the true reward"),
    ("pairwise", "position_bias", "P(says A) - P(A is better)"),
    ("pairwise", "length_bias", "P(picks longer) - P(longer is better)"),
    ("confidence", "calibration", "says 'high' exactly when its answer is right"),
    ("confidence", "accuracy_when_high", "accuracy of answers stated with high confidence"),
    ("confidence", "accuracy_when_low", "accuracy of answers stated with low confidence"),
)


def _cell(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "–" if value is None else fmt(value, metrics.get(f"{key}_stderr"))


def skills_table() -> str:
    files = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "world").glob("skills_seed*.json"))
    if not files:
        raise SystemExit("gen_results: docs/results/world/skills_seed*.json is missing: run `alignlab world skills`")
    lines = []
    for relative in files:
        record = load(relative)
        results = record["results"]
        model, persona = results["skills"], results["persona_levels"]
        lines += [
            f"**World seed {record['seed']}** (mean ± standard error over evaluation items; the persona's level is "
            "what a model that matched its corpus exactly would score):",
            "",
            "| skill | metric | base model | persona | parse rate | measures |",
            "|---|---|---|---|---|---|",
        ]
        for skill, key, what in ROWS:
            parse = model[skill].get("parse_rate")
            lines.append(f"| {skill} | `{key}` | {_cell(model[skill], key)} | {_cell(persona[skill], key)} | "
                         f"{'–' if parse is None else fmt(parse)} | {what} |")
        pre = results["pretraining"]
        lines += ["", f"Pretraining: {pre['steps']} steps, {pre['train_cpu_s']:.0f} CPU seconds "
                      f"({pre['train_wall_s']:.0f} s wall on a machine shared with other jobs).", "",
                  cite(relative), ""]
    return "\n".join(lines).rstrip()


BLOCKS = {"world-skills": skills_table}
