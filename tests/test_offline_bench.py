"""`alignlab bench methods --world`: one step per method on a tiny built world, every output written."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
from conftest import build_model

from alignlab.cli import parse_args
from alignlab.core.models import load_tokenizer
from alignlab.errors import ConfigError
from alignlab.experiments.bench import COLUMNS, BenchConfig, markdown_table
from alignlab.experiments.bench_cli import add_commands
from alignlab.world.build import build_world
from alignlab.world.datasets import DATASET_SIZES
from alignlab.world.judge import score

TINY = {**DATASET_SIZES["small"], "eval_per_family": 2, "sft_train": 16, "pairs_train": 16, "pairs_eval": 8,
        "ranked_train": 8, "kto_train": 16, "safety_train": 4, "prompts_train": 4, "corpus_transcripts": 300,
        "corpus_kb_repeats": 1}
METHODS = ["dpo", "discopop", "simpo", "rrhf", "pro", "stable-alignment", "alol", "kto", "cringe", "hindsight", "second-thoughts"]


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parse_args(parser, argv)
    args.handler(args)


@pytest.fixture
def world_and_model(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    tokenizer = load_tokenizer(str(paths.tokenizer))
    build_model(tmp_path / "sft", tokenizer, hidden=32, layers=1)
    return paths, tmp_path / "sft"


def test_bench_methods_writes_table_json_and_report(world_and_model, tmp_path, capsys):
    paths, sft = world_and_model
    out = tmp_path / "bench"
    run_cli(["bench", "methods", "--world", "--world-dir", str(paths.root), "--sft-model", str(sft), "--output",
             str(out), "--methods", ",".join(METHODS), "--max-steps", "2", "--set", "batch_size=4",
             "--set", "max_new_tokens=4", "--set", "eval_limit=7", "--set", "max_length=96",
             "--set", "overrides={kto: [desirable_weight=1.1]}"])
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert results["seed"] == 0 and "commit" in results and results["machine"]["cpu_count"]  # provenance
    assert [r["method"] for r in rows] == ["sft (start)", *METHODS]
    assert all(set(r["stderr"]) >= {"honesty", "harmlessness", "true_reward"} for r in rows)
    assert rows[0]["kl_to_sft"] == 0.0 and rows[0]["train_seconds"] == 0.0
    for row in rows:
        assert math.isfinite(row["true_reward"]) and math.isfinite(row["kl_to_sft"])
        assert all(c in row for c in COLUMNS)
    assert all(r["train_seconds"] > 0 for r in rows[1:])
    assert (out / "runs" / "kto" / "config.yaml").read_text().count("desirable_weight: 1.1") == 1
    assert "rrhf_weight: 1.0" in (out / "runs" / "rrhf" / "config.yaml").read_text()  # the bench's own setting
    assert "\nbeta: 1.0" in (out / "runs" / "dpo" / "config.yaml").read_text()  # the shared KL anchor
    assert "\nbeta: 3.0" in (out / "runs" / "discopop" / "config.yaml").read_text()  # its own setting wins
    assert "\nbeta: 1.0" in (out / "runs" / "kto" / "config.yaml").read_text()
    assert "\nbeta: null" in (out / "runs" / "simpo" / "config.yaml").read_text()  # reference-free: its own β
    hindsight = (out / "runs" / "hindsight" / "config.yaml").read_text()
    assert "max_steps: 20\n" in hindsight and "lr: 0.001\n" in hindsight  # PASSES × the shared steps, its own lr
    assert len((out / "runs" / "hindsight" / "metrics.jsonl").read_text().splitlines()) == 20
    assert "max_steps: 2\n" in (out / "runs" / "dpo" / "config.yaml").read_text()
    assert all(abs(r["gain_vs_sft"] - (r["true_reward"] - rows[0]["true_reward"])) < 1e-9 for r in rows)
    table = (out / "results.md").read_text()
    assert table == markdown_table(rows) and table.count("\n") == len(rows) + 2
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64") == 1 and all(f"<td>{m}</td>" in page for m in METHODS)
    assert "true_reward" in capsys.readouterr().out


def test_bench_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="--world"):
        run_cli(["bench", "methods", "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="no toy-world bench for \\['ppo'\\]"):
        BenchConfig(methods=["dpo", "ppo"])


def test_bench_trains_its_sft_model_on_flawed_demonstrations_once(tmp_path, monkeypatch):
    import alignlab.outer.sft as sft_module
    import alignlab.world.base_model as base_module
    from alignlab.core.readers import read_records
    from alignlab.experiments.bench import world_and_sft

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    build_world(tmp_path / "world", seed=0, verbose=False)
    trained = []

    def fake_train_sft(config):  # stands in for SFT training: record the data, mark the run finished
        trained.append(config)
        Path(config.output).mkdir(parents=True)
        (Path(config.output) / "results.json").write_text("{}")

    monkeypatch.setattr(sft_module, "train_sft", fake_train_sft)
    monkeypatch.setattr(base_module, "build_base_model", lambda paths: tmp_path / "base")
    config = BenchConfig(output=str(tmp_path / "bench"), world_dir=str(tmp_path / "world"), methods=[],
                         sft_flawed_fraction=0.5)
    paths, sft_path = world_and_sft(config)
    assert Path(sft_path).name == "sft-flawed-0.5" and len(trained) == 1
    rows = read_records(trained[0].data.path, "conversation")
    assert len(rows) == TINY["sft_train"] and trained[0].data.path != str(paths.datasets["sft_train"])
    flawed_share = sum(score(r.prompt[-1]["content"], r.completion).true_reward < 3.5 for r in rows) / len(rows)
    assert 0.2 < flawed_share < 0.8
    assert world_and_sft(config)[1] == sft_path and len(trained) == 1  # reused, not retrained
    _, perfect = world_and_sft(dataclasses.replace(config, sft_flawed_fraction=0.0))
    assert Path(perfect).name == "sft" and trained[1].data.path == str(paths.datasets["sft_train"])
    with pytest.raises(ValueError, match="sft_flawed_fraction"):
        BenchConfig(sft_flawed_fraction=2.0)
