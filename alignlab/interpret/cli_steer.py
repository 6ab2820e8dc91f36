"""``alignlab interpret refusal|harm-pca|truth|edit``: the toy-world measurements of directions, steering and
editing, each a thin layer over its Python function, writing ``results.json`` (with command, commit, seeds and
machine), ``samples.jsonl`` and ``report.html`` into a run directory.

    alignlab interpret refusal --aligned runs/demo/dpo --output runs/interpret/refusal
    alignlab interpret harm-pca --models runs/demo/dpo,base --output runs/interpret/harm_pca
    alignlab interpret truth --models runs/demo/dpo,base --output runs/interpret/truth
    alignlab interpret edit --model runs/demo/dpo --output runs/interpret/edit

Each command's options are the fields of its config (``RefusalConfig``, ``HarmPCAConfig``, ``TruthConfig``,
``EditConfig``); ``--help`` lists them, ``--config`` and ``--set key=value`` set any of them (numeric lists too:
``--set 'seeds=[0,1,2]'``). ``base`` as a
model name is the toy world's base model. Register them on the ``interpret`` command with
``alignlab.interpret.cli_steer.add_commands(interpret_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

from alignlab.cli import add_config_command, parse_command_config

# command -> (module, config class, function, flags, list flags, help)
COMMANDS = {
    "refusal": ("world_directions", "RefusalConfig", "run_refusal", ("output", "aligned", "base", "layer"), (),
                "refusal direction of an aligned world model: ablate it, sweep it"),
    "harm-pca": ("world_directions", "HarmPCAConfig", "run_harm_pca", ("output",), ("models",),
                 "held-out separation of harmful and benign prompts by PCA, per layer"),
    "truth": ("world_directions", "TruthConfig", "run_truth", ("output",), ("models",),
              "'knows the answer' probe and a shift along it: honesty and helpfulness"),
    "edit": ("world_editing", "EditConfig", "run_edit", ("output", "model"), (),
             "rank-one edits of world capitals: efficacy, generalisation, specificity; knowledge neurons"),
}


def _handler(name: str):
    def run(args: argparse.Namespace) -> None:
        module_name, config_name, function_name, flags, lists, _ = COMMANDS[name]
        module = importlib.import_module(f"alignlab.interpret.{module_name}")
        config = parse_command_config(getattr(module, config_name), args, flags=flags, lists=lists)
        getattr(module, function_name)(config)
        print(f"results.json, samples.jsonl and report.html in {config.output}")

    return run


def add_commands(interpret_subparsers: argparse._SubParsersAction) -> None:
    """Register ``refusal``, ``harm-pca``, ``truth`` and ``edit`` under ``alignlab interpret``."""
    for name, (*_, help_text) in COMMANDS.items():
        add_config_command(interpret_subparsers, name, _handler(name), help=help_text)
