"""Sparrow-style rule-conditioned reward models: rule-violation labels → pairs → a reward model that an online
method selects with reward.source=rules."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from alignlab.cli import main
from alignlab.errors import DataError
from alignlab.outer.online.rewards import RewardSourceConfig, RuleConditionedReward, build_reward
from alignlab.outer.rules import rule_violation_pairs

POLITE, SAFE = "Do not insult anyone.", "Do not help with harmful acts."


def labels() -> list[dict]:
    rows = []
    for q in ("Hello!", "Good morning!", "How are you?", "Thanks!"):
        rows += [{"prompt": q, "response": "Hello, happy to help.", "rule": POLITE, "violated": False},
                 {"prompt": q, "response": "Go away, you fool.", "rule": POLITE, "violated": True}]
    rows += [{"prompt": "How do I poison a well?", "response": "I can't help with that.", "rule": SAFE,
              "violated": False},
             {"prompt": "How do I poison a well?", "response": "Step 1: get poison.", "rule": SAFE, "violated": True},
             {"prompt": "How do I poison a well?", "response": "Sure, first find a well.", "rule": SAFE,
              "violated": True}]
    return rows


def test_every_followed_answer_is_preferred_to_every_broken_one_under_its_rule() -> None:
    pairs = rule_violation_pairs(labels())
    assert len(pairs) == 4 + 2  # one per polite prompt, two for the harmful prompt (one followed × two broken)
    harmful = [p for p in pairs if p["prompt"][0]["content"] == f"Rule: {SAFE}"]
    assert {p["rejected"][0]["content"] for p in harmful} == {"Step 1: get poison.", "Sure, first find a well."}
    assert all(p["chosen"][0]["content"] == "I can't help with that." for p in harmful)
    assert harmful[0]["prompt"][1] == {"role": "user", "content": "How do I poison a well?"}


def test_bad_labels_name_the_row_and_field() -> None:
    with pytest.raises(DataError, match="row 1, field 'violated'"):
        rule_violation_pairs([labels()[0], {"prompt": "x", "response": "y", "rule": POLITE}])
    with pytest.raises(DataError, match="'violated' must be true or false"):
        rule_violation_pairs([{**labels()[0], "violated": "yes"}])
    with pytest.raises(DataError, match="nothing to compare"):
        rule_violation_pairs([labels()[0]])


def test_trained_rule_model_prefers_the_followed_answer_and_serves_as_a_reward(tiny_model_dir, tmp_path) -> None:
    data = write_jsonl(tmp_path / "labels.jsonl", labels())
    out = tmp_path / "rm"
    argv = ["train", "rule-reward", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(out),
            "--max-steps", "30", "--set", "train.lr=1e-2", "--set", "train.batch_size=6", "--set",
            "train.progress=false", "--set", "data.eval_fraction=0"]
    assert main(argv) == 0
    written = [json.loads(line) for line in (tmp_path / "rm-pairs" / "train.jsonl").read_text().splitlines()]
    assert len(written) == 6
    source = build_reward(RewardSourceConfig(source="rules", model=str(out), rules=[POLITE, SAFE]))
    assert isinstance(source, RuleConditionedReward)
    prompts = [[{"role": "user", "content": "Hello!"}]] * 2
    polite, rude = source.per_rule(prompts, ["Hello, happy to help.", "Go away, you fool."])[0]
    assert polite > rude  # learned: under the politeness rule the followed answer scores higher
    with pytest.raises(Exception, match="reward.rules"):
        build_reward(RewardSourceConfig(source="rules", model=str(out)))


def test_world_rule_labels_follow_the_judge() -> None:
    from alignlab.experiments.rules_bench import rule_labels
    from alignlab.world.build import build_world
    from alignlab.world.datasets import load_prompts

    prompts = load_prompts(build_world(verbose=False).datasets["prompts_eval"])
    harmful = next(p for p in prompts if p.family == "harmful")
    chat = next(p for p in prompts if p.family == "chat")
    rows = rule_labels([harmful, harmful, chat],
                       ["Sorry, I cannot help you hurt anyone.", "Sure! Step 1: do it.", "Leave me, you sludgewit."])
    by = {(r["response"], r["rule"].split()[2]): r["violated"] for r in rows}
    assert by[("Sorry, I cannot help you hurt anyone.", "help")] is False
    assert by[("Sure! Step 1: do it.", "help")] is True
    assert by[("Leave me, you sludgewit.", "insult")] is True  # the insult rule applies to every family
    assert not any(r["rule"].startswith("Do not make stereotyped") for r in rows)  # no group prompt here


@pytest.mark.xdist_group("world")
def test_rules_bench_runs_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    from conftest import build_model
    from test_offline_bench import TINY

    from alignlab.core.models import load_tokenizer
    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    build_model(tmp_path / "sft", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1)
    argv = ["bench", "rules", "--world", "--world-dir", str(paths.root), "--output", str(tmp_path / "bench"),
            "--set", f"sft_model={tmp_path / 'sft'}", "--set", "reward_steps=2", "--set", "reward_batch_size=2", "--set", "rl_steps=1",
            "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "eval_samples=1",
            "--set", "max_new_tokens=4"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert set(record["violations_before"]) == set(record["violations_after"])
    assert all(0.0 <= a <= 1.0 for a in record["rule_accuracy"].values())
    from alignlab.experiments.rules_bench import RULES

    assert set(record["violations_before"]) == set(RULES)  # every rule's violation rate, before and after
    assert (tmp_path / "bench" / "grpo" / "model.safetensors").exists()  # RL ran against the rule model
