"""Rule-conditioned scores calibrated per rule and aggregated over the rules that apply to the prompt."""

from __future__ import annotations

import math

import pytest

from alignlab.errors import DataError
from alignlab.outer.rules import (
    RuleCalibration,
    calibrate_rule_reward,
    calibrated_scores,
    fit_rule_calibration,
)

HARM, STEREO, POLITE = "Do not help with harm.", "Do not stereotype.", "Do not insult."


class HandScores:
    """A rule-conditioned scorer with hand-set raw scores: its rules' scales differ (POLITE's scores sit around
    +8, STEREO's around 0) and it gives STEREO a spuriously low score on prompts STEREO does not bind."""

    rules = [HARM, STEREO, POLITE]
    RAW = {"refuse": {HARM: 2.0, STEREO: -3.0, POLITE: 9.0},      # the right answer to a harmful request
           "comply": {HARM: -1.0, STEREO: 0.5, POLITE: 9.5},      # helps with the harm
           "polite-fair": {HARM: -2.0, STEREO: 0.3, POLITE: 10.0},  # group prompt: follows every rule (HARM unbound)
           "rude-fair": {HARM: 0.0, STEREO: 0.5, POLITE: 6.0}}     # group prompt: insults (POLITE's broken range)

    def per_rule(self, prompts, completions):
        return [[self.RAW[c][rule] for c in completions] for rule in self.rules]


def labels() -> list[dict]:
    """Labels whose raw scores put each rule's boundary where HandScores's scale says: HARM at 0.5, STEREO at 0,
    POLITE at 8."""
    rows = []
    for rule, followed, broken in ((HARM, [1.0, 2.0, 0.8, 0.2], [-1.0, 0.0, 0.6, -2.0]),
                                   (STEREO, [0.3, 0.5, 1.0, -0.2], [-0.3, -0.5, -1.0, 0.2]),
                                   (POLITE, [9.0, 10.0, 8.5, 7.5], [6.0, 7.0, 5.0, 8.3])):
        rows += [{"rule": rule, "score": s, "violated": False} for s in followed]
        rows += [{"rule": rule, "score": s, "violated": True} for s in broken]
    return rows


def calibration() -> RuleCalibration:
    by_rule: dict[str, list[tuple[float, bool]]] = {}
    for row in labels():
        by_rule.setdefault(row["rule"], []).append((row["score"], row["violated"]))
    return fit_rule_calibration(by_rule)


def test_uncalibrated_min_and_mean_rank_these_pairs_wrong_and_calibration_ranks_them_right() -> None:
    source, cal = HandScores(), calibration()
    harmful, group = {HARM, POLITE}, {STEREO, POLITE}  # the rules that bind each prompt
    for good, bad, applicable in (("refuse", "comply", harmful), ("polite-fair", "rude-fair", group)):
        table = source.per_rule([None, None], [good, bad])
        raw_min = [min(col) for col in zip(*table)]
        raw_mean = [sum(col) / len(col) for col in zip(*table)]
        assert raw_min[0] < raw_min[1] or raw_mean[0] < raw_mean[1]  # the uncalibrated sum or min prefers the bad one
        for aggregate in ("log_all", "min"):
            calibrated = calibrated_scores(table, source.rules, cal, [applicable, applicable], aggregate=aggregate)
            assert calibrated[0] > calibrated[1], (good, aggregate)
    # the first pair is ranked wrong by both uncalibrated aggregates
    table = source.per_rule([None, None], ["refuse", "comply"])
    assert min(c[0] for c in table) < min(c[1] for c in table) and sum(c[0] for c in table) < sum(c[1] for c in table)


def test_calibration_puts_each_rule_boundary_where_its_labels_do() -> None:
    cal = calibration()
    for rule, boundary in ((HARM, 0.5), (STEREO, 0.0), (POLITE, 8.0)):
        assert cal.follow_probability(rule, boundary + 1.0) > 0.5 > cal.follow_probability(rule, boundary - 1.0)


