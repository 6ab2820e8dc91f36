"""``alignlab eval``, ``alignlab judge`` and ``alignlab serve``: thin layers over the Python API.

    alignlab eval --model runs/sft --tasks crows_pairs,advbench_refusal --output runs/sft/eval --limit 100
    alignlab judge --judge http://127.0.0.1:8000/v1#judge --models a=runs/a,b=runs/b --output runs/judge
    alignlab serve --model runs/sft --port 8000

Each command's options are the fields of its config (``EvalConfig``, ``JudgeConfig``, ``ServeConfig``, beside
the function they drive); ``--help`` lists them all, ``--config`` and ``--set key=value`` set any of them.
Heavy modules are imported inside the handlers so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignlab.cli import add_config_command, parse_command_config

# The config keys each command has a flag for (help: the key's docstring); "flag=key" where the names differ.
EVAL_FLAGS = ("model", "output", "limit", "batch_size", "judge")
JUDGE_FLAGS = ("questions", "mode", "turn", "limit", "max_tokens", "output")
SERVE_FLAGS = ("model", "port", "host", "name", "max_tokens_cap", "dtype", "api_key")


def run_eval(args: argparse.Namespace) -> None:
    from alignlab.evaluate.run import EvalConfig, evaluate

    config = parse_command_config(EvalConfig, args, flags=EVAL_FLAGS, lists=["tasks"], mappings=["data"])
    results = evaluate(config)
    for name, res in results["tasks"].items():
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res["metrics"].items())
        print(f"{name} (n={res['n']}): {shown}")
    print(f"results in {Path(config.output) / 'results.json'}")


def run_judge(args: argparse.Namespace) -> None:
    from alignlab.evaluate import judge as J

    config = parse_command_config(J.JudgeConfig, args, flags=JUDGE_FLAGS, lists=["judge=judges"], mappings=["models"])
    results = J.run_judge(config)
    print(json.dumps({k: v for k, v in results.items() if k in ("single", "pairwise", "skills")}, indent=2))


def run_judge_calibration(args: argparse.Namespace) -> None:
    from alignlab.evaluate.judge_calibration import JudgeCalibrationConfig, run_judge_calibration

    config = parse_command_config(JudgeCalibrationConfig, args, flags=("limit", "mode", "output"),
                                  mappings=["judges"])
    report = run_judge_calibration(config)
    for name, row in {**report["judges"], **report["committees"]}.items():
        agreement = row["agreement"]
        print(f"{name}: agreement {agreement['rate']} (n={agreement['n']}), picks longer "
              f"{row['picks_longer']['rate']}, parse failures {row.get('parse_failures', 0)}")
    print(f"results in {Path(config.output) / 'results.json'}")


def run_toxicity_train(args: argparse.Namespace) -> None:
    from alignlab.evaluate.toxicity import TrainClassifierConfig, run_train

    config = parse_command_config(TrainClassifierConfig, args, flags=("output", "data", "epochs", "seed"))
    print(json.dumps(run_train(config)))


def run_toxicity_eval(args: argparse.Namespace) -> None:
    from alignlab.evaluate.toxicity import ClassifierEvalConfig, run_classifier_eval

    config = parse_command_config(ClassifierEvalConfig, args, flags=("classifier", "output", "data", "threshold"))
    print(json.dumps(run_classifier_eval(config)["overall"]))


def run_serve(args: argparse.Namespace) -> None:
    from alignlab.evaluate.serve import ServeConfig, serve

    serve(parse_command_config(ServeConfig, args, flags=SERVE_FLAGS))


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval``, ``judge`` and ``serve`` on the ``alignlab`` command."""
    add_config_command(subparsers, "eval", run_eval, help="run evaluation tasks on a model")
    add_config_command(subparsers, "judge", run_judge, help="LLM-as-judge on MT-bench-style questions")
    add_config_command(subparsers, "judge-calibration", run_judge_calibration,
                       help="measure judges against the toy world's true reward (agreement, position and length bias)")
    add_config_command(subparsers, "toxicity-train", run_toxicity_train,
                       help="train a toxicity / hate-speech classifier (HF sequence classification)")
    add_config_command(subparsers, "toxicity-eval", run_toxicity_eval,
                       help="precision, recall and F1 of a toxicity classifier per target group")
    add_config_command(subparsers, "serve", run_serve,
                       help="OpenAI-compatible server over a local model (loopback only)")
