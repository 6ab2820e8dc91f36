"""Atomic checkpoints: written to a temp directory, then renamed into place.

A checkpoint directory ``checkpoints/step-00000042/`` holds the full model state
(``model.safetensors``), the optimiser and scheduler states, every process's RNG states and
``trainer_state.json``. A crash while writing leaves only a ``.tmp`` directory, which is ignored and
cleaned up, so the last complete checkpoint is never damaged. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from alignlab.errors import TrainingError

STATE_FILE = "trainer_state.json"

log = logging.getLogger("alignlab")


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.exists():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": [np.random.get_state()[0], np.random.get_state()[1].tolist(), *np.random.get_state()[2:]],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def save_checkpoint(root: Path, step: int, *, model: torch.nn.Module | None, optimizer, scheduler,
                    rank: int, state: dict[str, Any], keep: int, is_main: bool, barrier) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep the newest ``keep`` ones.

    Every process writes its own RNG state; the main process writes the rest and renames.
    """
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    if is_main:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2))
    barrier()
    if is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer, scheduler, rank: int) -> dict[str, Any]:
    """Restore model, optimiser, scheduler and this process's RNG from checkpoint ``path``; a damaged file is a
    TrainingError naming it (torch's own message runs over several lines and suggests ``weights_only=False``)."""
    file = path / "model.safetensors"
    try:
        load_model(model, str(file))
        file = path / "optimizer.pt"
        opt = torch.load(file, weights_only=True)
        optimizer.load_state_dict(opt["optimizer"])
        scheduler.load_state_dict(opt["scheduler"])
        file = path / f"rng-{rank}.pt"
        if file.exists():
            set_rng_state(torch.load(file, weights_only=True))
        file = path / STATE_FILE
        return json.loads(file.read_text())
    except (OSError, RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TrainingError(f"checkpoint file '{file}' cannot be loaded: {first_line}") from err


def load_newest_intact(dirs: list[Path], **kwargs: Any) -> dict[str, Any]:
    """Load the newest of the checkpoints ``dirs`` (oldest first) that loads, with a warning naming each
    damaged one skipped (a truncated file after a disk filled up, say); a TrainingError if none loads.
    ``kwargs`` go to :func:`load_checkpoint`; what a damaged one restored before failing, the next one overwrites."""
    failures = []
    for path in reversed(dirs):
        try:
            return load_checkpoint(path, **kwargs)
        except TrainingError as err:
            log.warning("%s; trying an older checkpoint", err)
            failures.append(str(err))
    raise TrainingError(f"no checkpoint can be loaded ({'; '.join(failures)})")


def clean_partial(root: Path) -> None:
    """Remove ``.tmp`` directories left by a crash mid-write."""
    if root.exists():
        for tmp in root.glob(".step-*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
