"""From a data source to encoded training examples: read records, split, tokenise, with clear errors.

Example::

    >>> train_recs, eval_recs = load_records(DataConfig(path="data.jsonl", eval_fraction=0.1), "pair")  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alignlab.core.records import Record
from alignlab.errors import DataError


@dataclass
class DataConfig:
    """Where the training data comes from and how it is cut to length."""

    path: str = ""
    """a local file (.jsonl/.jsonl.gz/.json/.csv/.parquet), a directory, or a datasets hub name"""
    format: str | None = None
    """force a dataset format instead of detecting it from the columns"""
    split: str = "train"
    """split to read from a hub dataset"""
    eval_path: str | None = None
    """separate evaluation data (same formats)"""
    eval_split: str | None = None
    """split of `path` to evaluate on (hub datasets)"""
    eval_fraction: float = 0.0
    """hold out this fraction of the training rows for evaluation when no eval data is given"""
    limit: int | None = None
    """read at most this many rows"""
    max_length: int = 1024
    """tokens per example (prompt + completion); longer examples are truncated"""
    max_prompt_length: int | None = None
    """tokens kept from the end of a long prompt (default: half of max_length)"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_length < 2:
            raise ValueError(f"data.max_length must be >= 2, got {self.max_length}")


def load_records(config: DataConfig, kind: str, *, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, eval) records of ``kind`` as the config describes; eval may be empty."""
    from alignlab.core.readers import read_records

    if not config.path:
        raise DataError("no training data given (use --data PATH_OR_NAME)", field="data.path")
    train = read_records(config.path, kind, split=config.split, format=config.format, limit=config.limit)
    if config.eval_path:
        evaluation = read_records(config.eval_path, kind, split=config.eval_split or "test", format=config.format)
    elif config.eval_split:
        evaluation = read_records(config.path, kind, split=config.eval_split, format=config.format)
    elif config.eval_fraction > 0:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, int(len(train) * config.eval_fraction))
        held = set(order[:n_eval])
        evaluation = [r for i, r in enumerate(train) if i in held]
        train = [r for i, r in enumerate(train) if i not in held]
    else:
        evaluation = []
    return train, evaluation


def encode_all(records: Sequence[Record], encode: Callable[[Record], dict[str, Any] | None], *,
               source: str, desc: str = "tokenise") -> list[dict[str, Any]]:
    """Encode every record; an error names the row. ``encode`` returns None to skip a record."""
    from tqdm.auto import tqdm

    out = []
    for row, record in enumerate(tqdm(records, desc=desc, disable=len(records) < 2000, leave=False)):
        try:
            example = encode(record)
        except DataError as err:
            raise DataError(str(err), source=source, row=row) from err
        if example is not None:
            out.append(example)
    if not out:
        raise DataError("no usable examples after tokenisation (are the completions empty or max_length too small?)",
                        source=source)
    return out
