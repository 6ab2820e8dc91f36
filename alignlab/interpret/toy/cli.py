"""``alignlab interpret toy induction|superposition|solu`` and ``alignlab interpret sae``: thin layers over
:mod:`alignlab.interpret.toy.experiments`, each writing ``results.json`` and ``report.html`` into ``--output``.

    alignlab interpret toy induction --output runs/induction            # 1- and 2-layer models, 3 seeds
    alignlab interpret toy superposition --output runs/superposition
    alignlab interpret toy solu --output runs/solu
    alignlab interpret sae --output runs/sae --set sae.hook=blocks.2.hook_resid_post

Options are the fields of each experiment's config (``--help`` lists them; nested ones with ``--set``, e.g.
``--set train.steps=4000``). :func:`add_commands` registers ``toy`` and ``sae`` on the ``alignlab interpret``
sub-command parser.
"""

from __future__ import annotations

import argparse
import importlib

from alignlab.cli import add_config_command, parse_command_config

FLAGS = ("output", "seed", "seeds")
# command -> (config class, experiment function, help)
TOY = {"induction": ("InductionExperiment", "induction_experiment",
                     "attention-only transformers: the induction-head phase change and its QK/OV circuits"),
       "superposition": ("SuperpositionExperiment", "superposition_experiment",
                         "Elhage et al.'s superposition toy models: sparsity/importance sweep and phase diagram"),
       "solu": ("SoluExperiment", "solu_experiment",
                "SoLU vs GELU on the world corpus: loss and neuron monosemanticity against ground truth")}
SAE = ("SAEExperiment", "sae_experiment",
       "sparse autoencoders (L1, TopK) at a hook point: SAELens's metrics and features vs world concepts")


def _handler(config_name: str, function_name: str):
    def run(args: argparse.Namespace) -> None:
        experiments = importlib.import_module("alignlab.interpret.toy.experiments")
        config = parse_command_config(getattr(experiments, config_name), args, flags=FLAGS)
        results = getattr(experiments, function_name)(config)
        print(f"results.json and report.html in {config.output}")
        for name, value in results.get("summary", {}).get("table", {}).items():
            print(f"  {name}: {value['mean']:.4g} ± {value['se']:.2g} (n={value['n']})")
    return run


def add_commands(interpret_commands: argparse._SubParsersAction) -> None:
    """Register ``toy`` (with ``induction``, ``superposition``, ``solu``) and ``sae`` under ``alignlab interpret``."""
    toy = interpret_commands.add_parser("toy", help="toy models: induction heads, superposition, SoLU")
    toy_commands = toy.add_subparsers(dest="toy_command", required=True)
    for name, (config_name, function_name, help_text) in TOY.items():
        add_config_command(toy_commands, name, _handler(config_name, function_name), help=help_text)
    add_config_command(interpret_commands, "sae", _handler(SAE[0], SAE[1]), help=SAE[2])
