"""A self-contained HTML report: tables and matplotlib figures embedded as PNG (no external files).

Example::

    >>> from alignlab.report.html import Report
    >>> report = Report("demo")
    >>> report.table("Results", ["model", "reward"], [["base", 0.1], ["dpo", 0.9]])
    >>> report.line_plot("Loss", {"sft": [(1, 2.0), (2, 1.5)]}, xlabel="step", ylabel="loss")
    >>> html = report.render()
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignlab.core.io import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .35rem .7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { margin: 0; }
.note { color: #555; font-size: .9rem; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


class Report:
    """Collects sections in order; :meth:`render` returns the HTML, :meth:`write` saves it atomically."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self._figures: list[str] = []

    def text(self, paragraph: str, *, note: bool = False) -> None:
        self._flush()
        self.parts.append(f"<p{' class=note' if note else ''}>{html.escape(paragraph)}</p>")

    def table(self, heading: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._flush()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
        self.parts.append(f"<h2>{html.escape(heading)}</h2><table><tr>{head}</tr>{body}</table>")

    def line_plot(self, title: str, series: dict[str, Sequence[tuple[float, float]]], *, xlabel: str = "step",
                  ylabel: str = "", smooth: int = 0) -> None:
        """One figure with a line per series of (x, y) points; ``smooth > 1`` draws each series faintly and
        its trailing moving average over ``smooth`` points on top (per-batch training metrics are noisy)."""
        fig, ax = _axes()
        for name, points in series.items():
            if not points:
                continue
            xs, ys = zip(*points)
            if smooth > 1 and len(points) > smooth:
                line = ax.plot(xs, ys, alpha=0.3, linewidth=0.8)[0]
                ax.plot(xs, moving_average(ys, smooth), color=line.get_color(),
                        label=f"{name} (mean of {smooth})")
            else:
                ax.plot(xs, ys, label=name, marker="o" if len(points) < 20 else None, markersize=3)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if len(series) > 1 or smooth > 1:
            ax.legend()
        self._figures.append(_png(fig, title))

    def bar_plot(self, title: str, groups: Sequence[str], values: dict[str, Sequence[float | None]], *,
                 ylabel: str = "") -> None:
        """Grouped bars: one group per entry of ``groups``, one bar per key of ``values``."""
        fig, ax = _axes(width=7.0)
        width = 0.8 / max(1, len(values))
        for i, (name, ys) in enumerate(values.items()):
            xs = [g + i * width for g in range(len(groups))]
            ax.bar(xs, [y if y is not None else 0.0 for y in ys], width=width, label=name)
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, rotation=20)
        ax.set(title=title, ylabel=ylabel)
        ax.legend()
        self._figures.append(_png(fig, title))

    def scatter_plot(self, title: str, points: Sequence[tuple[float, float, str]], *, xlabel: str = "",
                     ylabel: str = "") -> None:
        """One figure with a labelled point per (x, y, label)."""
        fig, ax = _axes(width=7.0, height=4.5)
        for x, y, label in points:
            ax.plot([x], [y], "o", markersize=4, color="#1f77b4")
            ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        self._figures.append(_png(fig, title))

    def heatmap(self, title: str, values: Sequence[Sequence[float]], *, xlabel: str = "", ylabel: str = "",
                xticks: Sequence[str] | None = None, yticks: Sequence[str] | None = None, center: bool = False,
                colorbar: str = "") -> None:
        """A matrix as an image (rows bottom to top); ``center`` uses a diverging map symmetric about 0."""
        import numpy as np

        matrix = np.asarray(values, dtype=float)
        fig, ax = _axes(width=min(11.0, 3.0 + 0.35 * matrix.shape[1]), height=min(8.0, 2.0 + 0.35 * matrix.shape[0]))
        ax.grid(False)
        bound = float(np.nanmax(np.abs(matrix))) or 1.0
        image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="RdBu_r" if center else "viridis",
                          vmin=-bound if center else None, vmax=bound if center else None)
        if xticks is not None:
            ax.set_xticks(range(len(xticks)), xticks, rotation=60, ha="right", fontsize=7)
        if yticks is not None:
            ax.set_yticks(range(len(yticks)), yticks, fontsize=7)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        fig.colorbar(image, ax=ax, label=colorbar)
        self._figures.append(_png(fig, title))

    def figure(self, fig, title: str) -> None:
        """Embed a matplotlib figure made elsewhere (it is closed)."""
        self._figures.append(_png(fig, title))

    def render(self) -> str:
        self._flush()
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}"
                "</body></html>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.render())
        return path

    def _flush(self) -> None:
        if self._figures:
            self.parts.append("<div class=figures>" + "".join(self._figures) + "</div>")
            self._figures = []


def _axes(width: float = 5.3, height: float = 3.6):  # two figures side by side in the 1100px page
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(alpha=0.3)
    return fig, ax


def _png(fig, title: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'></figure>"


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start), same length as ``values``.

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def metric_curve(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) points of ``key`` in metrics.jsonl rows."""
    return [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
