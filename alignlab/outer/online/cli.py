"""``alignlab bench online --world``: every online method on the toy world, plus the over-optimisation plot.

    alignlab bench online --world [--methods ppo,grpo] [--sft-model PATH] [--output DIR] [--max-steps N]
                          [--overoptimisation] [--config F.yaml] [--set key=value ...]

It joins the ``bench`` command of :mod:`alignlab.outer.bench_cli` when that is registered first, and
creates ``bench`` otherwise. Handlers import the training code lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

FLAGS = {"output": "output", "sft_model": "sft_model", "world_dir": "world_dir", "max_steps": "max_steps",
         "seed": "seed"}


def _bench_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``alignlab bench`` (created when no other area registered ``bench``)."""
    bench = subparsers.choices.get("bench")
    if bench is None:
        bench = subparsers.add_parser("bench", help="compare methods on the toy world")
    for action in bench._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return bench.add_subparsers(dest="bench_command", required=True)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab bench online``."""
    online = _bench_commands(subparsers).add_parser(
        "online", help="train each online RL method from the same SFT model and compare ground-truth scores",
        description="Trains PPO, Safe PPO, GRPO, RLOO, REINFORCE, RAFT, RSO and SPIN on the toy world from the same "
        "SFT model; writes results.json/results.md (and combined.md with the offline table). See `--set` keys in "
        "alignlab.outer.online.bench.OnlineBenchConfig.")
    online.add_argument("--world", action="store_true", help="use the toy world (the only data source so far)")
    online.add_argument("--methods", help="comma-separated method names (default: all online methods)")
    online.add_argument("--sft-model", help="the SFT model to start from (default: the demo's cached one)")
    online.add_argument("--world-dir", help="a built world directory (default: built and cached)")
    online.add_argument("--output", help="output directory (default runs/bench-online)")
    online.add_argument("--max-steps", type=int, help="rollout steps per RL method")
    online.add_argument("--seed", type=int, help="random seed")
    online.add_argument("--overoptimisation", action="store_true",
                        help="also run PPO against a length-biased reward model and plot proxy/true reward vs KL")
    online.add_argument("--config", help="YAML file with OnlineBenchConfig keys")
    online.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    online.set_defaults(handler=_online)


def _online(args: argparse.Namespace) -> None:
    from alignlab.config import load_config
    from alignlab.errors import ConfigError
    from alignlab.outer.bench import markdown_table
    from alignlab.outer.online.bench import OnlineBenchConfig, bench_online

    if not args.world:
        raise ConfigError("alignlab bench online needs --world (the toy world is the only benchmark data so far)")
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    if args.overoptimisation:
        overrides.append("overoptimisation=true")
    config = load_config(OnlineBenchConfig, args.config, overrides + args.set)
    rows = bench_online(config)
    print(markdown_table(rows), end="")
    print(f"results.json and results.md in {config.output}")
