"""``alignlab attack ...``: one command group for every attack, each a thin layer over its Python API.

    alignlab attack run --attack gcg --model runs/sft --behaviors advbench.csv --output runs/attack

Other areas add sub-commands to this group without editing it: each module in :data:`SUBCOMMAND_MODULES` that is
installed defines ``add_commands(attack_subparsers)``; a module not built yet is skipped. Heavy modules are
imported inside the handlers so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

# Modules that add `alignlab attack <name>` sub-commands (each defines add_commands(attack_subparsers)).
SUBCOMMAND_MODULES = ["alignlab.attacks.privacy.cli", "alignlab.attacks.backdoor_cli"]

def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``attack`` command group and its sub-commands on the ``alignlab`` command."""
    attack = subparsers.add_parser("attack", help="adversarial attacks: GCG, jailbreak probes, red teaming",
                                   description="adversarial attacks and the attack → judge pipeline")
    attack_subparsers = attack.add_subparsers(dest="attack_command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):  # that sub-command's module is not built yet
                continue
            raise
        module.add_commands(attack_subparsers)
