"""``alignlab inner``: the inner-alignment experiments, one command each.

    alignlab inner list
    alignlab inner run goal_misgeneralisation [--seeds 5] [--output DIR] [--config F.yaml] [--set key=value ...]

Each experiment's options are the fields of its config dataclass (``--help`` lists them); the experiment
modules are imported only when one runs, so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

from alignlab.cli import add_config_command, parse_command_config

# name -> what it shows (the module alignlab.inner.experiments.<name> defines run(config) and its config class)
EXPERIMENTS = {
    "goal_misgeneralisation": "coin at the end in training, anywhere at test: how often agents go to the end",
    "side_channel": "the previous reward in the observation, altered at test, against the two controls",
    "unidentifiability": "three objectives explain training; test levels show which each agent learned",
    "cross_episodic": "sacrificing this episode's reward for the next one's: plain PPO vs population-based training",
    "deceptive_conditions": "behaviour with and without oversight as the three conditions are switched",
    "robust_reward": "a model-based agent's learned reward: the inputs that maximise its error, adversarial training",
    "relaxed_adversarial": "an adversary proposing regions (checked by interval bounds) vs concrete inputs",
    "zero_shot": "inverse RL on a language model's zero-shot play of a text corridor, against RL agents",
}
FLAGS = ("seeds", "seed", "output")


def config_class(module) -> type:
    return next(value for name, value in vars(module).items()
                if name.endswith("Config") and name != "ExperimentConfig" and isinstance(value, type)
                and value.__module__ == module.__name__)


def _run(args: argparse.Namespace) -> None:
    module = importlib.import_module(f"alignlab.inner.experiments.{args.experiment}")
    config = parse_command_config(config_class(module), args, flags=FLAGS)
    results = module.run(config)
    output = config.output or f"runs/inner/{args.experiment}"
    print(module.headline(results))
    print(f"results.json, figure.png and report.html in {output}")


def _list(args: argparse.Namespace) -> None:
    for name, what in EXPERIMENTS.items():
        print(f"{name:24s} {what}")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab inner list`` and ``alignlab inner run EXPERIMENT``."""
    inner = subparsers.add_parser("inner", help="inner-alignment experiments (gridworld agents)")
    commands = inner.add_subparsers(dest="inner_command", required=True)
    commands.add_parser("list", help="the experiments").set_defaults(handler=_list)
    run = commands.add_parser("run", help="run one experiment").add_subparsers(dest="experiment", required=True)
    for name, what in EXPERIMENTS.items():
        add_config_command(run, name, _run, help=what)
