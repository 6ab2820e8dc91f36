"""`alignlab bench sensei --world` and `alignlab bench uddia --world` end to end on a tiny world."""

from __future__ import annotations

import json

import pytest
from conftest import build_model


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    from test_offline_bench import TINY

    from alignlab.core.models import load_tokenizer
    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    build_model(tmp_path / "lm", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1)
    return paths, tmp_path / "lm"


@pytest.mark.xdist_group("world")
def test_bench_sensei_compares_every_seed_with_the_sft_model(tiny_world, tmp_path, capsys) -> None:
    from alignlab.cli import main

    paths, lm = tiny_world
    argv = ["bench", "sensei", "--world", "--world-dir", str(paths.root), "--sft-model", str(lm), "--output",
            str(tmp_path / "bench"), "--set", "seeds=[0,1]", "--set", "train_prompts=4", "--set", "samples_per_prompt=4",
            "--set", "max_new_tokens=4", "--set", "eval_samples=1", "--set", "epochs=1.0"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert record["seed"] == [0, 1] and [r["seed"] for r in record["results"]["runs"]] == [0, 1]
    summary = record["results"]["summary"]
    assert list(summary) == ["SFT model", "SFT model, top 10 only", "SENSEI (strength 0.5)", "SENSEI (strength 1)"]
    assert summary["SFT model"]["kl_to_sft"]["mean"] == pytest.approx(0.0, abs=1e-4)  # the SFT model against itself
    assert summary["SFT model, top 10 only"]["kl_to_sft"]["mean"] > 1e-3  # truncation alone moves the model
    assert summary["SENSEI (strength 1)"]["train_seconds"]["mean"] > 0
    for run in record["results"]["runs"]:  # the gain is paired per seed against the truncation-only control
        rows = run["rows"]
        assert rows["SENSEI (strength 1)"]["true_reward_gain"] == pytest.approx(
            rows["SENSEI (strength 1)"]["true_reward"] - rows["SFT model, top 10 only"]["true_reward"])


@pytest.mark.xdist_group("world")
def test_bench_uddia_decodes_plainly_and_adaptively(tiny_world, tmp_path, capsys) -> None:
    from alignlab.cli import main

    paths, lm = tiny_world
    argv = ["bench", "uddia", "--world", "--world-dir", str(paths.root), "--output", str(tmp_path / "bench"),
            "--set", f"base_model={lm}", "--set", "seeds=[0]", "--set", "max_new_tokens=6", "--set", "eval_samples=1",
            "--set", "uddia.threshold=0.0", "--set", "uddia.segment=3", "--set", "uddia.steps=1"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert list(record["summary"]) == ["plain decoding", "UDDIA", "UDDIA at lr 0 (redo without tuning)"]
    assert record["probe_held_out_answers"] == 2 * 8  # both answers of every held-out pair
    assert record["summary"]["UDDIA"]["interventions"]["mean"] > 0  # threshold 0: every answer is optimised
    assert record["summary"]["plain decoding"]["interventions"]["mean"] is None
    # threshold 0 flags the control's segments too: it redoes them without moving the biases
    assert record["summary"]["UDDIA at lr 0 (redo without tuning)"]["interventions"]["mean"] > 0
