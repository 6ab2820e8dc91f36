"""``evaluate(model, tasks, output_dir)``: run tasks and write ``results.json`` + per-sample JSONL.

``output_dir/results.json`` holds, per task: metric means, their standard errors (analytic, see
``stderr_method``), the sample count, per-group breakdowns (e.g. CrowS-Pairs by ``bias_type``) and
extras such as judge parse failures. ``output_dir/samples/<task>.jsonl`` holds one record per sample.
Both are written to a temp file and renamed, so an interrupted run never leaves a half-written file.

Example::

    >>> from alignlab.evaluate.run import evaluate
    >>> results = evaluate("runs/sft", ["crows_pairs"], "runs/sft/eval", limit=100)   # doctest: +SKIP
    >>> results["tasks"]["crows_pairs"]["metrics"]["pct_stereotype"]                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignlab.core.io import atomic_write_json, atomic_write_text
from alignlab.evaluate.lm import LM, load_lm
from alignlab.evaluate.tasks import get_task


def _finite(value: Any) -> Any:
    """JSON has no NaN: an undefined metric is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate(
    model: str | LM,
    tasks: Sequence[str],
    output_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 16,
    judge: str | LM | None = None,
    data: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``tasks`` (names or YAML paths) on ``model`` (path, run dir, ``http://...`` URL or an LM).

    Args:
        limit: use only the first ``limit`` rows of each task.
        batch_size: requests per forward pass for a local model.
        judge: an LM (or spec) for judge-scored tasks.
        data: per-task data file overrides, ``{"hhh_alignment": "path/task.json"}``.
    """
    if isinstance(model, str) and not model.startswith(("http://", "https://")):
        lm = load_lm(model, batch_size=batch_size)
    else:
        lm = load_lm(model)
    judge_lm = load_lm(judge) if judge is not None else None
    out = Path(output_dir)
    results: dict[str, Any] = {
        "model": model if isinstance(model, str) else type(model).__name__,
        "limit": limit,
        "batch_size": batch_size,
        "tasks": {},
    }
    for name in tasks:
        task = get_task(name, data_path=(data or {}).get(name))
        start = time.perf_counter()
        output = task.run(lm, limit=limit, judge=judge_lm)
        results["tasks"][task.name] = {
            "metrics": {k: _finite(v) for k, v in output.metrics.items()},
            "stderr": {k: _finite(v) for k, v in output.stderr.items()},
            "stderr_method": output.stderr_method,
            "n": output.n,
            "groups": {g: {k: _finite(v) for k, v in vals.items()} for g, vals in output.groups.items()},
            **output.extra,
            "seconds": round(time.perf_counter() - start, 3),
        }
        lines = "".join(json.dumps(s, default=str) + "\n" for s in output.samples)
        atomic_write_text(out / "samples" / f"{task.name}.jsonl", lines)
        atomic_write_json(out / "results.json", results)  # after each task, so finished work survives a crash
    return results
