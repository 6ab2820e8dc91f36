"""Sparrow-style rule-conditioned reward models, trained from rule-violation labels (Glaese et al. 2022, Sec. 2.3).

Sparrow's raters mark, for each dialogue and each rule ("do not insult", "do not give harmful advice", ...),
whether the answer broke it. One reward model conditioned on the rule's text then predicts, for any rule,
how well an answer follows it. Here the labels become Bradley–Terry pairs: for one prompt and one rule, an
answer that follows the rule is preferred to one that breaks it, and the rule's text is part of the model's
input (:func:`alignlab.outer.online.rewards.rule_prompt`, a system message). The reward model is then an
ordinary one (:func:`alignlab.outer.reward.train_reward`), and an online method uses it through
``reward.source=rules`` (:class:`~alignlab.outer.online.rewards.RuleConditionedReward`: every completion scored
under every rule, the worst rule deciding by default).

Rule-violation labels are JSONL rows ``{"prompt": [messages] or text, "response": text, "rule": text,
"violated": bool}``.

Example::

    >>> rows = [{"prompt": "Hi", "response": "Hello!", "rule": "Be polite.", "violated": False},
    ...         {"prompt": "Hi", "response": "Go away.", "rule": "Be polite.", "violated": True}]
    >>> pair = rule_violation_pairs(rows)[0]
    >>> pair["prompt"][0]["content"], pair["chosen"][0]["content"], pair["rejected"][0]["content"]
    ('Rule: Be polite.', 'Hello!', 'Go away.')
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.errors import DataError
from alignlab.outer.online.rewards import CalibratedRuleReward, rule_prompt
from alignlab.outer.online.rule_calibration import (
    REQUIRED,
    RuleCalibration,
    calibrated_scores,
    check_label,
    fit_on_labels,
    fit_rule_calibration,
    label_messages,
    load_rule_calibration,
)
from alignlab.outer.reward import RewardModelConfig, train_reward

# the calibration lives in alignlab.outer.online.rule_calibration (the online reward sources load it from configs);
# its names are importable from here too
__all__ = ["REQUIRED", "CalibratedRuleReward", "RuleCalibration", "RuleRewardConfig", "calibrate_rule_reward",
           "calibrated_scores", "check_label", "fit_rule_calibration", "load_rule_calibration", "rule_violation_pairs",
           "train_rule_reward"]

def rule_violation_pairs(rows: list[dict[str, Any]], *, source: str = "labels") -> list[dict[str, Any]]:
    """Pairs (rule followed ≻ rule broken) for every prompt and rule that has answers of both kinds; the prompt
    carries the rule. Every followed answer is paired with every broken one of the same prompt and rule."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for i, row in enumerate(rows):
        check_label(row, source, i)
        messages = label_messages(row["prompt"])
        group = groups.setdefault((json.dumps(messages), row["rule"]), {"messages": messages, "followed": [],
                                                                         "broken": []})
        group["broken" if row["violated"] else "followed"].append(row["response"])
    pairs = []
    for (_, rule), group in groups.items():
        conditioned = rule_prompt(rule, group["messages"])
        pairs += [{"prompt": conditioned, "chosen": [{"role": "assistant", "content": good}],
                   "rejected": [{"role": "assistant", "content": bad}]}
                  for good in group["followed"] for bad in group["broken"] if good != bad]
    if not pairs:
        raise DataError("no prompt and rule has both a followed and a broken answer, so there is nothing to "
                        "compare", source=source)
    return pairs


@dataclass
class RuleRewardConfig(RewardModelConfig):
    """A Sparrow-style rule-conditioned reward model from rule-violation labels ({prompt, response, rule,
    violated} rows); ``data.eval_path`` may hold labels too."""

    output: str = "runs/rule-reward"


def _pairs_file(path: str, out: Path, name: str) -> str:
    from alignlab.core.io import atomic_write_text

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    pairs = rule_violation_pairs(rows, source=path)
    target = out / f"{name}.jsonl"
    atomic_write_text(target, "".join(json.dumps(p) + "\n" for p in pairs))
    return str(target)


def train_rule_reward(config: RuleRewardConfig, **kwargs: Any):
    """Turn the labels into rule-conditioned pairs (written beside the run as ``<output>-pairs/``), then train a
    Bradley–Terry reward model on them; returns the :class:`~alignlab.core.trainer.TrainResult`."""
    if not config.data.path:
        raise DataError("no rule-violation labels given (use --data PATH)", field="data.path")
    pairs_dir = Path(f"{config.output.rstrip('/')}-pairs")
    data = dataclasses.replace(config.data, path=_pairs_file(config.data.path, pairs_dir, "train"))
    if config.data.eval_path:
        data.eval_path = _pairs_file(config.data.eval_path, pairs_dir, "eval")
    return train_reward(dataclasses.replace(config, data=data), **kwargs)


def calibrate_rule_reward(source, labels: list[dict[str, Any]], **kwargs: Any) -> CalibratedRuleReward:
    """Fit each rule's calibration on rule-violation label rows ({prompt, response, rule, violated}) scored by
    ``source`` (a RuleConditionedReward), and wrap it; ``kwargs`` go to :class:`CalibratedRuleReward`."""
    return CalibratedRuleReward(source, fit_on_labels(source, labels), **kwargs)
