"""``alignlab bench online --world``: every online method on the toy world, plus the over-optimisation plot.

    alignlab bench online --world [--methods ppo,grpo] [--sft-model PATH] [--output DIR] [--max-steps N]
                          [--overoptimisation] [--config F.yaml] [--set key=value ...]

It shares the ``bench`` command and its flags with :mod:`alignlab.experiments.bench_cli`. Handlers import the
training code lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

from alignlab.experiments.bench_cli import add_bench_arguments, bench_commands, bench_overrides


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab bench online``."""
    online = bench_commands(subparsers).add_parser(
        "online", help="train each online RL method from the same SFT model and compare ground-truth scores",
        description="Trains PPO, Safe PPO, GRPO, RLOO, REINFORCE, RAFT, RSO and SPIN on the toy world from the same "
        "SFT model; writes results.json/results.md (and combined.md with the offline table). See `--set` keys in "
        "alignlab.experiments.online_bench.OnlineBenchConfig.")
    add_bench_arguments(online, family="online", output="runs/bench-online", steps="rollout steps per RL method",
                        config_name="OnlineBenchConfig")
    online.add_argument("--overoptimisation", action="store_true",
                        help="also run PPO against a length-biased reward model and plot proxy/true reward vs KL")
    online.set_defaults(handler=_online)


def _online(args: argparse.Namespace) -> None:
    from alignlab.config import load_config
    from alignlab.experiments.bench import markdown_table
    from alignlab.experiments.online_bench import OnlineBenchConfig, bench_online

    overrides = bench_overrides(args) + (["overoptimisation=true"] if args.overoptimisation else [])
    config = load_config(OnlineBenchConfig, args.config, overrides + args.set)
    rows = bench_online(config)
    print(markdown_table(rows), end="")
    print(f"results.json and results.md in {config.output}")
