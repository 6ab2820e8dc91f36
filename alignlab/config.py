"""``alignlab.config``: the public name of :mod:`alignlab.core.config` (dataclass configs ← YAML ← overrides).

The machinery lives in ``core`` because the run plumbing there writes and compares configs, and ``core``
imports nothing above it.

Example::

    >>> from alignlab.config import describe
    >>> from alignlab.core.run import RunConfig
    >>> [key for key, _, _ in describe(RunConfig)][:2]
    ['model.name_or_path', 'model.dtype']
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
