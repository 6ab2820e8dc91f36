"""``alignlab.config``: the public name of :mod:`alignlab.core.config` (dataclass configs ← YAML ← overrides).

The machinery lives in ``core`` because the run plumbing there writes and compares configs, and ``core``
imports nothing above it.

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Opt:
    ...     lr: float = 1e-3
    ...     '''learning rate'''
    >>> load_config(Opt, None, ["lr=0.5"]).lr
    0.5
"""

from alignlab.core.config import (
    config_parser,
    describe,
    field_docs,
    from_dict,
    load_config,
    merge_override,
    parse_config,
    parse_override,
    save_config,
    to_dict,
)

__all__ = ["config_parser", "parse_config", "describe", "field_docs", "from_dict", "load_config", "merge_override", "parse_override", "save_config",
           "to_dict"]
