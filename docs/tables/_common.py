"""Helpers for the renderers in ``docs/tables/``: read a result file, cite where it came from, format a mean with
its standard error. A renderer never types a number; it formats what a result file holds.

Example:
    >>> mean_se([0.5, 0.7, 0.6])
    (0.6, 0.057735026918962574)
    >>> fmt(0.6, 0.0577)
    '0.600 ± 0.058'
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def load(relative: str) -> dict[str, Any]:
    """The record of ``docs/results/<relative>`` (a missing file is an error naming it and how to make it)."""
    path = RESULTS / relative
    if not path.exists():
        raise SystemExit(f"gen_results: {path.relative_to(ROOT)} is missing: run the command its page names")
    return json.loads(path.read_text())


def command(record: dict[str, Any]) -> str:
    value = record.get("command", "")
    return " ".join(value) if isinstance(value, list) else str(value)


def commit(record: dict[str, Any]) -> str:
    value = record.get("commit") or "unknown"
    return value[:10] + ("+dirty" if value.endswith("+dirty") else "")


def machine(record: dict[str, Any], threads_of: str = "") -> str:
    info = record.get("machine", {})
    cpu = info.get("cpu") or info.get("platform", "?")
    native = {True: ", native bf16", False: ", no native bf16"}.get(info.get("native_bf16"), "")
    cores = info.get("cpu_count", info.get("cpus", "?"))
    return f"{cpu} ({info.get('capability', info.get('device', '?'))}{native}), {cores} cores, " \
           f"{info.get('threads', '?')} thread(s){threads_of}"


def cite(relative: str) -> str:
    """One line saying which file, command, commit, seed and machine a table comes from."""
    record = load(relative)
    seed = record.get("seed")
    seeds = f"seeds {', '.join(map(str, seed))}" if isinstance(seed, list) else f"seed {seed}"
    return (f"*From `docs/results/{relative}`: `{cell(command(record))}` at commit `{commit(record)}`, "
            f"{seeds}, on {cell(machine(record))}.*")


def cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def fmt(mean: float, se: float | None = None, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" if se is None else f"{mean:.{digits}f} ± {se:.{digits}f}"
