"""RLSF: synthetic preferences by construction, their measured label accuracy, and both reward models."""

from __future__ import annotations

import json

import pytest
from conftest import build_model

from alignlab.cli import main
from alignlab.core.models import load_tokenizer
from alignlab.experiments.rlsf_bench import synthetic_pairs


def test_synthetic_pairs_put_the_strong_answer_first_and_drop_ties() -> None:
    prompts = [[{"role": "user", "content": q}] for q in ("a", "b", "c")]
    rows = synthetic_pairs(prompts, ["good", "same", "fine"], ["bad", "same ", "poor"])
    assert [(r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("a", "good", "bad"), ("c", "fine", "poor")]


@pytest.mark.xdist_group("world")
def test_rlsf_bench_trains_both_reward_models_per_seed(tmp_path, monkeypatch, capsys) -> None:
    from test_offline_bench import TINY

    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    tok = load_tokenizer(str(paths.tokenizer))
    build_model(tmp_path / "strong", tok, hidden=32, layers=1, seed=1)
    build_model(tmp_path / "weak", tok, hidden=32, layers=1, seed=2)
    argv = ["bench", "rlsf", "--world", "--world-dir", str(paths.root), "--output", str(tmp_path / "bench"),
            "--set", f"strong_model={tmp_path / 'strong'}", "--set", f"weak_model={tmp_path / 'weak'}",
            "--set", "pairs=4", "--set", "seeds=[0,1]", "--set", "reward_steps=2", "--set", "batch_size=2",
            "--set", "max_new_tokens=6"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())
    runs = record["results"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
        synthetic = (tmp_path / "bench" / f"seed{run['seed']}" / "synthetic_pairs.jsonl").read_text().splitlines()
        annotated = (tmp_path / "bench" / f"seed{run['seed']}" / "annotated_pairs.jsonl").read_text().splitlines()
        assert len(synthetic) == len(annotated) == run["pairs"]  # equal data for both reward models
        assert 0.0 <= run["synthetic_label_accuracy"] <= 1.0
        assert 0.0 <= run["synthetic_rm_accuracy"] <= 1.0 and 0.0 <= run["annotated_rm_accuracy"] <= 1.0
    summary = record["results"]["summary"]["synthetic_label_accuracy"]
    assert summary["mean"] == pytest.approx(sum(r["synthetic_label_accuracy"] for r in runs) / 2)
