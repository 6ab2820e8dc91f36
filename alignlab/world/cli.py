"""``alignlab world ...`` commands: build the toy world, score responses against its judge, evaluate a model.

    alignlab world build [--seed 0] [--size small] [--output DIR] [--force]
    alignlab world score RESPONSES.jsonl [--output results.json]
    alignlab world eval --model PATH --output DIR [--reference PATH] [--samples N]
    alignlab world skills --output RESULT.json [--seed 0]     (the oversight world's skill levels)

Each command's options are the fields of a config (``WorldBuildConfig``, ``WorldScoreConfig``,
:class:`WorldEvalConfig`); ``--help`` lists them all, ``--config`` and ``--set key=value`` set any of them.
Handlers import the world lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.cli import add_config_command, parse_command_config

# The config keys each command has a flag for (help: the key's docstring).
BUILD_FLAGS = ("seed", "size", "output", "force")
EVAL_FLAGS = ("model", "output", "reference", "samples", "temperature", "max_new_tokens", "seed", "size", "world")


def _evaluate_model_default(name: str) -> Any:
    """A default of ``world.model_eval.evaluate_model``, so the command and the function never disagree."""
    from alignlab.world.model_eval import evaluate_model

    return inspect.signature(evaluate_model).parameters[name].default


def _world_default(name: str) -> Any:
    from alignlab.world.build import WorldBuildConfig

    return getattr(WorldBuildConfig, name)


@dataclass
class WorldEvalConfig:
    """Sample a model on the world's held-out prompts and grade it with the judge (writes DIR/results.json)."""

    model: str
    """model directory or alignlab run directory"""
    output: str
    """directory for results.json and samples.jsonl"""
    reference: str | None = None
    """also estimate KL(model || reference) per answer (null: no KL)"""
    samples: int = field(default_factory=lambda: _evaluate_model_default("samples"))
    """answers sampled per prompt (the default is evaluate_model's)"""
    temperature: float = field(default_factory=lambda: _evaluate_model_default("temperature"))
    """sampling temperature (0 = greedy)"""
    max_new_tokens: int = field(default_factory=lambda: _evaluate_model_default("max_tokens"))
    """answer length cap in tokens"""
    seed: int = field(default_factory=lambda: _world_default("seed"))
    """world seed, also the sampling seed"""
    size: str = field(default_factory=lambda: _world_default("size"))
    """world size: small, medium or oversight (oversight adds the skills: their levels are evaluated too)"""
    world: str | None = None
    """world directory (null: the user cache)"""

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_new_tokens < 1:
            raise ValueError("samples and max_new_tokens must be at least 1")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab world build``, ``alignlab world score`` and ``alignlab world eval``."""
    world = subparsers.add_parser("world", help="the toy world: build it, score responses against its judge")
    commands = world.add_subparsers(dest="world_command", required=True)
    add_config_command(commands, "build", _build, help="write knowledge base, corpus, datasets and tokenizer (cached)")
    add_config_command(commands, "score", _score, help="score responses with the world's judge")
    add_config_command(commands, "eval", _eval,
                       help="sample a model on the world's held-out prompts and grade it (writes DIR/results.json)")
    add_config_command(commands, "skills", _skills,
                       help="pretrain the oversight world's base model (cached) and measure its skills")


def _build(args: argparse.Namespace) -> None:
    from alignlab.world.build import WorldBuildConfig, build_world

    config = parse_command_config(WorldBuildConfig, args, flags=BUILD_FLAGS)
    paths = build_world(config.output, seed=config.seed, size=config.size, force=config.force,
                        canaries=config.canaries)
    print(f"world in {paths.root}: tokenizer {paths.tokenizer.name}/, datasets {', '.join(paths.datasets)}")


def _score(args: argparse.Namespace) -> None:
    from alignlab.world.evaluate import WorldScoreConfig, score_responses_file

    config = parse_command_config(WorldScoreConfig, args, flags=["output"], positionals=["responses"])
    metrics = score_responses_file(config)
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_family"}, indent=1))


def _eval(args: argparse.Namespace) -> None:
    from alignlab.world.build import build_world
    from alignlab.world.model_eval import RATES, evaluate_model

    config = parse_command_config(WorldEvalConfig, args, flags=EVAL_FLAGS)
    world = build_world(config.world, seed=config.seed, size=config.size)
    result = evaluate_model(config.model, world, reference=config.reference, samples=config.samples,
                            max_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed,
                            output_dir=config.output)
    for key in (*RATES, "kl_to_reference"):
        if result.get(key) is not None:
            print(f"{key:>16}: {result[key]:.3f}")
    _print_skills(result.get("skills", {}))
    print(f"{result['n']} answers; results in {Path(config.output) / 'results.json'}")


def _print_skills(skills: dict[str, dict[str, Any]]) -> None:
    from alignlab.world.skills.evaluate import HEADLINE

    for skill, metrics in skills.items():
        for key in HEADLINE[skill]:
            if metrics.get(key) is not None:
                se = metrics.get(f"{key}_stderr")
                print(f"{key:>20}: {metrics[key]:.3f}" + (f" ± {se:.3f}" if se is not None else "") + f"  ({skill})")
        if "parse_rate" in metrics:
            print(f"{'parse_rate':>20}: {metrics['parse_rate']:.3f}  ({skill})")


def _skills(args: argparse.Namespace) -> None:
    from alignlab.world.skills.measure import WorldSkillsConfig, measure_skills

    config = parse_command_config(WorldSkillsConfig, args, flags=("output", "seed", "world", "samples", "temperature"))
    _print_skills(measure_skills(config)["skills"])
    print(f"results in {config.output}")
