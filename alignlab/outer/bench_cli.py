"""``alignlab bench methods --world``: every offline method on the toy world, one table.

    alignlab bench methods --world [--methods dpo,kto,rrhf] [--sft-model PATH] [--output DIR]
                           [--max-steps N] [--config F.yaml] [--set key=value ...]

Handlers import the training code lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

# Flags of `alignlab bench methods` and the BenchConfig keys they set.
FLAGS = {"output": "output", "sft_model": "sft_model", "world_dir": "world_dir", "max_steps": "max_steps",
         "seed": "seed"}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab bench methods``."""
    bench = subparsers.add_parser("bench", help="compare methods on the toy world")
    commands = bench.add_subparsers(dest="bench_command", required=True)
    methods = commands.add_parser(
        "methods", help="train each offline method from the same SFT model and compare ground-truth scores",
        description="Trains every offline preference method on the same toy-world data from the same SFT model with "
        "the same budget; writes results.json, results.md and report.html (see `--set` keys in "
        "alignlab.outer.bench.BenchConfig).")
    methods.add_argument("--world", action="store_true", help="use the toy world (the only data source so far)")
    methods.add_argument("--methods", help="comma-separated method names (default: all offline methods)")
    methods.add_argument("--sft-model", help="the SFT model to start from (default: the demo's cached one)")
    methods.add_argument("--world-dir", help="a built world directory (default: built and cached)")
    methods.add_argument("--output", help="output directory (default runs/bench-methods)")
    methods.add_argument("--max-steps", type=int, help="optimiser steps per method")
    methods.add_argument("--seed", type=int, help="random seed")
    methods.add_argument("--config", help="YAML file with BenchConfig keys")
    methods.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    methods.set_defaults(handler=_methods)


def _methods(args: argparse.Namespace) -> None:
    from alignlab.config import load_config
    from alignlab.errors import ConfigError
    from alignlab.outer.bench import COLUMNS, BenchConfig, bench_methods, markdown_table

    if not args.world:
        raise ConfigError("alignlab bench methods needs --world (the toy world is the only benchmark data so far)")
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    config = load_config(BenchConfig, args.config, overrides + args.set)
    rows = bench_methods(config)
    print(markdown_table(rows), end="")
    print(f"columns: {', '.join(COLUMNS)}; results.json, results.md and report.html in {config.output}")
