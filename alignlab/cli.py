"""The ``alignlab`` command: a thin layer that parses a config and calls the Python API.

    alignlab train sft --model PATH --data PATH --output DIR [--max-steps N] [--config F.yaml] [--set k=v ...]
    alignlab train sft --help          # every config key with its documentation
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from alignlab.errors import AlignlabError

# Areas that add their own sub-commands (each module defines add_commands(subparsers)).
COMMAND_MODULES = ["alignlab.world.cli", "alignlab.evaluate.cli", "alignlab.outer.bench_cli", "alignlab.outer.online.cli"]

# Common flags of `alignlab train METHOD`: flag -> (config key, help).
TRAIN_FLAGS = {"model": ("model.name_or_path", "model to start from: a local directory or a hub name"),
               "data": ("data.path", "training data: a file, a directory or a datasets hub name"),
               "output": ("output", "run directory"),
               "max_steps": ("train.max_steps", "optimiser steps"),
               "seed": ("train.seed", "random seed"),
               "resume": ("train.resume", "continue from the newest checkpoint")}


def train_parser(method: str) -> argparse.ArgumentParser:
    from alignlab.config import config_parser
    from alignlab.registry import get_method

    config_cls, _ = get_method(method)
    return config_parser(config_cls, f"alignlab train {method}", flags=TRAIN_FLAGS)


def run_train(method: str, argv: Sequence[str]) -> None:
    from alignlab.config import parse_config
    from alignlab.registry import METHOD_DEFAULTS, get_method

    config_cls, fn = get_method(method)
    config = parse_config(config_cls, train_parser(method), list(argv), base=METHOD_DEFAULTS.get(method))
    result = fn(config)
    print(f"done: {result.steps} steps; model, config.yaml and metrics.jsonl in {result.output_dir}")
    for key, value in result.eval.items():
        print(f"  {key} = {value:.4f}")


def build_parser() -> argparse.ArgumentParser:
    from alignlab.registry import TRAIN_METHODS

    parser = argparse.ArgumentParser(prog="alignlab", description="LLM alignment, executable.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    train = subparsers.add_parser("train", help="train a model with an alignment method",
                                  description=f"methods: {', '.join(TRAIN_METHODS)}")
    train.add_argument("method", help=f"one of: {', '.join(TRAIN_METHODS)}")
    train.add_argument("args", nargs=argparse.REMAINDER, help="method options (see alignlab train METHOD --help)")
    train.set_defaults(handler=lambda a: run_train(a.method, a.args))
    demo = subparsers.add_parser("demo", help="the whole pipeline on the toy world (world → SFT → RM → DPO → eval)")
    demo.add_argument("--output", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--seed", type=int, default=None, help="world and training seed")
    demo.add_argument("--config", help="YAML file with DemoConfig keys")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    demo.set_defaults(handler=lambda a: importlib.import_module("alignlab.demo").run_demo_command(a))
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # an area not built yet
                continue
            raise
        module.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.handler(args)
    except AlignlabError as err:
        print(f"alignlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
