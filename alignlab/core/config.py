"""Dataclass configs ← YAML ← command-line ``key=value`` overrides.

Each config field is documented by the string literal right below it (CleanRL style); that text is
the only help text there is, and :func:`describe` turns it into CLI help, so it is never written twice.
Unknown keys are an error that names the key and suggests close matches.

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Opt:
    ...     lr: float = 1e-3
    ...     '''learning rate'''
    >>> load_config(Opt, None, ["lr=0.5"]).lr
    0.5
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignlab.errors import ConfigError

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring of each field of dataclass ``cls`` (the string literal following it)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else f" (known keys: {', '.join(sorted(choices))})"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads no/off/yes/on as booleans
            spellings = ("no", "off", "false") if value is False else ("yes", "on", "true")
            value = next((s for s in spellings if s in typing.get_args(tp)), value)
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `name=123` into an int; a string field takes its text back.
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys are a ConfigError."""
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields and key in getattr(cls, "removed_keys", {}):
            # A class may list keys it no longer takes ({key: why and what to use}): dropped with a warning for a
            # release, so an old config file still loads.
            warnings.warn(f"config key '{prefix}{key}' {cls.removed_keys[key]}", FutureWarning, stacklevel=2)
            continue
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_suggest(key, list(fields))}")
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            # Override a section key by key on top of ITS default (a parent's default_factory may differ
            # from the section class's own defaults, e.g. SFT's train.lr).
            value = {**_field_default_dict(fields[key]), **value}
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ validation
        raise ConfigError(f"{prefix or cls.__name__ + ': '}{err}") from err


def _field_default_dict(f: dataclasses.Field) -> dict[str, Any]:
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.asdict(f.default_factory())
    if f.default is not dataclasses.MISSING and dataclasses.is_dataclass(f.default):
        return dataclasses.asdict(f.default)
    return {}


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-serialisable mapping of a config."""
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` → (["train", "lr"], 0.0001); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def merge_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Defaults of ``cls`` ← ``base`` mapping ← YAML file ``path`` ← ``overrides`` ("a.b=value")."""
    data: dict[str, Any] = {}
    for part_path, value in _flatten(base or {}):
        merge_override(data, part_path, value)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
        hints = _hints(cls)
        for key, value in loaded.items():  # checked here, so the error names the YAML key, not a later flag
            if key in hints and dataclasses.is_dataclass(hints[key]) and not isinstance(value, dict):
                raise ConfigError(f"config file '{path}': '{key}' must be a mapping of {key}.* settings, "
                                  f"got {value!r}")
        for part_path, value in _flatten(loaded):
            merge_override(data, part_path, value)
    for text in overrides or []:
        merge_override(data, *parse_override(text))
    return from_dict(cls, data)


def _flatten(data: dict[str, Any], prefix: list[str] | None = None):
    """Yield (path, leaf) so that YAML sections merge key by key instead of replacing each other."""
    prefix = prefix or []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, prefix + [key])
        else:
            yield prefix + [key], value


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically: a reader never sees half a file)."""
    from alignlab.core.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, str]]:
    """(key, default, doc) for every leaf field of ``cls``, nested sections as ``a.b``. A section's defaults are
    those its parent gives it (``defaults``; e.g. a method's ``train.lr``), not its class's own."""
    rows = []
    docs = field_docs(cls)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, prefix + f.name + ".", default if dataclasses.is_dataclass(default) else None)
            continue
        rows.append((prefix + f.name, repr(default), docs.get(f.name, "")))
    return rows


def config_parser(cls: type, prog: str, *, flags: dict[str, tuple[str, str]] | None = None,
                  description: str | None = None, positionals: dict[str, tuple[str, str]] | None = None,
                  defaults: Any = None) -> argparse.ArgumentParser:
    """An argparse parser for a command whose options are the fields of config dataclass ``cls``.

    Every key is settable with ``--set key=value`` or in a ``--config`` YAML file, and ``--help`` lists every
    key with its field docstring and default (so help is never written twice). ``flags`` adds shortcuts:
    ``{"max_steps": ("train.max_steps", "optimiser steps")}`` makes ``--max-steps N`` set ``train.max_steps``;
    a key whose type is bool makes a switch (``--resume`` sets ``train.resume=true``). ``positionals`` adds
    positional arguments the same way. ``defaults`` (an instance of ``cls``) is what the help shows as defaults
    when the command starts from other values than the class's own. :func:`parse_config` turns the parsed
    namespace into a config.

    Example::

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Steps:
        ...     max_steps: int = 10
        ...     '''optimiser steps'''
        >>> parser = config_parser(Steps, "demo", flags={"max_steps": ("max_steps", "optimiser steps")})
        >>> parse_config(Steps, parser, ["--max-steps", "3", "--set", "max_steps=5"]).max_steps
        5
    """
    rows = describe(cls, defaults=defaults)
    width = max((len(k) for k, _, _ in rows), default=0)
    epilog = "config keys (set with --set key=value or in --config YAML):\n" + "\n".join(
        f"  {key:<{width}}  {doc} [default: {default}]" for key, default, doc in rows)
    parser = argparse.ArgumentParser(prog=prog, description=description or (cls.__doc__ or "").strip(),
                                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = dict(_leaf_types(cls))
    shortcuts: dict[str, str] = {}
    for name, (key, help_text) in (positionals or {}).items():
        if key not in hints:
            raise ValueError(f"positional {name} names an unknown key {key}")
        parser.add_argument(name, help=help_text)
        shortcuts[name] = key
    for name, (key, help_text) in (flags or {}).items():
        if key not in hints:
            raise ValueError(f"flag --{name} names an unknown key {key}")
        option = "--" + name.replace("_", "-")
        if hints[key] is bool:
            parser.add_argument(option, dest=name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(option, dest=name, help=help_text, metavar=name.upper())
        shortcuts[name] = key
    parser.add_argument("--config", help="YAML file with config keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.set_defaults(_config_shortcuts=shortcuts)
    return parser


def parse_config(cls: type[T], parser: argparse.ArgumentParser, argv: list[str] | None = None, *,
                 base: dict[str, Any] | None = None, namespace: argparse.Namespace | None = None) -> T:
    """The config a :func:`config_parser` command line describes: defaults ← ``base`` ← ``--config`` ←
    shortcut flags ← ``--set`` (later wins). Pass an already parsed ``namespace`` instead of ``argv``."""
    args = namespace if namespace is not None else parser.parse_args(argv)
    overrides = [f"{key}={_yaml_scalar(getattr(args, name))}" for name, key in args._config_shortcuts.items()
                 if getattr(args, name, None) is not None]
    return load_config(cls, args.config, overrides + list(args.set), base=base)


def _yaml_scalar(value: Any) -> str:
    return "true" if value is True else str(value)


def _leaf_types(cls: type, prefix: str = ""):
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaf_types(tp, prefix + f.name + ".")
        else:
            yield prefix + f.name, tp
