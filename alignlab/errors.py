"""One exception type per area, each with a message that names the file, row and field at fault.

Every error alignlab raises on purpose derives from :class:`AlignlabError`, so the CLI can print it as
one clear line instead of a stack trace from deep inside a library.
"""

from __future__ import annotations


class AlignlabError(Exception):
    """Base class of every error alignlab raises on purpose (printed by the CLI without a traceback)."""


class ConfigError(AlignlabError):
    """A config file, key or value is wrong (unknown key, wrong type, invalid value)."""


class DataError(AlignlabError):
    """A dataset cannot be read: unknown format, missing file, malformed row or field."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 field: str | None = None):
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        self.source, self.row, self.field = source, row, field
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ModelError(AlignlabError):
    """A model or tokenizer cannot be loaded or does not fit the task."""


class TrainingError(AlignlabError):
    """Training cannot go on (non-finite loss, bad checkpoint); the last good checkpoint is kept."""


class WorldError(AlignlabError):
    """The toy world was asked for something it does not have (unknown size, family, bad seed)."""


class EvalError(AlignlabError):
    """An evaluation task, metric, backend or judge is misconfigured or misbehaves."""


class InterpretError(AlignlabError):
    """An interpretability request cannot be served: unknown hook name, layer out of range, unmapped family."""


class AttackError(AlignlabError):
    """An attack is misconfigured: unstable target tokenisation, behaviour file without its columns."""


class OversightError(AlignlabError):
    """A scalable-oversight method is misconfigured (unknown principle or fault, unusable judge)."""


class InnerError(AlignlabError):
    """An inner-alignment experiment or environment is misconfigured."""
