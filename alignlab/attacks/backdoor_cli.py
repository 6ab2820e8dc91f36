"""``alignlab attack backdoor|finetune``: thin layers over the backdoor and fine-tuning attacks' Python API.

    alignlab attack backdoor --attack sft --output runs/backdoor-sft
    alignlab attack backdoor --attack reward --output runs/backdoor-reward      # with the spectral defence
    alignlab attack finetune --model /work/models/demo/dpo --output runs/finetune-attack

Options are the fields of ``BackdoorConfig`` and ``FinetuneAttackConfig``; ``--set key=value`` sets any of them
(lists of numbers: ``--set poison_rates=[0.0,0.05]``).
"""

from __future__ import annotations

import argparse

from alignlab.cli import add_config_command, parse_command_config


def run_backdoor_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.backdoor import BackdoorConfig, run_backdoor

    config = parse_command_config(BackdoorConfig, args, flags=("attack", "trigger", "start", "output"))
    run_backdoor(config)
    print(f"results in {config.output}/results.json")


def run_finetune_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.finetune_attack import FinetuneAttackConfig, run_finetune_attack

    config = parse_command_config(FinetuneAttackConfig, args, flags=("model", "output"), lists=["sets"])
    run_finetune_attack(config)
    print(f"results in {config.output}/results.json")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``backdoor`` and ``finetune`` on ``alignlab attack``."""
    add_config_command(subparsers, "backdoor", run_backdoor_command,
                       help="data-poisoning backdoors (SFT, preference labels, reward model) vs poison rate")
    add_config_command(subparsers, "finetune", run_finetune_command,
                       help="fine-tuning attacks on an aligned model (harmful, identity-shifting, benign data)")
