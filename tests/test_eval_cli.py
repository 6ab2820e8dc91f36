"""Smoke runs of `alignlab eval` and `alignlab judge` through the evaluate package's sub-commands."""

import argparse
import json
import re

import pytest
import torch
from conftest import SHARED_DATA, ScriptedLM

from alignlab.cli import parse_args
from alignlab.errors import ConfigError
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
    args = parse_args(parser, argv)
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
    with pytest.raises(ConfigError, match="--data"):
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
            "--set",
            "judge_max_tokens=8",
            "--output",
            str(tmp_path),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"command", "commit", "machine"} <= set(results) and results["config"]["mode"] == "single"  # citable
    judged = results["single"]["a"]
    # a random judge rarely writes a well-formed [[n]]: whatever it wrote is counted, nothing is guessed
    lines = (tmp_path / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 2 and judged["parse_failures"] == sum(json.loads(x)["score"] is None for x in lines)
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="at least two models"):
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


def _shown(text, position):
    """The answer shown in position A or B of a pairwise prompt."""
    return re.search(rf"\[Assistant {position}\]\n.*### Assistant:\n(.*?)\n\[End of Assistant {position}\]",
                     text, re.S).group(1)


def test_pairwise_judge_command_swaps_positions_and_ranks(tmp_path, monkeypatch):
    # Three models whose answers differ only in length; judges are scripted, so every verdict is known.
    lms = {
        "runs/terse": ScriptedLM(lambda q, seed: "ok"),
        "runs/medium": ScriptedLM(lambda q, seed: "a fair answer"),
        "runs/verbose": ScriptedLM(lambda q, seed: "a long and careful answer"),
        "judge/first": ScriptedLM(lambda t, seed: "[[A]]"),  # always prefers whatever is shown first
        "judge/longer": ScriptedLM(lambda t, seed: "[[A]]" if len(_shown(t, "A")) > len(_shown(t, "B")) else "[[B]]"),
    }
    monkeypatch.setattr("alignlab.evaluate.lm.load_lm", lambda spec, **kw: lms[spec])
    models = "terse=runs/terse,medium=runs/medium,verbose=runs/verbose"
    common = ["judge", "--models", models, "--questions", MT_BENCH, "--mode", "pairwise", "--limit", "3"]

    run([*common, "--judge", "judge/first", "--output", str(tmp_path / "first")])
    pairs = json.loads((tmp_path / "first" / "results.json").read_text())["pairwise"]["pairs"]
    # A verdict that follows the position flips when the order is swapped: every game is a tie.
    assert set(pairs) == {"medium vs terse", "medium vs verbose", "terse vs verbose"}
    assert all({k: p[k] for k in ("win", "tie", "loss", "win_rate")} == {"win": 0, "tie": 3, "loss": 0, "win_rate": 0.5}
               for p in pairs.values())
    # all ties: every bootstrap resample has win rate 0.5, and so has the length-controlled one (theta = 0)
    assert all(p["interval_95"] == [0.5, 0.5] for p in pairs.values())
    assert all(abs(p["length_controlled"]["lc_win_rate"] - 0.5) < 1e-9 for p in pairs.values())

    run([*common, "--judge", "judge/longer", "--output", str(tmp_path / "longer")])
    results = json.loads((tmp_path / "longer" / "results.json").read_text())["pairwise"]
    assert results["pairs"]["medium vs terse"]["win_rate"] == 1.0
    assert results["pairs"]["medium vs verbose"]["win_rate"] == 0.0
    assert results["pairs"]["terse vs verbose"]["win_rate"] == 0.0
    assert list(results["bradley_terry"]) == ["verbose", "medium", "terse"] and results["parse_failures"] == 0
    answers = [json.loads(line) for line in (tmp_path / "longer" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 9 and {a["model"] for a in answers} == {"terse", "medium", "verbose"}


def test_config_file_and_set_reach_the_command(model_dir, tmp_path):
    # every key of EvalConfig can come from --config or --set; --set wins over the file and the flags
    config = tmp_path / "eval.yaml"
    config.write_text(f"model: {model_dir}\ntasks: [crows_pairs]\noutput: {tmp_path / 'a'}\nlimit: 5\n")
    run(["eval", "--config", str(config), "--limit", "4", "--set", "limit=2"])
    assert json.loads((tmp_path / "a" / "results.json").read_text())["tasks"]["crows_pairs"]["n"] == 2
    with pytest.raises(ConfigError, match="needs --model, --tasks"):
        run(["eval", "--output", str(tmp_path)])


def test_eval_runs_harness_and_bbq_tasks(model_dir, tmp_path, capsys):
    # lm_eval:<task> from the command line on the shared BIG-bench file, next to the built-in BBQ
    run(["eval", "--model", model_dir, "--tasks", "lm_eval:bigbench_moral_permissibility_multiple_choice,bbq",
         "--output", str(tmp_path / "out"), "--limit", "3"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    harness = results["tasks"]["lm_eval:bigbench_moral_permissibility_multiple_choice"]
    assert harness["n"] == 3 and 0.0 <= harness["metrics"]["acc"] <= 1.0
    assert results["tasks"]["bbq"]["n"] == 18 and set(results["tasks"]["bbq"]["groups"]) == {
        "Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation"}
    assert results["commit"] and results["command"]  # the provenance header
