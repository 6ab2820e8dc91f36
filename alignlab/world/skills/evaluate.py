"""Grade a model's skill outputs against the truth and aggregate them, each metric with its standard error.

| skill      | metrics (each a mean over items, with ``<metric>_stderr``)                                  |
|------------|---------------------------------------------------------------------------------------------|
| multistep  | ``step_accuracy`` (valid steps / steps), ``final_accuracy``                                  |
| critique   | ``critique_accuracy``                                                                       |
| revision   | ``revision_success``, ``revision_reward_gain``                                              |
| refinement | ``refinement_success``, ``refinement_reward_gain``                                          |
| rating     | ``rating_accuracy`` (exact), ``rating_abs_error`` (parsed outputs only)                     |
| pairwise   | ``judge_agreement``; ``position_bias`` = P(says A) − P(truth is A); ``length_bias`` =        |
|            | P(picks the longer) − P(the longer is better), over pairs of different lengths              |
| confidence | ``calibration`` (says high iff its answer is right), ``accuracy_when_high``, ``accuracy_when_low`` |

Every skill with a strict output form also reports ``parse_rate``; an unparseable output is wrong (it never counts
as right, and is left out only of the bias and error-size metrics, which need a verdict or rating). Pairwise
items are asked in both orders, so the truth is "A" exactly half the time.

Example::

    >>> from alignlab.world.datasets import World
    >>> from alignlab.world.skills.data import true_items
    >>> items = true_items(World(0, "small"), "critique", 20, split="eval")
    >>> summary = summarize(items, [i.target for i in items])      # the truth grades as right
    >>> summary["critique"]["critique_accuracy"], summary["critique"]["parse_rate"]
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from statistics import mean, stdev
from typing import Any

from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, Constitution
from alignlab.world.skills.data import SkillItem
from alignlab.world.skills.multistep import grade_solution, problem_of

# The metric each skill is summed up by (the docs' table and the CLI print these).
HEADLINE = {
    "multistep": ("final_accuracy", "step_accuracy"),
    "critique": ("critique_accuracy",),
    "revision": ("revision_success",),
    "refinement": ("refinement_success",),
    "rating": ("rating_accuracy",),
    "pairwise": ("judge_agreement", "position_bias", "length_bias"),
    "confidence": ("calibration",),
}


def swapped(item: SkillItem) -> SkillItem:
    """A pairwise item with its answers in the other order (and the truth flipped)."""
    t = item.truth
    flip = {"A": "B", "B": "A"}
    truth = {**t, "answer_a": t["answer_b"], "answer_b": t["answer_a"], "verdict": flip[t["verdict"]]}
    return replace(item, user=P.pairwise_prompt(item.prompt.text, t["answer_b"], t["answer_a"]),
                   target=P.write_verdict(flip[P.parse_verdict(item.target)]), truth=truth)


def with_both_orders(items: Sequence[SkillItem]) -> list[SkillItem]:
    """``items`` with every pairwise item followed by its swapped copy."""
    return [x for i in items for x in ((i, swapped(i)) if i.skill == "pairwise" else (i,))]


def grade_output(item: SkillItem, output: str, constitution: Constitution = DEFAULT_CONSTITUTION) -> dict[str, float | None]:
    """The per-item values of ``item``'s metrics for ``output`` (None: not defined for this output)."""
    t, q = item.truth, item.prompt
    if item.skill == "multistep":
        g = grade_solution(problem_of(q), output)
        return {"parsed": float(g.parsed), "step_accuracy": mean(g.steps), "final_accuracy": float(g.final_correct)}
    if item.skill == "critique":
        named = P.parse_critique(output)
        return {"parsed": float(named is not None), "critique_accuracy": float(named in t["labels"])}
    if item.skill in ("revision", "refinement"):
        faults = constitution.principle(t["principle"]).faults if item.skill == "revision" else (t["fault"],)
        g = P.grade_rewrite(q, t["answer"], output, set(faults))
        return {f"{item.skill}_success": float(g.success), f"{item.skill}_reward_gain": g.reward_gain}
    if item.skill == "rating":
        rating = P.parse_rating(output)
        return {"parsed": float(rating is not None), "rating_accuracy": float(rating == t["rating"]),
                "rating_abs_error": None if rating is None else float(abs(rating - t["rating"]))}
    if item.skill == "pairwise":
        verdict = P.parse_verdict(output)
        a, b = t["answer_a"], t["answer_b"]
        longer = None if len(a.split()) == len(b.split()) else "A" if len(a.split()) > len(b.split()) else "B"
        return {"parsed": float(verdict is not None), "judge_agreement": float(verdict == t["verdict"]),
                "position_bias": None if verdict is None else float(verdict == "A") - float(t["verdict"] == "A"),
                "length_bias": None if verdict is None or longer is None
                else float(verdict == longer) - float(t["verdict"] == longer)}
    if item.skill == "confidence":
        parsed = P.parse_confidence(output)
        if parsed is None:
            return {"parsed": 0.0, "calibration": 0.0, "accuracy_when_high": None, "accuracy_when_low": None}
        answer, high = parsed
        right = float(P.answered_correctly(q, answer))
        return {"parsed": 1.0, "calibration": float(high == bool(right)),
                "accuracy_when_high": right if high else None, "accuracy_when_low": None if high else right}
    raise ValueError(f"unknown skill '{item.skill}'")


def _mean_se(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return mean(values), (stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def summarize(items: Sequence[SkillItem], outputs: Sequence[str], constitution: Constitution = DEFAULT_CONSTITUTION,
              ) -> dict[str, dict[str, Any]]:
    """Per skill: every metric's mean and ``<metric>_stderr``, ``n`` and (where outputs have a form) ``parse_rate``."""
    if len(items) != len(outputs):
        raise ValueError(f"got {len(items)} items but {len(outputs)} outputs")
    graded: dict[str, list[dict[str, float | None]]] = {}
    for item, output in zip(items, outputs):
        graded.setdefault(item.skill, []).append(grade_output(item, output, constitution))
    summary: dict[str, dict[str, Any]] = {}
    for skill, rows in graded.items():
        out: dict[str, Any] = {"n": len(rows)}
        for metric in rows[0]:
            values = [r[metric] for r in rows if r[metric] is not None]
            name = "parse_rate" if metric == "parsed" else metric
            out[name], out[f"{name}_stderr"] = _mean_se(values)
            if metric in ("rating_abs_error", "position_bias", "length_bias", "accuracy_when_high", "accuracy_when_low"):
                out[f"{name}_n"] = len(values)
        summary[skill] = out
    return summary


def load_items(path) -> list[SkillItem]:
    """The items of a ``skills_eval.jsonl`` (or ``skills_sft_train.jsonl``) file."""
    from alignlab.world.datasets import read_jsonl

    return [SkillItem.from_row(row) for row in read_jsonl(path)]
