"""The plumbing every training method shares: a run directory, its config, the model at the end.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, the trained model
(``save_pretrained`` format) and, for some methods, ``results.json``. Methods call :func:`start_run`
first and :func:`finish_run` last, and keep their own file about the algorithm only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.core.data import DataConfig
from alignlab.core.io import atomic_write_json
from alignlab.core.models import ModelConfig, save_pretrained_atomic
from alignlab.core.rundir import announce_config, check_run_dir, write_run_files
from alignlab.core.trainer import TrainConfig, TrainResult, keep_freed_memory

log = logging.getLogger("alignlab")


@dataclass
class RunConfig:
    """The four blocks every training run has: what to start from, what to learn from, how, and where to write.

    A method's config subclasses it, adds its own fields, and re-declares a block only to change its
    defaults, in one line (``train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))``).

    Example::

        >>> @dataclass
        ... class MyConfig(RunConfig):
        ...     beta: float = 0.1
        ...     '''my method's strength'''
        >>> MyConfig().train.lr, MyConfig(output="runs/mine").output
        (5e-05, 'runs/mine')
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    """the model to start from (a local directory or a hub name)"""
    data: DataConfig = field(default_factory=DataConfig)
    """the training data"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """the training loop: optimiser, schedule, precision, checkpoints"""
    output: str = "runs/run"
    """run directory: config, metrics, checkpoints, results and the trained model"""


def start_run(config: Any, output_dir: str | Path) -> Path:
    """Seed every generator from ``config.train.seed`` and check the run directory; write nothing yet.

    The directory is refused (a ConfigError) when it is the input model, holds files alignlab did not write,
    holds a previous run (without resume/overwrite), or when ``--resume`` changes what the run learns
    (:func:`alignlab.core.rundir.check_run_dir`). ``config.yaml`` is written when the training loop starts (or
    at :func:`finish_run`), so a command that fails on its data or model leaves the directory as it was.
    Seeding here, before the method builds its models, makes what is drawn at build time (a LoRA adapter's or
    a value head's initial weights) the same in every run. From here on the process keeps freed memory for
    reuse (:func:`~alignlab.core.trainer.keep_freed_memory`): work before the loop (a reference's log-probs)
    gains too."""
    from accelerate.utils import set_seed

    keep_freed_memory()
    if (train := getattr(config, "train", None)) is not None:
        set_seed(train.seed)
    output_dir = Path(output_dir)
    check_run_dir(config, output_dir)  # on every process: it only reads, so all of them stop together
    announce_config(config, output_dir)
    return output_dir


def finish_run(model, tokenizer, result: TrainResult, *, merge_lora: bool = True,
               results: dict[str, Any] | None = None) -> Path:
    """Save the trained model and tokenizer into the run directory; write ``results.json``."""
    from accelerate import PartialState

    out = result.output_dir
    if PartialState().is_main_process:
        write_run_files(out)
        save_pretrained_atomic(model, tokenizer, out, merge_lora=merge_lora)
        atomic_write_json(out / "results.json", {"steps": result.steps, "eval": result.eval, **(results or {})})
    PartialState().wait_for_everyone()
    return out
