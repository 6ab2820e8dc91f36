"""Metrics logging: one JSON object per logged step in ``metrics.jsonl`` (+ TensorBoard if installed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append-only JSONL metrics with ``step`` in every row.

    On resume, rows logged after the checkpoint's step are dropped first, so the file reads as one
    uninterrupted run.

    Example::

        >>> log = MetricsLogger(tmp_path / "metrics.jsonl")   # doctest: +SKIP
        >>> log.log({"step": 1, "loss": 2.3})                  # doctest: +SKIP
    """

    def __init__(self, path: Path, *, resume_step: int | None = None, tensorboard: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.write_text("")
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def log(self, row: dict[str, Any]) -> None:
        clean = {k: (float(v) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}
        self._file.write(json.dumps(clean, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self._tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
