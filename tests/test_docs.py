"""The documentation site builds in strict mode (a broken link, anchor or API reference fails), its CLI
reference covers every training method, and the results tables equal what their JSON files give."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.xdist_group("docs")
def test_docs_build_strict(tmp_path: Path) -> None:
    from alignlab.registry import methods

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for name in methods():
        assert f'id="train-{name}"' in cli, name
    assert "train.lr" in cli and "alignlab.evaluate.run.EvalConfig" in cli
    assert "alignlab.core.generation" in (tmp_path / "site" / "api" / "core" / "index.html").read_text()


def _gen_results():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_results", ROOT / "docs" / "gen_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_results_tables_match_their_json() -> None:
    """README.md and docs/benchmarks.md hold exactly the tables `python docs/gen_results.py` makes."""
    assert _gen_results().stale_files() == [], "run: python docs/gen_results.py"


def test_results_tables_follow_the_result_files(tmp_path: Path) -> None:
    """A speed result's ratio reaches both tables, a changed number makes them stale, and a target is judged."""
    gen = _gen_results()
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    for relative in ("README.md", "docs/benchmarks.md"):
        (tmp_path / relative).write_text(f"intro\n{gen.BEGIN}\n{gen.END}\noutro\n")
    record = {"benchmark": "dpo_vs_trl", "command": ["python", "dpo_vs_trl.py"], "commit": "abcdef0123456789",
              "seed": 0, "precision": {"both_sides": "no", "reason": "test"},
              "machine": {"cpu": "Test CPU", "capability": "AVX2", "native_bf16": False, "threads": 1, "cpu_count": 2},
              "ratios": {"whole_run_tokens_per_s": 1.234, "peak_rss": 1.5}}
    (results / "dpo_vs_trl.json").write_text(json.dumps(record))
    assert gen.stale_files(tmp_path, results, write=True) == ["README.md", "docs/benchmarks.md"]
    readme, page = (tmp_path / "README.md").read_text(), (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "**1.23×**" in readme and ">= 1.5× **not met**" in readme and readme.endswith("outro\n")
    assert "peak_rss: **1.50×**" in page and "<= 1× **not met**" in page and "abcdef0123" in page
    assert gen.stale_files(tmp_path, results) == []
    record["ratios"]["whole_run_tokens_per_s"] = 1.6
    (results / "dpo_vs_trl.json").write_text(json.dumps(record))
    assert gen.stale_files(tmp_path, results) == ["README.md", "docs/benchmarks.md"]
    gen.stale_files(tmp_path, results, write=True)
    assert ">= 1.5× met" in (tmp_path / "README.md").read_text()


def test_named_blocks_come_from_their_area_renderer(tmp_path: Path) -> None:
    """A page's named block is rendered by the docs/tables module that defines it, and drawn figures are written;
    a block no renderer defines is an error naming the page."""
    gen = _gen_results()
    (tmp_path / "docs" / "tables").mkdir(parents=True)
    for relative in ("README.md", "docs/benchmarks.md"):
        (tmp_path / relative).write_text(f"{gen.BEGIN}\n{gen.END}\n")
    gen.stale_files(tmp_path, tmp_path / "none", write=True)  # the speed tables, from no result files
    (tmp_path / "docs" / "tables" / "area.py").write_text(
        "from pathlib import Path\n"
        "BLOCKS = {'area-table': lambda: Path(__file__).with_name('n.txt').read_text()}\n"
        "FIGURES = {'docs/fig.txt': lambda path: path.write_text('drawn')}\n")
    (tmp_path / "docs" / "tables" / "n.txt").write_text("| n |\n|---|\n| 1 |")
    page = tmp_path / "docs" / "area.md"
    page.write_text("a\n<!-- results:begin area-table -->\nold\n<!-- results:end area-table -->\nb\n")
    assert gen.stale_files(tmp_path, tmp_path / "none") == ["docs/area.md"]
    gen.stale_files(tmp_path, tmp_path / "none", write=True)
    assert page.read_text() == "a\n<!-- results:begin area-table -->\n| n |\n|---|\n| 1 |\n<!-- results:end area-table -->\nb\n"
    assert (tmp_path / "docs" / "fig.txt").read_text() == "drawn"
    assert gen.stale_files(tmp_path, tmp_path / "none") == []
    page.write_text("<!-- results:begin unknown -->\n<!-- results:end unknown -->\n")
    with pytest.raises(SystemExit, match="docs/area.md: no renderer defines block 'unknown'"):
        gen.stale_files(tmp_path, tmp_path / "none")


def test_contributing_worked_example_registers_a_loss(monkeypatch) -> None:
    """The code block of docs/contributing.md's worked example, run as written inside alignlab.outer.losses,
    declares a pairwise loss that is then a method of `alignlab train` with a reference (kl_anchored)."""
    import doctest
    import re

    import alignlab.outer.losses as L
    from alignlab.registry import get_method_spec, methods

    monkeypatch.setattr(L, "LOSS_SPECS", dict(L.LOSS_SPECS))
    monkeypatch.setattr(L, "LOSSES", dict(L.LOSSES))
    page = (ROOT / "docs" / "contributing.md").read_text()
    section = page.split("### Worked example: adding a pairwise loss", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = dict(vars(L))
    exec(code, namespace)
    spec = L.LOSS_SPECS["hinge_margin"]
    assert (spec.data, spec.reference_free, spec.kl_anchored) == ("pair", False, True)
    assert "hinge_margin" in methods("offline", data="pair")
    assert get_method_spec("hinge_margin").defaults["loss"] == "hinge_margin"
    # the example in its docstring holds
    test = doctest.DocTestFinder().find(namespace["hinge_margin"], globs=namespace)[0]
    result = doctest.DocTestRunner().run(test)
    assert result.attempted > 0 and result.failed == 0
