"""``alignlab oversee constitutional|self-align|ilf|recursive-rm``: the feedback-driven oversight methods on the
toy world, over any model the LM interface loads (a model directory or a server URL from ``alignlab serve``);
fine-tuning trains a local copy (``--set train_from=DIR``, default ``--model`` when it is a directory, else the
world's base model; :class:`alignlab.oversight.world_run.Models`).

    alignlab oversee constitutional --world --output runs/cai
    alignlab oversee self-align --world --output runs/self-align
    alignlab oversee ilf --world --output runs/ilf
    alignlab oversee recursive-rm --world --output runs/rrm

Each run directory holds one sub-directory per stage; re-running the same command resumes after the last finished
stage. The result (table rows with the ground truth) goes to ``results.json`` or ``--set result_file=PATH``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib

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


# sub-command -> (module, config class, run function, help); each module holds its method and its world run
COMMANDS = {
    "constitutional": ("constitutional", "ConstitutionalConfig", "run_constitutional",
                       "constitutional AI: critique -> revision -> SFT, then AI preference labels -> DPO"),
    "self-align": ("self_align", "SelfAlignConfig", "run_self_align",
                   "SELF-ALIGN: self-instructed prompts, principle-driven answers, principle-engraving SFT"),
    "ilf": ("ilf", "ILFConfig", "run_ilf",
            "imitation learning from language feedback: refinements -> pick the best -> SFT"),
    "recursive-rm": ("recursive_rm", "RecursiveRMConfig", "run_recursive_rm",
                     "recursive reward modelling, one level: labels assisted by the policy's critiques -> DPO"),
}


def _handler(module_name: str, config_name: str, run_name: str):
    def handle(args: argparse.Namespace) -> None:
        module = importlib.import_module(f"alignlab.oversight.{module_name}")  # imported only when the command runs
        config_cls = getattr(module, config_name)
        lists = [f.name for f in dataclasses.fields(config_cls) if f.name in ("families", "principles")]
        config = parse_command_config(config_cls, args, flags=FLAGS, lists=lists)
        _print_rows(getattr(module, run_name)(config))

    return handle


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the four sub-commands of ``alignlab oversee``."""
    for name, (module_name, config_name, run_name, help_text) in COMMANDS.items():
        add_config_command(commands, name, _handler(module_name, config_name, run_name), help=help_text)
