"""The HTML report: self-contained figures, and smoothed training curves."""

from __future__ import annotations

import alignlab.report.html as report_html
from alignlab.report.html import Report, moving_average


def test_moving_average_is_a_trailing_mean():
    assert moving_average([2.0, 4.0, 6.0, 8.0, 10.0], 3) == [2.0, 3.0, 4.0, 6.0, 8.0]
    assert moving_average([5.0], 10) == [5.0]


def test_line_plot_smooths_only_when_asked_and_the_curve_is_long_enough(count_calls, tmp_path):
    calls = count_calls(report_html, "moving_average")
    points = [(step, float(step % 3)) for step in range(30)]
    report = Report("curves")
    report.line_plot("raw", {"loss": points})
    report.line_plot("short", {"loss": points[:5]}, smooth=10)
    assert calls == []
    report.line_plot("smoothed", {"loss": points, "other": points}, smooth=10)
    assert len(calls) == 2  # one moving average per series
    page = report.write(tmp_path / "report.html").read_text()
    assert page.count("<img") == 3 and "data:image/png;base64," in page and "http" not in page.split("<body>")[1]
