"""Smoke runs of `alignlab eval` and `alignlab judge` through the evaluate package's sub-commands."""

import argparse
import json

import pytest
import torch
from conftest import SHARED_DATA

from alignlab.errors import EvalError
from alignlab.evaluate.cli import add_commands
from alignlab.evaluate.fixtures import build_tiny_lm

MT_BENCH = str(SHARED_DATA / "mt_bench_questions.jsonl")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    texts = ["The cat sat on the mat.", "Rating: [[5]] for this answer.", "Hello there."] * 20
    return build_tiny_lm(tmp_path_factory.mktemp("tiny"), texts, vocab_size=300, hidden_size=32, layers=1)


def run(argv):
    parser = argparse.ArgumentParser(prog="alignlab")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.handler(args)


def test_eval_command(model_dir, tmp_path, capsys):
    run(
        [
            "eval",
            "--model",
            model_dir,
            "--tasks",
            "crows_pairs,advbench_refusal",
            "--output",
            str(tmp_path),
            "--limit",
            "3",
            "--batch-size",
            "4",
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tasks"]["crows_pairs"]["n"] == 3 and results["tasks"]["advbench_refusal"]["n"] == 3
    assert "crows_pairs (n=3)" in capsys.readouterr().out
    with pytest.raises(EvalError, match="--data"):
        run(
            ["eval", "--model", model_dir, "--tasks", "crows_pairs", "--output", str(tmp_path), "--data", "x"]
        )


def test_judge_command(model_dir, tmp_path):
    run(
        [
            "judge",
            "--judge",
            model_dir,
            "--models",
            f"a={model_dir}",
            "--questions",
            MT_BENCH,
            "--limit",
            "2",
            "--max-tokens",
            "4",
            "--output",
            str(tmp_path),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    judged = results["single"]["a"]
    # a random judge rarely writes a well-formed [[n]]: whatever it wrote is counted, nothing is guessed
    lines = (tmp_path / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 2 and judged["parse_failures"] == sum(json.loads(x)["score"] is None for x in lines)
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == 2
    with pytest.raises(EvalError, match="at least two models"):
        run(
            [
                "judge",
                "--judge",
                model_dir,
                "--models",
                f"a={model_dir}",
                "--questions",
                MT_BENCH,
                "--mode",
                "pairwise",
                "--limit",
                "1",
                "--max-tokens",
                "2",
                "--output",
                str(tmp_path),
            ]
        )
