"""The plumbing every training method shares: a run directory, its config, the model at the end.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, the trained model
(``save_pretrained`` format) and, for some methods, ``results.json``. Methods call :func:`start_run`
first and :func:`finish_run` last, and keep their own file about the algorithm only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alignlab.config import save_config
from alignlab.core.io import atomic_write_json
from alignlab.core.models import save_pretrained_atomic
from alignlab.core.trainer import TrainResult

log = logging.getLogger("alignlab")


def start_run(config: Any, output_dir: str | Path) -> Path:
    """Create the run directory and write ``config.yaml`` (after validating, before any training)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")
    return output_dir


def finish_run(model, tokenizer, result: TrainResult, *, merge_lora: bool = True,
               results: dict[str, Any] | None = None) -> Path:
    """Save the trained model and tokenizer into the run directory; write ``results.json``."""
    from accelerate import PartialState

    out = result.output_dir
    if PartialState().is_main_process:
        save_pretrained_atomic(model, tokenizer, out, merge_lora=merge_lora)
        atomic_write_json(out / "results.json", {"steps": result.steps, "eval": result.eval, **(results or {})})
    PartialState().wait_for_everyone()
    return out
