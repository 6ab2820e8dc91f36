"""TEMPORARY (not committed): the `alignlab interpret` group until interp-hooks' cli.py is merged."""
import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    interpret = subparsers.add_parser("interpret", help="mechanistic interpretability")
    commands = interpret.add_subparsers(dest="interpret_command", required=True)
    from alignlab.interpret.toy.cli import add_commands as add_toy_commands

    add_toy_commands(commands)
