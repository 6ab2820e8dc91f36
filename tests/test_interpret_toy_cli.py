"""``alignlab interpret toy ...`` and ``alignlab interpret sae``: each command runs tiny settings end to end and writes
results.json (with provenance) and report.html; a directory of foreign files is refused."""

from __future__ import annotations

import argparse
import json

import pytest

from alignlab.cli import parse_args
from alignlab.errors import ConfigError
from alignlab.interpret.toy.cli import add_commands


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="alignlab interpret")
    add_commands(parser.add_subparsers(dest="interpret_command", required=True))
    args = parse_args(parser, argv)
    args.handler(args)


def read(output) -> dict:
    assert (output / "report.html").read_text().count("<img") >= 1
    record = json.loads((output / "results.json").read_text())
    assert record["seeds"] == [0, 1] and record["commit"] is not None
    # the run's cost, for the docs' run-time table: CPU seconds of this process (it did work) beside wall seconds
    assert record["results"]["cpu_seconds"] > 0 and record["results"]["wall_seconds"] > 0
    return record["results"]


def test_toy_induction_command(tmp_path):
    out = tmp_path / "ind"
    run(["toy", "induction", "--output", str(out), "--seeds", "2", "--set", "progress=false",
         "--set", "train.steps=20", "--set", "train.eval_every=10", "--set", "train.eval_batch=8",
         "--set", "train.model.d_model=16", "--set", "train.model.n_heads=2", "--set", "train.model.n_ctx=12"])
    results = read(out)
    run2 = results["seeds"]["1"]["layers"]["2"]
    assert [row["step"] for row in run2["history"]] == [0, 10, 20]
    assert len(run2["circuit"]["scores"]["k"]) == 2 and "1" in results["seeds"]["0"]["layers"]
    assert "2-layer: final ICL score" in results["summary"]["table"]


def test_toy_superposition_command(tmp_path):
    out = tmp_path / "sup"
    run(["toy", "superposition", "--output", str(out), "--seeds", "2", "--set", "progress=false",
         "--set", "toy.n_features=4", "--set", "toy.n_hidden=2", "--set", "toy.steps=20",
         "--set", "toy.sparsities=[0.0,0.9]", "--set", "toy.importance_decays=[0.9]",
         "--set", "toy.phase_importances=[0.5,2.0]", "--set", "toy.phase_densities=[1.0,0.1]"])
    results = read(out)
    assert len(results["seeds"]["0"]["sweep"]["cells"]) == 4 and len(results["seeds"]["0"]["phase"]["cells"]) == 8
    assert set(results["summary"]["trend"]) == {"linear, decay 0.9", "relu, decay 0.9"}


def test_sae_command_on_a_tiny_model(tmp_path, tiny_model_dir):
    out = tmp_path / "sae"
    run(["sae", "--output", str(out), "--seeds", "2", "--set", "progress=false", "--set", f"sae.model={tiny_model_dir}",
         "--set", "sae.hook=blocks.1.hook_resid_post", "--set", "sae.steps=30", "--set", "sae.batch_size=64",
         "--set", "sae.expansion=2", "--set", "sae.k=4", "--set", "sae.resample_every=10",
         "--set", "sae.train_transcripts=30", "--set", "sae.eval_transcripts=20"])
    results = read(out)
    assert set(results["architectures"]) == {"standard", "topk"}
    topk = results["architectures"]["topk"]["0"]
    assert topk["l0"] <= 4 and topk["d_sae"] == 64 and (out / "topk-seed0" / "sae" / "cfg.json").exists()
    assert set(results["summary"]["standard"]) >= {"l0", "explained_variance", "ce_loss_score", "dead_fraction"}


def test_foreign_output_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="alignlab did not write"):
        run(["toy", "superposition", "--output", str(tmp_path), "--seeds", "1"])
