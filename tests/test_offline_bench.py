"""`alignlab bench methods --world`: one step per method on a tiny built world, every output written."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from conftest import build_model

from alignlab.core.models import load_tokenizer
from alignlab.errors import ConfigError
from alignlab.outer.bench import COLUMNS, BenchConfig, markdown_table
from alignlab.outer.bench_cli import add_commands
from alignlab.world.build import build_world
from alignlab.world.datasets import DATASET_SIZES

TINY = {**DATASET_SIZES["small"], "eval_per_family": 2, "sft_train": 16, "pairs_train": 16, "pairs_eval": 8,
        "ranked_train": 8, "kto_train": 16, "safety_train": 4, "prompts_train": 4, "corpus_transcripts": 300,
        "corpus_kb_repeats": 1}
METHODS = ["dpo", "simpo", "rrhf", "pro", "stable-alignment", "kto", "cringe", "hindsight"]


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
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
    assert [r["method"] for r in rows] == ["sft (start)", *METHODS]
    assert rows[0]["kl_to_sft"] == 0.0 and rows[0]["train_seconds"] == 0.0
    for row in rows:
        assert math.isfinite(row["true_reward"]) and math.isfinite(row["kl_to_sft"])
        assert all(c in row for c in COLUMNS)
    assert all(r["train_seconds"] > 0 for r in rows[1:])
    assert (out / "runs" / "kto" / "config.yaml").read_text().count("desirable_weight: 1.1") == 1
    assert "rrhf_weight: 1.0" in (out / "runs" / "rrhf" / "config.yaml").read_text()  # the bench's own setting
    assert "\nbeta: 1.0" in (out / "runs" / "dpo" / "config.yaml").read_text()  # the shared KL anchor
    assert "\nbeta: 1.0" in (out / "runs" / "kto" / "config.yaml").read_text()
    assert "\nbeta: null" in (out / "runs" / "simpo" / "config.yaml").read_text()  # reference-free: its own β
    assert all(abs(r["gain_vs_sft"] - (r["true_reward"] - rows[0]["true_reward"])) < 1e-9 for r in rows)
    table = (out / "results.md").read_text()
    assert table == markdown_table(rows) and table.count("\n") == len(rows) + 2
    page = (out / "report.html").read_text()
    assert "<svg" in page and all(m in page for m in METHODS)
    assert "true_reward" in capsys.readouterr().out


def test_bench_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="--world"):
        run_cli(["bench", "methods", "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="no toy-world bench for \\['ppo'\\]"):
        BenchConfig(methods=["dpo", "ppo"])
