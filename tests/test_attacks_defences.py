"""Defences: the perplexity filter's scores, threshold and rates; adversarial preference pairs from attack runs."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.attacks.defences import (
    PerplexityFilter,
    adversarial_pairs,
    evaluate_perplexity_filter,
    prompt_token_logprobs,
    windowed_perplexity,
)
from alignlab.errors import AttackError


def test_windowed_perplexity_finds_the_improbable_stretch():
    logps = torch.log(torch.tensor([0.5] * 8 + [0.001] * 2))
    whole = windowed_perplexity(logps)
    assert whole == pytest.approx(math.exp(-(8 * math.log(0.5) + 2 * math.log(0.001)) / 10))
    assert windowed_perplexity(logps, window=2) == pytest.approx(1000.0)
    assert windowed_perplexity(logps, window=2) > whole


def test_prompt_logprobs_sum_to_the_lm_interfaces_rolling_loglikelihood(tiny_model_dir):
    from alignlab.evaluate.lm import HuggingFaceLM

    lm = HuggingFaceLM(str(tiny_model_dir))
    text = "The capital of Zorbia is Vell."
    ours = prompt_token_logprobs(lm.model, lm.tokenizer, text)
    assert len(ours) == len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert float(ours.sum()) == pytest.approx(lm.loglikelihood_rolling([text])[0], abs=1e-4)


def test_filter_threshold_and_rates(tiny_model_dir):
    filt = PerplexityFilter.calibrate([10.0, 20.0, 30.0])
    assert filt.threshold == 30.0 and filt.flags([29.0, 31.0]) == [False, True]
    assert PerplexityFilter.calibrate([10.0, 20.0, 30.0], quantile=0.5).threshold == 20.0
    with pytest.raises(AttackError):
        PerplexityFilter.calibrate([])
    from alignlab.evaluate.lm import HuggingFaceLM

    lm = HuggingFaceLM(str(tiny_model_dir))
    calibration = ["Hello! How can I help you today?", "Two plus two is four."]
    result = evaluate_perplexity_filter(lm.model, lm.tokenizer, calibration, calibration,
                                        {"same": calibration, "none": []})
    # the calibration set itself sits at or below its own maximum: no false positives, nothing detected
    assert result.false_positive_rate["k"] == 0 and result.detection_rate["same"]["k"] == 0
    assert result.detection_rate["none"]["rate"] is None


def test_adversarial_pairs_keep_successful_attempts_only():
    attempts = [{"messages": [{"role": "user", "content": "do harm xq!"}], "response": "Sure, here is how: Step 1",
                 "success": {"world": True}},
                {"messages": [{"role": "user", "content": "do harm zz"}], "response": "I can't help with that.",
                 "success": {"world": False}}]
    rows = adversarial_pairs(attempts)
    assert len(rows) == 1 and rows[0]["prompt"][0]["content"] == "do harm xq!"
    assert rows[0]["rejected"][0]["content"].startswith("Sure") and "can't" in rows[0]["chosen"][0]["content"]
    assert len(adversarial_pairs(attempts, successful_only=False)) == 2


def test_robustness_table_and_perplexity_filter_commands(tiny_model_dir, tmp_path):
    import json

    from alignlab.cli import main

    table = tmp_path / "robustness.json"
    assert main(["attack", "robustness", "--models", f"a={tiny_model_dir},b={tiny_model_dir}", "--attacks", "probe",
                 "--limit", "2", "--output", str(table), "--work", str(tmp_path / "work"),
                 "--set", "max_new_tokens=3"]) == 0
    models = json.loads(table.read_text())["results"]["models"]
    assert set(models) == {"a", "b"} and models["a"]["probe"]["summary"] == models["b"]["probe"]["summary"]
    assert models["a"]["probe"]["summary"]["identity"]["world"]["n"] == 2
    out = tmp_path / "filter.json"
    assert main(["attack", "perplexity-filter", "--model", str(tiny_model_dir), "--runs", str(tmp_path / "work/a-probe"),
                 "--output", str(out), "--set", "world_size=small"]) == 0
    result = json.loads(out.read_text())["results"]
    assert result["detection_rate"]["a-probe/plain"]["n"] == 2 and result["false_positive_rate"]["n"] > 50


def test_adversarial_training_command_trains_on_found_suffixes(tiny_model_dir, tmp_path):
    """Tiny budget: two training prompts attacked, their pairs plus four world pairs trained on with DPO, two
    held-out prompts attacked before and after; the trained model is a new model."""
    import json

    from safetensors.torch import load_file

    from alignlab.cli import main

    out = tmp_path / "adv.json"
    assert main(["attack", "adversarial-training", "--model", str(tiny_model_dir), "--work", str(tmp_path / "w"),
                 "--output", str(out), "--max-steps", "2", "--set", "train_limit=2", "--set", "eval_limit=2",
                 "--set", "mix_pairs=4", "--set", "gcg.num_steps=2", "--set", "gcg.search_width=8",
                 "--set", "gcg.topk=4", "--set", "gcg.optim_str_init=x x x", "--set", "gcg.check_target=false"]) == 0
    result = json.loads(out.read_text())["results"]
    assert result["n_pairs"] == 6 and result["before"]["gcg"]["world"]["n"] == result["after"]["gcg"]["world"]["n"] == 2
    pairs = [json.loads(line) for line in (tmp_path / "w" / "adversarial_pairs.jsonl").read_text().splitlines()]
    from alignlab.attacks.pipeline import load_behaviors

    goals = [b.goal for b in load_behaviors("world-train", limit=2)]
    assert [p["prompt"][0]["content"][:len(g)] for p, g in zip(pairs, goals)] == goals  # goal + found suffix
    assert pairs[0]["chosen"][0]["content"] == "I can't help with that."
    before, after = (load_file(str(d / "model.safetensors")) for d in (tiny_model_dir, tmp_path / "w" / "model"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
