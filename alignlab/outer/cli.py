"""``alignlab data select``: choose a subset of SFT demonstrations (see :mod:`alignlab.outer.selection`).

    alignlab data select --data sft.jsonl --model runs/base --selector kmeans_kcenter --fraction 0.05 \\
                         --output selected.jsonl
"""

from __future__ import annotations

import argparse

from alignlab.cli import add_config_command, parse_command_config


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab data select``."""
    data = subparsers.add_parser("data", help="prepare training data").add_subparsers(dest="data_command",
                                                                                       required=True)
    add_config_command(data, "select", _select,
                       help="choose a subset of SFT demonstrations (k-means, KCenterGreedy or random)")


def _select(args: argparse.Namespace) -> None:
    from alignlab.outer.selection import SelectConfig, select_data

    config = parse_command_config(SelectConfig, args, flags=("data", "model", "selector", "fraction", "count",
                                                             "output", "seed"))
    chosen = select_data(config)
    print(f"chose {len(chosen)} examples by {config.selector}: {config.output}")
