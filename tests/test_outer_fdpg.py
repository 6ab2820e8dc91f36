"""Diversity of a policy's answers per prompt (hand-computed cases), and ``alignlab bench fdpg`` end to end on a tiny
world with a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from test_offline_bench import world_and_model  # noqa: F401 (a fixture, used by name)

from alignlab.attacks import diversity as attack_diversity
from alignlab.cli import main
from alignlab.evaluate import diversity
from alignlab.evaluate.diversity import per_prompt_diversity
from alignlab.experiments.fdpg_bench import COLUMNS, FDPGBenchConfig


def test_per_prompt_diversity_is_each_prompts_measure_then_the_mean_over_prompts():
    # prompt 0 answers "the cat sat" and "the dog sat"; prompt 1 answers "no" twice (answer k is to prompt k % 2)
    answers = ["the cat sat", "no", "the dog sat", "no"]
    got = per_prompt_diversity(answers, 2)
    # distinct-1: prompt 0 has {the, cat, sat, dog} of 6 unigrams, prompt 1 {no} of 2
    assert got["distinct_1"] == pytest.approx((4 / 6 + 1 / 2) / 2)
    # distinct-2: prompt 0 has 4 distinct bigrams of 4; prompt 1 has none at all (counted 0)
    assert got["distinct_2"] == pytest.approx((1.0 + 0.0) / 2)
    assert got["unique"] == pytest.approx((1.0 + 0.5) / 2)
    # self-BLEU with 4-grams; prompt 0, each against the other: p1 = 2/3, p2 = ε/2, p3 = ε/1, p4 = ε/1
    # (a 3-word hypothesis has no 4-gram: 0/1, smoothed), brevity 1; prompt 1: p1 = 1, p2..p4 = ε/1
    eps = diversity.SMOOTHING_EPSILON
    prompt0 = (2 / 3 * eps / 2 * eps * eps) ** 0.25
    prompt1 = (1 * eps * eps * eps) ** 0.25
    assert got["self_bleu"] == pytest.approx((prompt0 + prompt1) / 2)
    assert per_prompt_diversity(["a b", "a b", "a b", "a b"], 1)["unique"] == 0.25


def test_per_prompt_diversity_refuses_a_prompt_with_one_answer():
    with pytest.raises(ValueError, match="two answers per prompt"):
        per_prompt_diversity(["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="two answers per prompt"):
        per_prompt_diversity(["a", "b"], 2)


def test_the_attacks_module_re_exports_the_moved_measures():
    assert attack_diversity.self_bleu is diversity.self_bleu and attack_diversity.distinct_n is diversity.distinct_n


def test_bench_trains_each_divergence_from_the_sft_model_and_measures_its_diversity(world_and_model, tmp_path):  # noqa: F811
    paths, sft = world_and_model
    out = tmp_path / "bench"
    argv = ["bench", "fdpg", "--world", "--world-dir", str(paths.root), "--output", str(out), "--sft-model", str(sft),
            "--max-steps", "2", *[x for s in ("eval_samples=2", "max_new_tokens=4", "divergences=[tv,js]", "beta=0.5")
                                  for x in ("--set", s)]]
    assert main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in record["results"]["rows"]}
    assert list(rows) == ["sft (start)", "tv", "js"] and record["command"][1:3] == ["bench", "fdpg"]
    assert rows["sft (start)"]["kl_to_sft"] == 0.0 and rows["sft (start)"]["gain_vs_sft"] == 0.0
    for name in ("tv", "js"):
        row = rows[name]
        assert set(COLUMNS) <= set(row) and "answers" not in row
        assert 0.0 < row["unique"] <= 1.0 and 0.0 <= row["self_bleu"] <= 1.0 and math.isfinite(row["kl_to_sft"])
        assert [step for step, *_ in row["trajectory"]] == [1, 2]
        # the tail mean (one step of two) is the last step's logged values
        assert row["train_reward"] == row["trajectory"][-1][1] and row["train_entropy"] == row["trajectory"][-1][3]
        config = yaml.safe_load((out / "runs" / name / "config.yaml").read_text())
        assert (config["divergence"], config["beta"], config["model"]["name_or_path"]) == (name, 0.5, str(sft))


def test_unknown_divergence_names_the_close_match():
    with pytest.raises(ValueError, match="did you mean forward_kl"):
        FDPGBenchConfig(world=True, divergences=["forward-kl"])