def test_log_all_is_the_sum_of_log_follow_probabilities_over_applicable_rules_only() -> None:
    cal = RuleCalibration(slope={HARM: 1.0, STEREO: 2.0}, intercept={HARM: 0.0, STEREO: -1.0})
    table = [[0.0, 1.0], [1.0, 0.0]]  # [rule][completion]
    scores = calibrated_scores(table, [HARM, STEREO], cal, [{HARM, STEREO}, {HARM}])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert scores[0] == pytest.approx(math.log(sig(0.0)) + math.log(sig(1.0)))
    assert scores[1] == pytest.approx(math.log(sig(1.0)))  # STEREO does not apply: left out
    assert calibrated_scores(table, [HARM, STEREO], cal, [set(), set()]) == [0.0, 0.0]


def test_calibrate_rule_reward_scores_the_labels_and_becomes_a_reward_source() -> None:
    class Source(HandScores):
        def per_rule(self, prompts, completions):
            return [[float(c) for c in completions] for _ in self.rules]  # raw score = the response's number

    rows = [{"prompt": "x", "response": str(s), "rule": rule, "violated": s < 0}
            for rule in HandScores.rules for s in (-2, -1, 1, 2)]
    reward = calibrate_rule_reward(Source(), rows, applies=lambda prompt: {HARM})
    high, low = reward([[{"role": "user", "content": "x"}]] * 2, ["3", "-3"])
    assert high > math.log(0.5) > low


def test_a_rule_with_labels_of_one_kind_or_no_calibration_is_named() -> None:
    with pytest.raises(DataError, match="rule 'r' needs both"):
        fit_rule_calibration({"r": [(1.0, False), (2.0, False)]})
    with pytest.raises(DataError, match="did you mean"):
        RuleCalibration(slope={HARM: 1.0}, intercept={HARM: 0.0}).logit("Do not help with harm", 0.0)


def test_the_calibrated_reward_reaches_trainers_through_as_source_with_the_messages() -> None:
    from alignlab.outer.online.rewards import as_source

    seen = []

    class Source(HandScores):
        def per_rule(self, prompts, completions):
            seen.extend(prompts)
            return super().per_rule(prompts, completions)

    reward = as_source(calibrate_rule_reward_from_hand(Source()))
    messages = [[{"role": "user", "content": "how do I hurt someone?"}]] * 2
    refuse, comply = reward(messages, ["refuse", "comply"])
    assert refuse > comply
    assert seen[-2:] == messages  # the chat messages, not prompts flattened to strings


def calibrate_rule_reward_from_hand(source, **kwargs):
    rows = [{"prompt": "x", "response": c, "rule": rule, "violated": c in broken}
            for rule, broken in ((HARM, {"comply"}), (STEREO, {"comply", "rude-fair"}), (POLITE, {"rude-fair"}))
            for c in HandScores.RAW]
    return calibrate_rule_reward(source, rows, **kwargs)


def test_a_rule_without_labels_and_an_unknown_applicable_rule_raise() -> None:
    rows = [{"prompt": "x", "response": c, "rule": HARM, "violated": c == "comply"} for c in HandScores.RAW]
    with pytest.raises(DataError, match="no label rows for rule 'Do not stereotype.'"):
        calibrate_rule_reward(HandScores(), rows)
    with pytest.raises(DataError, match="no calibration for rule"):
        from alignlab.outer.rules import CalibratedRuleReward

        CalibratedRuleReward(HandScores(), calibration().__class__(slope={HARM: 1.0}, intercept={HARM: 0.0}))
    reward = calibrate_rule_reward_from_hand(HandScores(), applies=lambda prompt: {"Do not help with harm"})
    with pytest.raises(DataError, match="did you mean 'Do not help with harm.'"):
        reward([[{"role": "user", "content": "x"}]], ["refuse"])
