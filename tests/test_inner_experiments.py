"""The inner-alignment experiments from their command: results files, intervals and refusals."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from alignlab.cli import main
from alignlab.inner.cli import EXPERIMENTS
from alignlab.inner.experiments.common import interval95, summary


def test_interval_is_the_student_t_interval():
    values = [0.2, 0.4, 0.9, 0.5]
    mean, half = interval95(values)
    low, high = stats.t.interval(0.95, 3, loc=mean, scale=stats.sem(values))
    assert mean == pytest.approx(0.5) and half == pytest.approx((high - low) / 2)
    assert summary([0.3])["ci95"] == 0.0


def test_list_names_every_experiment(capsys):
    assert main(["inner", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_an_experiment_runs_from_its_command(tmp_path, capsys):
    out = tmp_path / "gm"
    code = main(["inner", "run", "goal_misgeneralisation", "--seeds", "2", "--output", str(out), "--set",
                 "agent.total_steps=300", "--set", "eval_episodes=64", "--set", "random_coin_shares=[0.0,1.0]",
                 "--set", "progress=false"])
    assert code == 0
    record = json.loads((out / "results.json").read_text())
    results = record["results"]
    assert record["seed"] == 0 and record["config"]["seeds"] == 2 and record["command"]
    assert results["shares"] == [0.0, 1.0] and len(results["runs"]) == 4
    for key in ("test_end_rate", "test_coin_rate"):
        for cell, share in zip(results[key], results["shares"]):
            rows = [r[key] for r in results["runs"] if r["share"] == share]
            assert cell["values"] == rows and cell["mean"] == pytest.approx(sum(rows) / 2)
    assert (out / "figure.png").stat().st_size > 0 and "<table>" in (out / "report.html").read_text()
    assert "end rate" in capsys.readouterr().out


def test_a_foreign_output_directory_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["inner", "run", "side_channel", "--output", str(tmp_path), "--seeds", "1"]) == 2
    assert "alignlab did not write (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_bad_agent_spec_is_a_one_line_error(tmp_path, capsys):
    assert main(["inner", "run", "unidentifiability", "--output", str(tmp_path / "u"), "--set",
                 'agents=["mlp"]']) == 2
    assert "expected POLICY:HIDDEN" in capsys.readouterr().err
