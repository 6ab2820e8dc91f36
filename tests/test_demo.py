"""`alignlab demo` end to end on a tiny budget: every stage runs, results.json and report.html come out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignlab.cli import main

TINY = ["base.train.max_steps=30", "base.hidden_size=32", "base.layers=1", "base.heads=2",
        "sft.max_steps=4", "reward.max_steps=4", "dpo.max_steps=4", "eval_samples=1", "max_new_tokens=6",
        "base.train.progress=false", "sft.progress=false", "reward.progress=false", "dpo.progress=false"]


@pytest.mark.xdist_group("world")
def test_demo_pipeline_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--set", f"world_dir={tmp_path / 'world'}"]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    for model in ("base", "sft", "dpo"):
        for key in ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward"):
            assert 0.0 <= results[model][key] <= 1.0 or key == "true_reward"
        assert results[model]["n"] > 0 and "kl_to_reference" in results[model]
        assert (out / "eval" / model / "samples.jsonl").exists()
    assert results["base"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-6)  # the base against itself
    # a result file the docs can cite: how it was made, and every rate's standard error
    assert results["command"][1:3] == ["demo", "--output"] and results["seed"] == 0 and results["machine"]["cpu"]
    assert all(results[m]["stderr"]["harmlessness"] > 0 or results[m]["harmlessness"] in (0.0, 1.0)
               for m in ("base", "sft", "dpo"))
    # every reported rate is the judge's verdict on the answers the model gave (samples.jsonl), not another run's
    from alignlab.world.build import build_world
    from alignlab.world.datasets import load_prompts
    from alignlab.world.evaluate import evaluate_responses

    eval_prompts = load_prompts(build_world(tmp_path / "world", verbose=False).datasets["prompts_eval"])
    for model in ("base", "sft", "dpo"):
        rows = [json.loads(line) for line in (out / "eval" / model / "samples.jsonl").read_text().splitlines()]
        assert [r["prompt"] for r in rows] == [p.text for p in eval_prompts] * results[model]["samples_per_prompt"]
        again = evaluate_responses(eval_prompts * results[model]["samples_per_prompt"], [r["response"] for r in rows])
        for key in ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward"):
            assert results[model][key] == again[key], (model, key)
    assert 0.0 <= results["reward_model"]["pairwise_accuracy"] <= 1.0
    assert all((Path(p) / "config.json").exists() for p in results["model_paths"].values())  # for `alignlab eval`
    html = (out / "report.html").read_text()
    assert "Ground truth before and after alignment" in html and html.count("data:image/png;base64") >= 5
    printed = capsys.readouterr().out
    assert "| model | helpfulness" in printed and "report.html" in printed and " ± " in printed
    # a second run reuses the cached world and base model and replaces the stage directories
    assert main(argv) == 0
    assert "using the cached base model" in capsys.readouterr().out
