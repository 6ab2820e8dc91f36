"""Calibrated rule-conditioned scores: each rule's raw score mapped to the probability that an answer follows the
rule (Platt scaling), aggregated over the rules that apply to a prompt; and the rule-violation label rows
({prompt, response, rule, violated}) the calibration (and :mod:`alignlab.outer.rules`) learns from.

:class:`~alignlab.outer.online.rewards.CalibratedRuleReward` is the reward source built on it, and
``reward.rule_calibration`` (:class:`~alignlab.outer.online.rewards.RewardSourceConfig`) loads a calibration from
a config with :func:`load_rule_calibration`. This module imports neither of those modules, so both can use it.

Example::

    >>> cal = fit_rule_calibration({"r": [(2.0, False), (1.0, False), (-1.0, True), (-2.0, True)]})
    >>> cal.follow_probability("r", 2.0) > 0.5 > cal.follow_probability("r", -2.0)
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.errors import DataError

REQUIRED = ("prompt", "response", "rule", "violated")


def label_messages(prompt: Any) -> list[dict[str, str]]:
    """A label row's prompt as chat messages (a plain text is one user turn)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def check_label(row: Any, source: str, index: int) -> None:
    """Raise a DataError naming ``source``, the row and the field unless ``row`` is a rule-violation label."""
    if not isinstance(row, dict):
        raise DataError("a rule-violation label must be a JSON object", source=source, row=index)
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise DataError(f"a rule-violation label needs {', '.join(REQUIRED)}", source=source, row=index,
                        field=missing[0])
    if not isinstance(row["violated"], bool):
        raise DataError(f"'violated' must be true or false, got {row['violated']!r}", source=source, row=index,
                        field="violated")


# -- calibrated aggregation over the rules that apply --------------------------------------------------------
#
# A rule-conditioned model's raw scores are Bradley–Terry logits *within* a rule: only their differences under
# one rule mean something. Across rules the offsets and scales are arbitrary (a rule may score every answer
# around +8, another around 0), so the min or mean of raw scores lets one rule's scale, or a rule that does not
# apply to the prompt at all, decide the ranking. Calibration maps each rule's score to the probability that
# the answer follows the rule, p_r(s) = σ(a_r s + c_r), fitted per rule by logistic regression (BCE) on the
# rule-violation labels (Platt scaling); answers are then compared by log P(every applicable rule followed) =
# Σ_{r applies} log p_r(s_r) (rules taken as independent), or by the least-followed applicable rule.
#
# Fit the calibration on labels the reward model was NOT trained on: on its own training labels the raw scores
# separate followed from broken better than they will on new answers, and Platt scaling then comes out
# overconfident (slopes too steep).


