"""Where a result came from: the command, the commit, the seed and the machine, written beside the numbers.

Every experiment, benchmark and bench writes its results through :func:`write_result`, so each JSON file the
docs' tables and figures are generated from (``docs/results/``, ``benchmarks/results/``) says how to make it
again and on what hardware it was made.

Example::

    >>> import tempfile, json
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "r.json"
    >>> _ = write_result(path, {"accuracy": 0.5}, seed=3, command=["alignlab", "demo"])
    >>> record = json.loads(path.read_text())
    >>> record["results"]["accuracy"], record["seed"], record["command"]
    (0.5, 3, ['alignlab', 'demo'])
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from alignlab.core.io import atomic_write_json

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The command line of the running alignlab command: set by ``alignlab.cli.main`` (which may be called in-process
# with its own argv, e.g. from a test or a notebook, where sys.argv is the host's); None = sys.argv.
command_line: list[str] | None = None
# Versions worth knowing when a number moves between machines.
PACKAGES = ("torch", "transformers", "accelerate", "peft", "trl", "lm-eval", "transformer-lens")


def git_commit(where: Path = PACKAGE_DIR) -> str | None:
    """HEAD's hash of the checkout holding ``where``, with "+dirty" when tracked files have changed or the
    package holds Python files git does not track (code the commit does not contain); None outside a git
    checkout, e.g. an installed wheel."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                 capture_output=True, text=True, check=True)
        untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", "*.py"], cwd=PACKAGE_DIR,
                                   capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if changed.stdout.strip() or untracked.stdout.strip() else "")


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The CPU (model, PyTorch's SIMD capability, native bf16), core and thread counts, and library versions."""
    import torch  # here, not at the top: the CLI imports this module before it knows the command

    from alignlab.core.precision import cpu_info

    info = cpu_info()
    return {"cpu": info.model, "capability": info.capability, "native_bf16": info.native_bf16,
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            **{f"{package}_version": package_version(package) for package in PACKAGES}}


def provenance(*, seed: int | list[int] | None, command: list[str] | None = None) -> dict[str, Any]:
    """The header of a result file: command line (default: the running alignlab command's, else this process's),
    commit, seed, machine, time."""
    if command is None:
        command = command_line if command_line is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"command": command,
            "commit": git_commit(), "seed": seed, "machine": machine(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_result(path: str | Path, results: dict[str, Any], *, seed: int | list[int] | None, config: Any = None,
                 command: list[str] | None = None, **extra: Any) -> Path:
    """Atomically write ``{provenance..., "config": ..., "results": results, **extra}`` as JSON to ``path``.

    ``config`` may be a dataclass (written with :func:`dataclasses.asdict`) or a plain dict.
    """
    path = Path(path)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    record = {**provenance(seed=seed, command=command), "config": config, "results": results, **extra}
    atomic_write_json(path, record)
    return path
