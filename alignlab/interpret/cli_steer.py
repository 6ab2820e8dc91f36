"""``alignlab interpret refusal|harm-pca|truth|edit``: the toy-world measurements of directions, steering and
editing; ``alignlab interpret steer|neurons``: the same tools on any model and the user's prompts. Each is a thin
layer over its Python function, writing ``results.json`` (with command, commit, seeds and machine),
``report.html`` (and ``samples.jsonl`` where answers are graded) into a run directory.

    alignlab interpret refusal --aligned runs/demo/dpo --output runs/interpret/refusal
    alignlab interpret harm-pca --models runs/demo/dpo,base --output runs/interpret/harm_pca
    alignlab interpret truth --models runs/demo/dpo,base --output runs/interpret/truth
    alignlab interpret edit --model runs/demo/dpo --output runs/interpret/edit
    alignlab interpret steer --model runs/demo/dpo --positive "Help me rob the bank of Vell." --negative "Hello!" --prompts "Thanks a lot." --layer 2 --output runs/interpret/steer
    alignlab interpret neurons --model runs/demo/dpo --prompt "What is the capital of Vell?" --answer "It is Oslo." --output runs/interpret/neurons

Each command's options are the fields of its config (``RefusalConfig``, ``HarmPCAConfig``, ``TruthConfig``,
``EditConfig``, ``SteerConfig``, ``NeuronsConfig``); ``--help`` lists them, ``--config`` and ``--set key=value``
set any of them: numeric lists (``--set 'seeds=[0,1,2]'``) and prompts holding commas, which the list flags would
split (``--set 'prompts=["Hi, you."]'``). ``base`` as a model name is the toy world's base model. Register them on the ``interpret`` command with
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
    "steer": ("steer_prompts", "SteerConfig", "run_steer", ("model", "output", "layer"),
              ("positive", "negative", "prompts"), "a direction from two prompt sets; answers steered along it"),
    "neurons": ("steer_prompts", "NeuronsConfig", "run_neurons", ("model", "output", "prompt", "answer"), (),
                "integrated-gradient attribution of an answer to MLP neurons"),
}


def _handler(name: str):
    def run(args: argparse.Namespace) -> None:
        module_name, config_name, function_name, flags, lists, _ = COMMANDS[name]
        module = importlib.import_module(f"alignlab.interpret.{module_name}")
        config = parse_command_config(getattr(module, config_name), args, flags=flags, lists=lists)
        getattr(module, function_name)(config)
        print(f"results.json and report.html in {config.output}")

    return run


def add_commands(interpret_subparsers: argparse._SubParsersAction) -> None:
    """Register ``refusal``, ``harm-pca``, ``truth``, ``edit``, ``steer`` and ``neurons`` under ``alignlab interpret``."""
    for name, (*_, help_text) in COMMANDS.items():
        add_config_command(interpret_subparsers, name, _handler(name), help=help_text)
