"""``alignlab oversee constitutional|self-align|ilf|recursive-rm``: the feedback-driven oversight methods on the
toy world, over any model the LM interface loads (a model directory or a server URL from ``alignlab serve``);
fine-tuning starts from local weights (``--set train_from=DIR``, default the world's base model).

    alignlab oversee constitutional --world --output runs/cai
    alignlab oversee self-align --world --output runs/self-align
    alignlab oversee ilf --world --output runs/ilf
    alignlab oversee recursive-rm --world --output runs/rrm

Each run directory holds one sub-directory per stage; re-running the same command resumes after the last finished
stage. The result (table rows with the ground truth) goes to ``results.json`` or ``--set result_file=PATH``.
"""

from __future__ import annotations

import argparse

from alignlab.cli import add_config_command, parse_command_config

FLAGS = ("model", "world", "world_dir", "output", "seed")


def _print_rows(result: dict) -> None:
    def show(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    for row in result["rows"]:
        metric = f", {row['metric']} {show(row['value'])}" if row.get("metric") else ""
        parse = f" (parse rate {show(row['parse_rate'])})" if row.get("parse_rate") is not None else ""
        print(f"{row['method']}: true reward {show(row['true_reward'])}, harmlessness {show(row['harmlessness'])}"
              f"{metric}{parse}")


def _constitutional(args: argparse.Namespace) -> None:
    from alignlab.oversight.constitutional import ConstitutionalConfig, run_constitutional

    _print_rows(run_constitutional(parse_command_config(ConstitutionalConfig, args, flags=FLAGS, lists=["families"])))


def _self_align(args: argparse.Namespace) -> None:
    from alignlab.oversight.self_align import SelfAlignConfig, run_self_align

    _print_rows(run_self_align(parse_command_config(SelfAlignConfig, args, flags=FLAGS)))


def _ilf(args: argparse.Namespace) -> None:
    from alignlab.oversight.ilf import ILFConfig, run_ilf

    _print_rows(run_ilf(parse_command_config(ILFConfig, args, flags=FLAGS)))


def _recursive_rm(args: argparse.Namespace) -> None:
    from alignlab.oversight.recursive_rm import RecursiveRMConfig, run_recursive_rm

    _print_rows(run_recursive_rm(parse_command_config(RecursiveRMConfig, args, flags=FLAGS)))


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the four sub-commands of ``alignlab oversee``."""
    add_config_command(commands, "constitutional", _constitutional,
                       help="constitutional AI: critique -> revision -> SFT, then AI preference labels -> DPO")
    add_config_command(commands, "self-align", _self_align,
                       help="SELF-ALIGN: self-instructed prompts, principle-driven answers, principle-engraving SFT")
    add_config_command(commands, "ilf", _ilf,
                       help="imitation learning from language feedback: refinements -> pick the best -> SFT")
    add_config_command(commands, "recursive-rm", _recursive_rm,
                       help="recursive reward modelling, one level: labels assisted by the policy's critiques -> DPO")
