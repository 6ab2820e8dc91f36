"""What alignlab may do to a run directory: which directories it may write into, and when.

A run directory is alignlab's when it holds the marker file ``alignlab-run.json`` (written atomically beside
``config.yaml`` when a run starts) or, for runs from before the marker, ``metrics.jsonl`` or a checkpoint.
Nothing is written before the run is known to start: :func:`check_run_dir` only reads (it runs first, before
the data and the model are loaded), :func:`announce_config` remembers the config, and :func:`write_run_files`
writes ``config.yaml`` and the marker once the training loop starts (or the method finishes).

Example::

    >>> import tempfile; from pathlib import Path
    >>> d = Path(tempfile.mkdtemp()); (d / "config.json").write_text("{}")  # someone else's model
    2
    >>> foreign_files(d)
    ['config.json']
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from alignlab.core import checkpoint as ckpt
from alignlab.core.io import atomic_write_json, atomic_write_text
from alignlab.errors import ConfigError

log = logging.getLogger("alignlab")

MARKER = "alignlab-run.json"

# Keys a resumed run may change: they decide how long it runs and what it reports, not what it learns.
# max_steps / num_epochs may only grow (checked apart).
SAFE_ON_RESUME = {"output", "train.resume", "train.overwrite", "train.log_every", "train.save_every",
                  "train.save_total_limit", "train.progress", "train.tensorboard", "train.eval_every"}
GROW_ON_RESUME = {"train.max_steps", "train.num_epochs"}

_pending: dict[Path, dict[str, Any]] = {}


def is_alignlab_dir(output_dir: Path) -> bool:
    """Whether alignlab wrote ``output_dir`` (the marker, or an older run's metrics or checkpoints)."""
    return ((output_dir / MARKER).exists() or (output_dir / "metrics.jsonl").exists()
            or bool(ckpt.checkpoint_dirs(output_dir / "checkpoints")))


def foreign_files(output_dir: Path) -> list[str]:
    """The entries of ``output_dir`` alignlab did not write: all of them, unless it is an alignlab run directory."""
    if not output_dir.is_dir() or is_alignlab_dir(output_dir):
        return []
    return sorted(p.name for p in output_dir.iterdir())


def check_results_dir(output_dir: Path, ours: tuple[str, ...] = ("results.json", "report.html")) -> None:
    """For commands that write only result files (no training run): refuse an ``output_dir`` that holds anything
    else, so that re-running replaces alignlab's own files and never touches someone else's.

    Example::

        >>> import tempfile; from pathlib import Path
        >>> d = Path(tempfile.mkdtemp()); (d / "notes.txt").write_text("mine")
        4
        >>> check_results_dir(d)
        Traceback (most recent call last):
        ...
        alignlab.errors.ConfigError: output directory '...' holds files alignlab did not write (notes.txt); choose another --output
    """
    if output_dir.is_dir() and (others := sorted(p.name for p in output_dir.iterdir() if p.name not in ours)):
        raise ConfigError(f"output directory '{output_dir}' holds files alignlab did not write ({', '.join(others[:5])}"
                          f"{', ...' if len(others) > 5 else ''}); choose another --output")


def previous_run(output_dir: Path, config: Any) -> str | None:
    """Why a fresh run may not start in ``output_dir`` (it holds one, and neither resume nor overwrite is set)."""
    previous = (output_dir / "metrics.jsonl").exists() or ckpt.checkpoint_dirs(output_dir / "checkpoints")
    if previous and not (config.resume or config.overwrite):
        return (f"output directory '{output_dir}' already holds a run; pass --resume to continue it, "
                "--set train.overwrite=true to replace it, or choose another --output")
    return None


def output_problem(output_dir: Path, config: Any, model_path: str = "") -> str | None:
    """Why ``output_dir`` may not receive this run (``config`` is the loop config), or None.

    Refused unless ``overwrite``: the input model's own directory, and a non-empty directory alignlab did not
    write. Refused unless ``resume`` or ``overwrite``: a directory holding a previous run."""
    if config.overwrite:
        return None
    if model_path and Path(model_path).exists() and Path(model_path).resolve() == output_dir.resolve():
        return (f"output directory '{output_dir}' is the input model; choose another --output "
                "(or --set train.overwrite=true to replace the model)")
    if files := foreign_files(output_dir):
        shown = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
        return (f"output directory '{output_dir}' holds files alignlab did not write ({shown}); choose another "
                "--output or --set train.overwrite=true")
    return previous_run(output_dir, config)


def clear_previous_run(output_dir: Path) -> None:
    """Delete what marks ``output_dir`` as holding a run — checkpoints (``--resume`` would continue them),
    ``results.json`` (a finished run), model weights — so only the new run's files can be read there."""
    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    for path in [output_dir / "results.json", *output_dir.glob("*.safetensors"),
                 *output_dir.glob("*.safetensors.index.json")]:
        path.unlink(missing_ok=True)


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same_file(before: Any, after: Any) -> bool:
    """Two paths to files with the same bytes (a run directory moved or copied together with its data)."""
    import filecmp

    return (isinstance(before, str) and isinstance(after, str) and Path(before).is_file() and Path(after).is_file()
            and filecmp.cmp(before, after, shallow=False))


def resume_changes(saved: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refused, allowed) differences between a run's saved config and the one it is resumed with, each as
    ``key: old → new``.

    Example::

        >>> resume_changes({"train": {"lr": 0.1, "max_steps": 5}}, {"train": {"lr": 0.01, "max_steps": 9}})
        (['train.lr: 0.1 → 0.01'], ['train.max_steps: 5 → 9'])
    """
    old, cur = _flat(saved), _flat(new)
    refused, allowed = [], []
    for key in sorted(old.keys() | cur.keys()):
        before, after = old.get(key, "<unset>"), cur.get(key, "<unset>")
        if before == after or _same_file(before, after):
            continue
        line = f"{key}: {before} → {after}"
        grows = (key in GROW_ON_RESUME and isinstance(before, (int, float)) and isinstance(after, (int, float))
                 and (after > before or after == -1 and key == "train.max_steps"))
        (allowed if key in SAFE_ON_RESUME or grows else refused).append(line)
    return refused, allowed


def check_run_dir(config: Any, output_dir: Path) -> None:
    """Refuse, before anything is loaded or written, a run ``output_dir`` may not receive (:func:`output_problem`),
    and a ``--resume`` whose config changes what the run learns (:func:`resume_changes`)."""
    train = getattr(config, "train", None)
    if train is None:
        return
    model = getattr(getattr(config, "model", None), "name_or_path", "") or ""
    if problem := output_problem(output_dir, train, model):
        raise ConfigError(problem)
    saved_file = output_dir / "config.yaml"
    if train.resume and not train.overwrite and saved_file.exists() and is_alignlab_dir(output_dir):
        import dataclasses

        saved = yaml.safe_load(saved_file.read_text()) or {}
        refused, _ = resume_changes(saved, dataclasses.asdict(config))
        if refused:
            raise ConfigError(f"--resume with a config that changes the run in '{output_dir}' "
                              f"({'; '.join(refused)}); resume with the saved config or choose another --output")


def announce_config(config: Any, output_dir: Path) -> None:
    """Remember ``config`` to write as ``output_dir/config.yaml`` once its run starts (:func:`write_run_files`)."""
    import dataclasses

    directory = output_dir.resolve()
    for stale in [d for d in _pending if d not in directory.parents]:  # a run that failed before it started
        del _pending[stale]
    _pending[directory] = dataclasses.asdict(config)


def announced(output_dir: Path) -> bool:
    """Whether :func:`start_run <alignlab.core.run.start_run>` checked ``output_dir`` for a run still to start
    (its method may since have written its own files there, such as a reference cache)."""
    return output_dir.resolve() in _pending


def write_run_files(output_dir: Path) -> None:
    """Write ``config.yaml`` and the marker for the announced runs in ``output_dir`` and its parents (a method
    that runs stages in subdirectories starts its own run with its first stage). On resume, the changes the
    saved config allowed are logged."""
    for directory in [output_dir.resolve(), *output_dir.resolve().parents]:
        if (config := _pending.pop(directory, None)) is None:
            continue
        saved_file = directory / "config.yaml"
        if saved_file.exists() and config.get("train", {}).get("resume"):
            _, allowed = resume_changes(yaml.safe_load(saved_file.read_text()) or {}, config)
            if allowed:
                log.warning("resumed '%s' with changed settings: %s", directory, "; ".join(allowed))
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved_file, yaml.safe_dump(config, sort_keys=False))
        atomic_write_json(directory / MARKER, {"written_by": "alignlab"})
