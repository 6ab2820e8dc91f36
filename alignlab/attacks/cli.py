"""``alignlab attack ...``: one command group for every attack, each a thin layer over its Python API.

    alignlab attack run --attack gcg --model runs/sft --behaviors advbench.csv --output runs/attack

Other areas add sub-commands to this group without editing it: each module in :data:`SUBCOMMAND_MODULES` that is
installed defines ``add_commands(attack_subparsers)``; a module not built yet is skipped. Heavy modules are
imported inside the handlers so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

from alignlab.cli import add_config_command, parse_command_config

# Modules that add `alignlab attack <name>` sub-commands (each defines add_commands(attack_subparsers)).
SUBCOMMAND_MODULES = ["alignlab.attacks.privacy.cli", "alignlab.attacks.backdoor_cli"]
RUN_FLAGS = ("attack", "model", "behaviors", "output", "limit", "offset", "judge", "seed", "max_new_tokens")


def run_attack(args: argparse.Namespace) -> None:
    from alignlab.attacks.pipeline import AttackRunConfig, run_attack_pipeline

    config = parse_command_config(AttackRunConfig, args, flags=RUN_FLAGS, lists=["probes", "transfer_models"])
    results = run_attack_pipeline(config)
    for name, value in results["summary"].items():
        print(f"{name}: {value}")
    print(f"results.json and report.html in {results['output']}")


def run_robustness(args: argparse.Namespace) -> None:
    from alignlab.attacks.robustness import RobustnessConfig, run_robustness

    config = parse_command_config(RobustnessConfig, args, flags=("output", "work", "limit", "gcg_limit", "seed"),
                                  lists=["attacks", "online"], mappings=["models"])
    run_robustness(config)
    print(f"result: {config.output}")


def run_perplexity_filter(args: argparse.Namespace) -> None:
    from alignlab.attacks.defences import PerplexityFilterConfig, run_perplexity_filter

    config = parse_command_config(PerplexityFilterConfig, args, flags=("model", "output", "window", "quantile"),
                                  lists=["runs"])
    out = run_perplexity_filter(config)
    fpr = out["false_positive_rate"]
    print(f"threshold {out['threshold']:.2f}; false positives {fpr['k']}/{fpr['n']} benign prompts")
    for name, r in out["detection_rate"].items():
        print(f"detected {name}: {r['k']}/{r['n']}")


def run_adversarial_training(args: argparse.Namespace) -> None:
    from alignlab.attacks.defences import AdversarialTrainingConfig, run_adversarial_training

    config = parse_command_config(AdversarialTrainingConfig, args, flags=("model", "work", "output", "max_steps"))
    out = run_adversarial_training(config)
    for when in ("before", "after"):
        print(f"{when}: " + ", ".join(f"{rule} {r['k']}/{r['n']}" for rule, r in out[when]["gcg"].items()))


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``attack`` command group and its sub-commands on the ``alignlab`` command."""
    attack = subparsers.add_parser("attack", help="adversarial attacks: GCG, jailbreak probes, red teaming",
                                   description="adversarial attacks and the attack → judge pipeline")
    attack_subparsers = attack.add_subparsers(dest="attack_command", required=True)
    add_config_command(attack_subparsers, "run", run_attack,
                       help="attack behaviours (gcg | probe | redteam | redteam-rl) and judge the responses: ASR with "
                            "Wilson intervals")
    add_config_command(attack_subparsers, "robustness", run_robustness,
                       help="every attack against every model: the robustness table of alignment methods")
    add_config_command(attack_subparsers, "perplexity-filter", run_perplexity_filter,
                       help="a perplexity filter's false positives on benign prompts and detection of attacks")
    add_config_command(attack_subparsers, "adversarial-training", run_adversarial_training,
                       help="GCG suffixes found on training prompts → DPO pairs → fresh attacks before and after")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):  # that sub-command's module is not built yet
                continue
            raise
        module.add_commands(attack_subparsers)
