"""``alignlab bench methods --world``: every offline method on the toy world, one table.

    alignlab bench methods --world [--methods dpo,kto,rrhf] [--sft-model PATH] [--output DIR]
                           [--max-steps N] [--config F.yaml] [--set key=value ...]

The helpers here (``bench_commands``, ``add_bench_arguments``, ``bench_overrides``) are shared with
``alignlab bench online`` (:mod:`alignlab.experiments.online_cli`). Handlers import the training code lazily so
``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

# Flags every `alignlab bench` command has, and the config keys they set.
FLAGS = {"output": "output", "sft_model": "sft_model", "world_dir": "world_dir", "max_steps": "max_steps",
         "seed": "seed"}


def bench_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``alignlab bench``, created by whichever area registers first."""
    bench = subparsers.choices.get("bench")
    if bench is None:
        bench = subparsers.add_parser("bench", help="compare methods on the toy world")
    for action in bench._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return bench.add_subparsers(dest="bench_command", required=True)


def add_bench_arguments(parser: argparse.ArgumentParser, *, family: str, output: str, steps: str,
                        config_name: str) -> None:
    """The flags every ``alignlab bench`` command shares."""
    parser.add_argument("--world", action="store_true", help="use the toy world (the only data source so far)")
    parser.add_argument("--methods", help=f"comma-separated method names (default: all {family} methods)")
    parser.add_argument("--sft-model", help="the SFT model to start from (default: the demo's cached one)")
    parser.add_argument("--world-dir", help="a built world directory (default: built and cached)")
    parser.add_argument("--output", help=f"output directory (default {output})")
    parser.add_argument("--max-steps", type=int, help=steps)
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--config", help=f"YAML file with {config_name} keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")


def bench_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides from the shared flags (``--set`` last, so it wins); the world is required."""
    from alignlab.errors import ConfigError

    if not args.world:
        raise ConfigError(f"alignlab bench {args.bench_command} needs --world (the toy world is the only benchmark "
                          "data so far)")
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    return overrides


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab bench methods``."""
    methods = bench_commands(subparsers).add_parser(
        "methods", help="train each offline method from the same SFT model and compare ground-truth scores",
        description="Trains every offline preference method on the same toy-world data from the same SFT model with "
        "the same budget; writes results.json, results.md and report.html (see `--set` keys in "
        "alignlab.experiments.bench.BenchConfig).")
    add_bench_arguments(methods, family="offline", output="runs/bench-methods", steps="optimiser steps per method",
                        config_name="BenchConfig")
    methods.set_defaults(handler=_methods)


def _methods(args: argparse.Namespace) -> None:
    from alignlab.config import load_config
    from alignlab.experiments.bench import COLUMNS, BenchConfig, bench_methods, markdown_table

    config = load_config(BenchConfig, args.config, bench_overrides(args) + args.set)
    rows = bench_methods(config)
    print(markdown_table(rows), end="")
    print(f"columns: {', '.join(COLUMNS)}; results.json, results.md and report.html in {config.output}")