@dataclass
class RuleCalibration:
    """Per rule, ``p(follows | raw score s) = σ(slope · s + intercept)``.

    Example::

        >>> cal = RuleCalibration(slope={"r": 2.0}, intercept={"r": -16.0})
        >>> round(cal.follow_probability("r", 8.0), 3), round(cal.follow_probability("r", 10.0), 3)
        (0.5, 0.982)
    """

    slope: dict[str, float]
    intercept: dict[str, float]

    def logit(self, rule: str, score: float) -> float:
        if rule not in self.slope:
            import difflib

            close = difflib.get_close_matches(rule, list(self.slope), n=1)
            raise DataError(f"no calibration for rule '{rule}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        return self.slope[rule] * score + self.intercept[rule]

    def follow_probability(self, rule: str, score: float) -> float:
        import math

        return 1.0 / (1.0 + math.exp(-self.logit(rule, score)))

    def save(self, path: str | Path) -> None:
        from alignlab.core.io import atomic_write_json

        atomic_write_json(Path(path), {"slope": self.slope, "intercept": self.intercept})

    @classmethod
    def load(cls, path: str | Path) -> RuleCalibration:
        data = json.loads(Path(path).read_text())
        return cls(slope=data["slope"], intercept=data["intercept"])


def fit_rule_calibration(labelled: dict[str, list[tuple[float, bool]]], *, l2: float = 1e-3) -> RuleCalibration:
    """Fit ``σ(a s + c)`` per rule to ``{rule: [(raw score, violated), ...]}`` by minimising the binary cross-entropy
    of "followed" (plus a small L2 on ``a`` so separable labels stay finite). Each rule needs both kinds."""
    import torch

    slope, intercept = {}, {}
    for rule, rows in labelled.items():
        followed = torch.tensor([0.0 if v else 1.0 for _, v in rows], dtype=torch.float64)
        if not rows or followed.min() == followed.max():
            raise DataError(f"rule '{rule}' needs both followed and broken answers to be calibrated", field="violated")
        scores = torch.tensor([s for s, _ in rows], dtype=torch.float64)
        mean, scale = scores.mean(), scores.std().clamp_min(1e-8)
        z = (scores - mean) / scale  # fitted on standardised scores, mapped back below
        a = torch.zeros((), dtype=torch.float64, requires_grad=True)
        c = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS([a, c], max_iter=200, line_search_fn="strong_wolfe")

        def closure(a=a, c=c, z=z, followed=followed, optimiser=optimiser) -> torch.Tensor:
            optimiser.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(a * z + c, followed) + l2 * a * a
            loss.backward()
            return loss

        optimiser.step(closure)
        a, c = a.detach(), c.detach()
        slope[rule] = float(a / scale)  # a·z + c = (a/scale)·s + (c − a·mean/scale)
        intercept[rule] = float(c - a * mean / scale)
    return RuleCalibration(slope=slope, intercept=intercept)


def calibrated_scores(table: list[list[float]], rules: list[str], calibration: RuleCalibration,
                      applicable: list[set[str]] | None = None, *, aggregate: str = "log_all") -> list[float]:
    """One score per completion from raw per-rule scores ``table[rule][completion]``, counting only the rules
    that apply to its prompt (``applicable[i]``; None: all rules).

    ``log_all``: Σ_{r applies} log p_r (the log-probability that every applicable rule is followed; 0 when none
    applies); ``min``: the smallest p_r over applicable rules (1 when none applies)."""
    import math

    if aggregate not in ("log_all", "min"):
        raise DataError(f"unknown rule aggregate '{aggregate}'; choose log_all or min", field="aggregate")
    out = []
    for i in range(len(table[0]) if table else 0):
        rules_here = [(k, r) for k, r in enumerate(rules) if applicable is None or r in applicable[i]]
        logits = [calibration.logit(r, table[k][i]) for k, r in rules_here]
        if aggregate == "log_all":  # log σ(x) = −softplus(−x), computed stably
            out.append(sum(-(max(-x, 0.0) + math.log1p(math.exp(-abs(x)))) for x in logits))
        else:
            out.append(min((1.0 / (1.0 + math.exp(-x)) for x in logits), default=1.0))
    return out


def fit_on_labels(source, labels: list[dict[str, Any]]) -> RuleCalibration:
    """Fit each rule's calibration on rule-violation label rows ({prompt, response, rule, violated}) scored by
    ``source`` (a RuleConditionedReward: ``rules`` and ``per_rule``)."""
    labelled: dict[str, list[tuple[float, bool]]] = {}
    for rule in source.rules:
        rows = [r for r in labels if r["rule"] == rule]
        if not rows:
            raise DataError(f"no label rows for rule '{rule}': every rule of the reward model needs labelled "
                            "followed and broken answers to be calibrated", field="rule")
        scores = source.per_rule([label_messages(r["prompt"]) for r in rows], [r["response"] for r in rows])
        labelled[rule] = list(zip(scores[list(source.rules).index(rule)], [r["violated"] for r in rows]))
    return fit_rule_calibration(labelled)


def load_rule_calibration(path: str | Path, source) -> RuleCalibration:
    """The calibration a config names (``reward.rule_calibration``): a JSON file as :meth:`RuleCalibration.save`
    writes it, or a JSONL file of held-out rule-violation labels ({prompt, response, rule, violated} rows) that
    ``source`` (a RuleConditionedReward) scores and the calibration is fitted on. A missing file, unreadable
    JSON, a missing or non-numeric field, or a rule of ``source`` without a calibration raises a DataError
    naming the file (and the row or field).

    Example::

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "calibration.json"
        >>> RuleCalibration(slope={"r": 2.0}, intercept={"r": -1.0}).save(path)
        >>> class Scorer: rules = ["r"]
        >>> load_rule_calibration(path, Scorer()).slope
        {'r': 2.0}
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such calibration file (a calibration JSON or a JSONL file of rule-violation labels)",
                        source=str(path), field="reward.rule_calibration")
    text = path.read_text()
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"not JSON ({e.msg})", source=str(path), row=i) from None
            check_label(rows[-1], str(path), i)
        try:
            calibration = fit_on_labels(source, rows)
        except DataError as e:
            raise DataError(str(e), source=str(path)) from None
        return calibration
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"not JSON ({e.msg}); a calibration file holds {{\"slope\": {{rule: a}}, \"intercept\": "
                        "{rule: c}} (or use a .jsonl file of labels to fit one)", source=str(path)) from None
    for key in ("slope", "intercept"):
        values = data.get(key) if isinstance(data, dict) else None
        if not isinstance(values, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in values.values()):
            raise DataError("must map every rule text to a number", source=str(path), field=key)
    missing = [r for r in source.rules if r not in data["slope"] or r not in data["intercept"]]
    if missing:
        raise DataError(f"no calibration for rule '{missing[0]}' (every rule in reward.rules needs one)",
                        source=str(path), field="slope")
    return RuleCalibration(slope={k: float(v) for k, v in data["slope"].items()},
                           intercept={k: float(v) for k, v in data["intercept"].items()})
