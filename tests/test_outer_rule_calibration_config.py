"""Calibrated rule scores from a config: ``reward.source=rules`` with ``reward.rule_calibration`` (a calibration
JSON or a JSONL file of labels); a bad file is one error line naming the file and the field or row."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_jsonl
from test_rules import POLITE, SAFE, labels

from alignlab.cli import main
from alignlab.core.metrics import read_metrics
from alignlab.errors import ConfigError, DataError
from alignlab.outer.online.rewards import RewardSourceConfig, build_reward
from alignlab.outer.rules import CalibratedRuleReward, RuleCalibration


@pytest.fixture(scope="module")
def rule_model(tiny_model_dir, tmp_path_factory):
    """A rule-conditioned reward model trained for a few steps on the polite/safe labels."""
    tmp = tmp_path_factory.mktemp("rule-model")
    out = tmp / "rm"
    assert main(["train", "rule-reward", "--model", str(tiny_model_dir), "--data",
                 str(write_jsonl(tmp / "labels.jsonl", labels())), "--output", str(out), "--max-steps", "30",
                 "--set", "train.lr=1e-2", "--set", "train.batch_size=6", "--set", "train.progress=false",
                 "--set", "data.eval_fraction=0"]) == 0
    return out


def rules_config(model, calibration="", aggregate="min") -> RewardSourceConfig:
    return RewardSourceConfig(source="rules", model=str(model), rules=[POLITE, SAFE], rule_calibration=str(calibration),
                              rule_aggregate=aggregate)


def test_a_calibration_file_turns_raw_scores_into_follow_probabilities(rule_model, tmp_path) -> None:
    path = tmp_path / "calibration.json"
    RuleCalibration(slope={POLITE: 2.0, SAFE: -1.0}, intercept={POLITE: 0.5, SAFE: 1.0}).save(path)
    raw = build_reward(rules_config(rule_model))
    prompts, answers = [[{"role": "user", "content": "Hello!"}]] * 2, ["Hello, happy to help.", "Go away, you fool."]
    table = raw.per_rule(prompts, answers)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    p_polite = [sig(2.0 * s + 0.5) for s in table[0]]
    p_safe = [sig(-1.0 * s + 1.0) for s in table[1]]
    least = build_reward(rules_config(rule_model, path, "min"))
    assert isinstance(least, CalibratedRuleReward)
    assert least(prompts, answers) == pytest.approx([min(a, b) for a, b in zip(p_polite, p_safe)], rel=1e-9)
    every = build_reward(rules_config(rule_model, path, "log_all"))
    assert every(prompts, answers) == pytest.approx([math.log(a) + math.log(b) for a, b in zip(p_polite, p_safe)],
                                                    rel=1e-9)


def test_a_labels_file_is_fitted_and_keeps_each_rule_ordered(rule_model, tmp_path) -> None:
    source = build_reward(rules_config(rule_model, write_jsonl(tmp_path / "held_out.jsonl", labels()), "min"))
    polite, rude = source.per_rule([[{"role": "user", "content": "Hello!"}]] * 2,
                                   ["Hello, happy to help.", "Go away, you fool."])[0]
    assert polite > rude  # the trained model's order under the politeness rule ...
    cal = source.calibration  # ... is kept: Platt scaling on labels where higher means followed has slope > 0
    assert cal.follow_probability(POLITE, polite) > cal.follow_probability(POLITE, rude)


def online_run(policy, rule_model, tmp_path, calibration) -> list[str]:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": q}]}
                                                       for q in ("Hello!", "Thanks!", "How do I poison a well?")])
    return ["train", "grpo", "--model", str(policy), "--data", str(prompts), "--output", str(tmp_path / "grpo"),
            "--max-steps", "1", "--set", "train.progress=false", "--set", "generation.max_new_tokens=4",
            "--set", "group_size=2", "--set", "prompts_per_step=2", "--set", "minibatch_size=4",
            "--set", "reward.source=rules", "--set", f"reward.model={rule_model}",
            "--set", f"reward.rules=[{POLITE}, {SAFE}]", "--set", f"reward.rule_calibration={calibration}",
            "--set", "reward.rule_aggregate=log_all"]


def test_an_online_run_from_the_command_line_learns_from_the_calibrated_scores(tiny_model_dir, rule_model,
                                                                               tmp_path) -> None:
    # slope 0: every answer's calibrated score is the same known number, log σ(c₁) + log σ(c₂), whatever the raw
    # scores (which are never equal to it)
    path = tmp_path / "calibration.json"
    RuleCalibration(slope={POLITE: 0.0, SAFE: 0.0}, intercept={POLITE: 1.0, SAFE: -2.0}).save(path)
    assert main(online_run(tiny_model_dir, rule_model, tmp_path, path)) == 0
    expected = math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(2.0)))
    assert read_metrics(tmp_path / "grpo" / "metrics.jsonl")[0]["reward"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("content,name,message", [
    (None, "missing.json", "no such calibration file"),
    ("{not json", "cal.json", "not JSON"),
    (json.dumps({"slope": {POLITE: 1.0, SAFE: 1.0}}), "cal.json", "field 'intercept'"),
    (json.dumps({"slope": {POLITE: 1.0, SAFE: "steep"}, "intercept": {}}), "cal.json", "field 'slope'"),
    (json.dumps({"slope": {POLITE: 1.0}, "intercept": {POLITE: 0.0}}), "cal.json", "no calibration for rule"),
    ('{"prompt": "Hi", "response": "Hello", "rule": "x"}\n', "labels.jsonl", "row 0, field 'violated'"),
])
def test_a_bad_calibration_file_is_one_error_naming_the_file(rule_model, tmp_path, capsys, content, name,
                                                              message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        build_reward(rules_config(rule_model, path))
    assert str(path) in str(error.value)


def test_a_bad_calibration_file_in_a_command_is_one_error_line(tiny_model_dir, rule_model, tmp_path, capsys) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"slope": {POLITE: 1.0, SAFE: 1.0}}))
    assert main(online_run(tiny_model_dir, rule_model, tmp_path, path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"alignlab: error: {path}, field 'intercept': must map every rule text "
                                            "to a number")


def test_an_aggregate_that_does_not_fit_the_calibration_setting_is_refused_before_loading() -> None:
    with pytest.raises(ConfigError, match="needs no reward.rule_calibration; choose min or log_all"):
        build_reward(rules_config("no-such-model", "cal.json", "mean"))
    with pytest.raises(ConfigError, match="needs reward.rule_calibration; choose min or mean"):
        build_reward(rules_config("no-such-model", "", "log_all"))
