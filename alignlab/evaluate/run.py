"""``evaluate(EvalConfig(...))``: run tasks and write ``results.json`` + per-sample JSONL.

``output_dir/results.json`` holds, per task: metric means, their standard errors (analytic, see
``stderr_method``), the sample count, per-group breakdowns (e.g. CrowS-Pairs by ``bias_type``) and
extras such as judge parse failures. ``output_dir/samples/<task>.jsonl`` holds one record per sample.
Both are written to a temp file and renamed, so an interrupted run never leaves a half-written file.
``results.json`` is written only when every task has finished: until then the tasks done so far are in
``results.partial.json`` (marked ``"partial": true``, removed on success), so a run that fails leaves an earlier
run's ``results.json`` as it was.

Example::

    >>> from alignlab.evaluate.run import EvalConfig, evaluate
    >>> config = EvalConfig(model="runs/sft", tasks=["crows_pairs"], output="runs/sft/eval", limit=100)
    >>> results = evaluate(config)                                                     # doctest: +SKIP
    >>> results["tasks"]["crows_pairs"]["metrics"]["pct_stereotype"]                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.core.io import atomic_write_json, atomic_write_text
from alignlab.core.provenance import provenance
from alignlab.evaluate.http_lm import HTTPOptions
from alignlab.evaluate.lm import LM, load_lm
from alignlab.evaluate.tasks import get_task

PARTIAL = "results.partial.json"


def _finite(value: Any) -> Any:
    """JSON has no NaN: an undefined metric is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass
class EvalConfig:
    """Run evaluation tasks (built-in names or YAML files) on a model; write results.json and per-sample JSONL."""

    model: str
    """model dir, run dir, hub name, or http[+chat|+completions]://host:port/v1[#model] for an OpenAI-compatible server"""
    tasks: list[str]
    """task names or YAML paths"""
    output: str
    """directory for results.json and samples/"""
    limit: int | None = None
    """use only the first N rows of each task (null: all)"""
    batch_size: int = 16
    """requests per forward pass (local models)"""
    judge: str | None = None
    """judge model for judge-scored tasks (path or URL)"""
    data: dict[str, str] = field(default_factory=dict)
    """data file overrides per task, {TASK: PATH}"""
    http: HTTPOptions = field(default_factory=HTTPOptions)
    """timeout, retries and concurrency for a model or judge given as a URL"""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: name at least one task")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def evaluate(config: EvalConfig, *args: Any, lm: LM | None = None, judge_lm: LM | None = None,
             **old_keywords: Any) -> dict[str, Any]:
    """Run ``config.tasks`` on ``config.model`` and write the results into ``config.output``.

    Args:
        lm: an already loaded LM to evaluate instead of loading ``config.model`` (which then only names it).
        judge_lm: likewise for ``config.judge``.

    The call before configs, ``evaluate(model, tasks, output_dir, limit=..., batch_size=..., judge=..., data=...)``,
    still works for one release, with a DeprecationWarning.
    """
    if not isinstance(config, EvalConfig):
        config, lm, judge_lm = _from_old_call(config, *args, **old_keywords)
    elif args or old_keywords:
        raise TypeError("evaluate(config, *, lm=None, judge_lm=None) takes no other arguments")
    if lm is None:
        lm = load_lm(config.model, http=config.http, batch_size=config.batch_size)
    if judge_lm is None and config.judge is not None:
        judge_lm = load_lm(config.judge, http=config.http)
    out = Path(config.output)
    results: dict[str, Any] = {
        "model": config.model,
        "limit": config.limit,
        "batch_size": config.batch_size,
        "tasks": {},
    }
    for name in config.tasks:
        task = get_task(name, data_path=config.data.get(name))
        start = time.perf_counter()
        output = task.run(lm, limit=config.limit, judge=judge_lm)
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
        # after each task, so finished work survives a crash, beside (not over) an earlier run's results.json
        atomic_write_json(out / PARTIAL, {"partial": True, **results})
    # the provenance header (command, commit, machine, time) beside the tasks, so docs can cite the run
    results = {**provenance(seed=None), **results}
    atomic_write_json(out / "results.json", results)
    (out / PARTIAL).unlink(missing_ok=True)
    return results


def _from_old_call(model: str | LM, tasks: list[str], output_dir: str | Path, *, limit: int | None = None,
                   batch_size: int = EvalConfig.batch_size, judge: str | LM | None = None, data: dict[str, str] | None = None
                   ) -> tuple[EvalConfig, LM | None, LM | None]:
    warnings.warn("evaluate(model, tasks, output_dir, ...) is deprecated: pass an EvalConfig "
                  "(evaluate(EvalConfig(model=..., tasks=[...], output=...), lm=...))", DeprecationWarning,
                  stacklevel=3)
    config = EvalConfig(model=model if isinstance(model, str) else type(model).__name__, tasks=list(tasks),
                        output=str(output_dir), limit=limit, batch_size=batch_size,
                        judge=judge if isinstance(judge, str) else None, data=dict(data or {}))
    return (config, None if isinstance(model, str) else model,
            judge if judge is not None and not isinstance(judge, str) else None)
