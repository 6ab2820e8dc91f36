"""What every inner-alignment experiment shares: its base config, seeds, 95% intervals and its output files.

An experiment is a function ``run(config) -> results`` over ``config.seeds`` seeds. :func:`start` checks the
output directory (refusing one holding files alignlab did not write) before anything is trained, and
:func:`finish` writes ``results.json`` (with :func:`alignlab.core.provenance.write_result`: command, commit,
seed, machine), ``figure.png`` and ``report.html`` there.

Example::

    >>> mean, half = interval95([0.5, 0.7, 0.6])
    >>> round(mean, 3), round(half, 3)   # t(0.975, 2) · s / √3
    (0.6, 0.248)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.core import rundir
from alignlab.core.provenance import write_result
from alignlab.errors import InnerError


@dataclass
class ExperimentConfig:
    """Options every inner-alignment experiment has."""

    seeds: int = 5
    """independent runs (training seeds); intervals are over these"""
    seed: int = 0
    """the first seed (runs use seed, seed + 1, ...)"""
    output: str = ""
    """run directory for results.json, figure.png and report.html (default: runs/inner/<experiment>)"""
    threads: int = 1
    """torch threads"""
    progress: bool = True
    """show progress bars"""

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise InnerError(f"seeds must be >= 1, got {self.seeds}")


def interval95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of the mean (half-width 0 for one value)."""
    from scipy import stats

    values = [float(v) for v in values]
    if len(values) < 2:
        return values[0], 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return statistics.fmean(values), float(half)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "ci95", "values"}`` of per-seed values (ci95: the interval's half-width)."""
    mean, half = interval95(values)
    return {"mean": mean, "ci95": half, "values": [float(v) for v in values]}


def seeded(agent: Any, seed: int) -> Any:
    """A copy of the agent's config with this run's seed (and no progress bar of its own)."""
    return dataclasses.replace(agent, seed=seed, progress=False)


def cell(stats: dict[str, Any]) -> str:
    """A summary as "mean ± half-width of the 95% interval".

    Example::

        >>> cell({"mean": 0.25, "ci95": 0.125})
        '0.250 ± 0.125'
    """
    return f"{stats['mean']:.3f} ± {stats['ci95']:.3f}"


def start(name: str, config: ExperimentConfig) -> Path:
    """The run directory (checked, not yet written) and torch's threads."""
    import torch

    output = Path(config.output or f"runs/inner/{name}")
    if files := rundir.foreign_files(output):
        raise InnerError(f"output directory '{output}' holds files alignlab did not write ({', '.join(files[:5])}); "
                         "choose another --output")
    torch.set_num_threads(config.threads)
    rundir.announce_config(config, output)
    rundir.write_run_files(output)  # config.yaml and the run marker: the run has started
    return output


def finish(output: Path, title: str, config: ExperimentConfig, results: dict[str, Any],
           plot: Callable[[dict[str, Any]], Any], report_sections: Callable[[Any], None]) -> Path:
    """Write results.json, figure.png (``plot(results)`` → matplotlib figure) and report.html
    (``report_sections(report)`` fills an :class:`alignlab.report.html.Report`). Returns results.json's path."""
    from alignlab.report.html import Report

    path = write_result(output / "results.json", results, seed=config.seed, config=config)
    save_figure(plot(results), output / "figure.png")
    report = Report(title)
    report_sections(report)
    report.write(output / "report.html")
    return path


def save_figure(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def axes(width: float = 5.5, height: float = 3.6):
    """A figure and its axes (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(alpha=0.3)
    return fig, ax


def bars_with_intervals(ax: Any, groups: Sequence[str], series: dict[str, Sequence[dict[str, Any]]],
                        ylabel: str) -> None:
    """Grouped bars of summary means with their 95% intervals as error bars, and each seed as a dot."""
    width = 0.8 / max(1, len(series))
    for i, (label, stats) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [s["mean"] for s in stats], width, yerr=[s["ci95"] for s in stats], capsize=3, label=label,
               alpha=0.8)
        for x, s in zip(xs, stats):
            ax.plot([x] * len(s["values"]), s["values"], ".", color="black", markersize=3, alpha=0.6)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)
