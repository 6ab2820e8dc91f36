"""``alignlab oversee consistency|self-consistency``: scalable-oversight protocols on the toy world, over any
model the LM interface loads (a model directory, a run directory, or a server URL such as
``http://127.0.0.1:8000/v1`` from ``alignlab serve``).

    alignlab oversee consistency --model runs/demo/sft --world --output runs/consistency
    alignlab oversee self-consistency --model runs/demo/sft --world --output runs/self-consistency

Each writes ``results.json`` (with command, commit, seed and machine) into ``--output``; nothing is written
before the model has loaded. The protocols themselves are :mod:`alignlab.oversight.consistency` and
:mod:`alignlab.oversight.self_consistency`.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field

from alignlab.cli import add_config_command, parse_command_config
from alignlab.errors import ConfigError


@dataclass
class OverseeConfig:
    """A model to oversee on the toy world's held-out prompts."""

    model: str = ""
    """model directory, alignlab run directory, or server URL (http[s][+chat|+completions]://host:port/v1[#model])"""
    world: bool = False
    """run on the toy world's held-out prompts (required: the world knows the truths)"""
    world_dir: str | None = None
    """a built world (default: the user cache)"""
    output: str = "runs/oversee"
    """directory for results.json"""
    max_tokens: int = 48
    """tokens per answer"""
    seed: int = 0
    """sampling seed"""


@dataclass
class ConsistencyConfig(OverseeConfig):
    """Consistency checks (commutativity of arithmetic, facts asked two ways): flags, precision and recall."""

    output: str = "runs/consistency"
    temperature: float = 0.0
    """sampling temperature of the answers (0: greedy, so a flag is the model's, not the sampler's)"""


@dataclass
class SelfConsistencyConfig(OverseeConfig):
    """Self-consistency: accuracy of the majority answer against the number of sampled answers."""

    output: str = "runs/self-consistency"
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 9, 15])
    """numbers of sampled answers the majority is taken over"""
    temperature: float = 1.0
    """sampling temperature"""
    families: list[str] = field(default_factory=lambda: ["arithmetic", "facts"])
    """world prompt families to ask"""


def _prepare(config: OverseeConfig):
    from pathlib import Path

    from alignlab.core.rundir import check_results_dir
    from alignlab.evaluate.lm import load_lm
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World

    if not config.world:
        raise ConfigError("alignlab oversee needs --world (the toy world is where the truths are known)")
    if not config.model:
        raise ConfigError("no model to oversee (use --model PATH_OR_URL)")
    check_results_dir(Path(config.output))
    lm = load_lm(config.model)
    paths = build_world(config.world_dir, verbose=False)
    return lm, World(paths.seed, paths.size)


def run_consistency(config: ConsistencyConfig) -> dict:
    """The world's consistency checks on ``config.model``; writes and returns the results."""
    from pathlib import Path

    from alignlab.core.provenance import write_result
    from alignlab.oversight.consistency import run_checks, world_answer_parser, world_pairs

    lm, world = _prepare(config)
    result = run_checks(lm, world_pairs(world), world_answer_parser(world), max_tokens=config.max_tokens,
                        temperature=config.temperature, seed=config.seed)
    write_result(Path(config.output) / "results.json", result, seed=config.seed, config=config)
    return result


def run_self_consistency(config: SelfConsistencyConfig) -> dict:
    """Self-consistency on the world's held-out prompts of ``config.families``; writes and returns the results."""
    from pathlib import Path

    from alignlab.core.provenance import write_result
    from alignlab.oversight.consistency import world_answer_parser
    from alignlab.oversight.self_consistency import self_consistency

    lm, world = _prepare(config)
    prompts = world.eval_prompts(config.families)
    outcome = self_consistency(lm, [p.messages for p in prompts], [p.answer for p in prompts], ks=config.ks,
                               extract=world_answer_parser(world), max_tokens=config.max_tokens,
                               temperature=config.temperature, seed=config.seed)
    result = {"accuracy": outcome.accuracy, "stderr": outcome.stderr, "parse_rate": outcome.parse_rate,
              "prompts": len(prompts)}
    write_result(Path(config.output) / "results.json", result, seed=config.seed, config=config)
    return result


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab oversee consistency`` and ``alignlab oversee self-consistency``."""
    oversee = subparsers.add_parser("oversee", help="scalable oversight: consistency checks, self-consistency")
    commands = oversee.add_subparsers(dest="oversee_command", required=True)
    add_config_command(commands, "consistency", _consistency,
                       help="flag answers that contradict each other; precision and recall against the truth")
    add_config_command(commands, "self-consistency", _self_consistency,
                       help="majority answer of k samples: accuracy against k")
    for name in SUBCOMMAND_MODULES:  # the other oversight methods add their own sub-commands
        importlib.import_module(name).add_commands(commands)


FLAGS = ("model", "world", "world_dir", "output", "seed")
# Modules with ``add_commands(commands)`` that add sub-commands to ``alignlab oversee`` (one line per method area).
SUBCOMMAND_MODULES: list[str] = [
    "alignlab.oversight.cli_selfreward",
    "alignlab.oversight.cli_debate",
    "alignlab.oversight.cli_constitutional",
]


def _consistency(args: argparse.Namespace) -> None:
    result = run_consistency(parse_command_config(ConsistencyConfig, args, flags=FLAGS))
    for check, entry in result["summary"].items():
        print(f"{check}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))


def _self_consistency(args: argparse.Namespace) -> None:
    result = run_self_consistency(parse_command_config(SelfConsistencyConfig, args, flags=FLAGS, lists=["ks"]))
    for k, accuracy in result["accuracy"].items():
        print(f"k={k}: accuracy {accuracy:.3f} ± {result['stderr'][k]:.3f}")
    print(f"parse rate {result['parse_rate']:.3f}")
