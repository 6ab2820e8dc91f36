"""The ``alignlab`` command: a thin layer that parses a config and calls the Python API.

    alignlab train sft --model PATH --data PATH --output DIR [--max-steps N] [--config F.yaml] [--set k=v ...]
    alignlab train sft --help          # every config key with its documentation

Every command takes its options from a config dataclass (see :func:`alignlab.config.config_parser`): its
shortcut flags, ``--config FILE.yaml`` and ``--set key=value``, with help generated from the field docstrings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from alignlab.errors import AlignlabError, ConfigError

T = TypeVar("T")

# Areas that add their own sub-commands (each module defines add_commands(subparsers)).
COMMAND_MODULES = ["alignlab.world.cli", "alignlab.evaluate.cli", "alignlab.experiments.bench_cli",
                   "alignlab.outer.cli", "alignlab.interpret.cli", "alignlab.attacks.cli", "alignlab.oversight.cli",
                   "alignlab.inner.cli"]

# Common flags of `alignlab train METHOD`: flag -> (config key, help).
TRAIN_FLAGS = {"model": ("model.name_or_path", "model to start from: a local directory or a hub name"),
               "data": ("data.path", "training data: a file, a directory or a datasets hub name"),
               "output": ("output", "run directory"),
               "max_steps": ("train.max_steps", "optimiser steps"),
               "seed": ("train.seed", "random seed"),
               "resume": ("train.resume", "continue from the newest checkpoint")}


def train_parser(method: str) -> argparse.ArgumentParser:
    from alignlab.config import config_parser
    from alignlab.registry import get_method, get_method_spec

    config_cls, _ = get_method(method)
    return config_parser(config_cls, f"alignlab train {method}", flags=TRAIN_FLAGS,
                         defaults=config_cls(**get_method_spec(method).defaults))


def run_train(method: str, argv: Sequence[str]) -> None:
    from alignlab.config import parse_config
    from alignlab.registry import get_method, get_method_spec

    config_cls, fn = get_method(method)
    config = parse_config(config_cls, train_parser(method), list(argv), base=get_method_spec(method).defaults)
    result = fn(config)
    print(f"done: {result.steps} steps; model, config.yaml and metrics.jsonl in {result.output_dir}")
    for key, value in result.eval.items():
        print(f"  {key} = {value:.4f}")


def add_config_command(subparsers: argparse._SubParsersAction, name: str,
                       handler: Callable[[argparse.Namespace], None], **kwargs: Any) -> argparse.ArgumentParser:
    """Register a command whose options are the fields of a config dataclass.

    Its arguments are left unparsed (``args.argv``) for ``handler`` to read with :func:`parse_command_config`,
    which imports the config only when the command runs, so ``alignlab --help`` stays fast.
    """
    parser = subparsers.add_parser(name, add_help=False, **kwargs)
    parser.set_defaults(handler=handler, config_command=parser.prog)
    return parser


def parse_command_config(cls: type[T], args: argparse.Namespace, *, flags: Sequence[str] = (),
                         positionals: Sequence[str] = (), lists: Sequence[str] = (), mappings: Sequence[str] = ()) -> T:
    """The config of a command registered with :func:`add_config_command` (see ``config_parser``).

    Each entry names a config key that gets a shortcut: ``"max_tokens"`` makes ``--max-tokens``,
    ``"judge=judges"`` makes ``--judge`` set the key ``judges``; its help is the key's field docstring, so it
    is never written twice. ``lists`` are repeatable flags of comma-separated items that set a list key
    (``--tasks a,b --tasks c``), ``mappings`` flags of ``NAME=VALUE[,NAME=VALUE...]`` that set a mapping key
    (``--models a=runs/a,b=runs/b``). ``--set`` is applied last, so it wins.

    Example::

        >>> from dataclasses import dataclass, field
        >>> @dataclass
        ... class Opt:
        ...     tasks: list[str] = field(default_factory=list)
        >>> args = argparse.Namespace(config_command="alignlab x", argv=["--tasks", "a,b", "--tasks", "c"])
        >>> parse_command_config(Opt, args, lists=["tasks"]).tasks
        ['a', 'b', 'c']
    """
    from alignlab.config import config_parser, describe, parse_config

    docs = {key: doc for key, _, doc in describe(cls)}

    def shortcuts(specs: Sequence[str], note: str = "") -> dict[str, tuple[str, str]]:
        named = (spec.partition("=") for spec in specs)
        return {name: (key or name, docs.get(key or name, "") + note) for name, _, key in named}

    flag_keys, list_keys = shortcuts(flags), shortcuts(lists, " (comma-separated; repeatable)")
    mapping_keys = shortcuts(mappings, " (NAME=VALUE[,NAME=VALUE...])")
    parser = config_parser(cls, args.config_command, flags=flag_keys, positionals=shortcuts(positionals))
    for name, (_, help_text) in {**list_keys, **mapping_keys}.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, action="append", help=help_text,
                            metavar="NAME=VALUE" if name in mapping_keys else name.upper())
    namespace = parser.parse_args(args.argv)
    overrides = []
    for name, (key, _) in list_keys.items():
        if getattr(namespace, name):
            items = [item for text in getattr(namespace, name) for item in text.split(",") if item]
            overrides.append(f"{key}={json.dumps(typed_items(cls, key, items, '--' + name.replace('_', '-')))}")
    for name, (key, _) in mapping_keys.items():
        if getattr(namespace, name):
            pairs = named_values(",".join(getattr(namespace, name)), "--" + name.replace("_", "-"))
            overrides.append(f"{key}={json.dumps(pairs)}")
    namespace.set = overrides + namespace.set
    try:
        return parse_config(cls, parser, namespace=namespace)
    except ConfigError as err:
        if not (isinstance(err.__cause__, TypeError) and "required" in str(err.__cause__)):
            raise
        # A required field nobody set: name the flag that sets it rather than the dataclass's __init__.
        flag_of = {key: "--" + name.replace("_", "-") for name, (key, _) in {**flag_keys, **list_keys, **mapping_keys}.items()}
        missing = [flag_of.get(key, key) for key in re.findall(r"'(\w+)'", str(err.__cause__))]
        raise ConfigError(f"{args.config_command} needs {', '.join(missing)}") from err


def typed_items(cls: type, key: str, items: list[str], flag: str) -> list[Any]:
    """A list flag's items as its field's element type (``list[int]``: ``"0"`` → 0); strings stay strings.

    Example::

        >>> from dataclasses import dataclass, field
        >>> @dataclass
        ... class Opt:
        ...     seeds: list[int] = field(default_factory=list)
        >>> typed_items(Opt, "seeds", ["0", "2"], "--seeds")
        [0, 2]
    """
    import typing

    hint = typing.get_type_hints(cls).get(key) if "." not in key else None
    element = typing.get_args(hint)[0] if typing.get_args(hint) else str
    if element not in (int, float):
        return items
    try:
        return [element(item) for item in items]
    except ValueError as err:
        raise ConfigError(f"{flag}: expected {element.__name__} items, got {','.join(items)!r}") from err


def named_values(text: str, flag: str) -> dict[str, str]:
    """``"a=x,b=y"`` → ``{"a": "x", "b": "y"}``; anything else is a ConfigError naming ``flag``.

    Example::

        >>> named_values("a=runs/a,b=http://127.0.0.1:8000/v1#b", "--models")
        {'a': 'runs/a', 'b': 'http://127.0.0.1:8000/v1#b'}
    """
    out = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{flag}: expected NAME=VALUE[,NAME=VALUE...], got '{item}'")
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    from alignlab.registry import methods

    parser = argparse.ArgumentParser(prog="alignlab", description="LLM alignment, executable.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    train = subparsers.add_parser("train", help="train a model with an alignment method",
                                  description=f"methods: {', '.join(methods())}")
    train.add_argument("method", help=f"one of: {', '.join(methods())}")
    train.add_argument("args", nargs=argparse.REMAINDER, help="method options (see alignlab train METHOD --help)")
    train.set_defaults(handler=lambda a: run_train(a.method, a.args))
    add_config_command(subparsers, "demo", lambda a: importlib.import_module("alignlab.experiments.demo").run_demo_command(a),
                       help="the whole pipeline on the toy world (world → SFT → RM → DPO → eval)")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):  # an area (or its package) not built yet
                continue
            raise
        module.add_commands(subparsers)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line up to the command; a config command's own arguments stay in ``args.argv``."""
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "config_command", None):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.argv = rest
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from alignlab.core import provenance

    provenance.command_line = ["alignlab", *argv]  # what result files record as the command that made them
    try:
        args = parse_args(build_parser(), argv)
        args.handler(args)
    except AlignlabError as err:
        print(f"alignlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
