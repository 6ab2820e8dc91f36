"""``lm_eval --model alignlab`` with lm-eval's own command line, once alignlab is installed.

The install's ``alignlab_lm_eval_hook.pth`` (see setup.py and alignlab_lm_eval_hook.py) is what makes it work, so
the test installs this checkout for real — ``pip install --editable``, as ``make`` does — into a throwaway venv
that sees the running environment's packages, then:

- a fresh interpreter there has run the hook but imported none of alignlab, torch or lm-eval;
- lm-eval's console script and ``python -m lm_eval`` run ``--model alignlab`` on a local task given by
  ``--include_path`` and write the same results as ``simple_evaluate(model=HarnessLM(...))`` in this process;
- without the install's ``.pth`` (the hook absent) lm-eval has no ``alignlab`` model, so the hook is what is tested.

Where the running environment itself was installed with the hook (``make install`` after this change), its
own ``lm_eval`` executable is run too.
"""

import ast
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
from conftest import CORPUS  # noqa: E402

from alignlab.evaluate.fixtures import build_tiny_lm  # noqa: E402
from alignlab.evaluate.harness import HarnessLM  # noqa: E402
from alignlab.evaluate.tasks import get_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the .pth line setup.py writes (read, not imported: importing setup.py would run setup())
PTH_LINE = next(ast.literal_eval(node.value) for node in ast.parse((ROOT / "setup.py").read_text()).body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PTH_LINE")
TASK = "moral_local"
LIMIT = 6


def _env() -> dict[str, str]:
    """No PYTHONPATH: alignlab must come from the install, as it does for a user."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """What a build of alignlab reads, copied (so builds leave nothing in the checkout)."""
    source = tmp_path_factory.mktemp("hook-src")
    for name in ("pyproject.toml", "setup.py", "README.md", "alignlab_lm_eval_hook.py"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "alignlab", source / "alignlab", ignore=shutil.ignore_patterns("__pycache__"))
    return source


@pytest.fixture(scope="module")
def venv(tmp_path_factory, source) -> Path:
    """A venv layered on the running environment (its site-packages as a path line, so that environment's own
    ``.pth`` files are not run) with this checkout installed editable, exactly as the Makefile installs it."""
    tmp = tmp_path_factory.mktemp("hook-venv")
    env_dir = tmp / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "running_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--editable", str(source)], capture_output=True, text=True, env=_env())
    assert install.returncode == 0, install.stderr[-2000:]
    assert Path(purelib, "alignlab_lm_eval_hook.pth").read_text() == PTH_LINE
    return python


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model and a local multiple-choice task (a YAML over a jsonl of BIG-bench moral permissibility)."""
    tmp = tmp_path_factory.mktemp("hook-task")
    model = build_tiny_lm(tmp / "model", CORPUS * 3, vocab_size=300, hidden_size=32, layers=1)
    docs = get_task("bigbench_moral_permissibility").load_rows(limit=LIMIT)[0]
    (tmp / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / f"{TASK}.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {tmp / 'docs.jsonl'}}}}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{inputs}}'\ndoc_to_choice: '{{multiple_choice_targets}}'\n"
        "doc_to_target: '{{gold}}'\nmetric_list:\n  - metric: acc\n")
    return Path(model), tmp / "tasks"


@pytest.fixture(scope="module")
def in_process(task) -> dict:
    """The reference: lm-eval's simple_evaluate on HarnessLM built here."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model, tasks = task
    return simple_evaluate(model=HarnessLM(pretrained=str(model), batch_size=4), tasks=[TASK],
                           task_manager=TaskManager(include_path=str(tasks)), log_samples=True,
                           bootstrap_iters=0)


def _cli(command: list, task, out: Path) -> subprocess.CompletedProcess:
    model, tasks = task
    return subprocess.run(
        [*command, "--model", "alignlab", "--model_args", f"pretrained={model}", "--batch_size", "4", "--device", "cpu",
         "--tasks", TASK,
         "--include_path", str(tasks), "--log_samples", "--output_path", str(out)],
        capture_output=True, text=True, env=_env(), timeout=300, cwd=out.parent)


def _assert_same(out: Path, reference: dict) -> None:
    (results_file,) = out.rglob("results_*.json")
    (samples_file,) = out.rglob(f"samples_{TASK}_*.jsonl")
    assert json.loads(results_file.read_text())["results"][TASK]["acc,none"] == reference["results"][TASK]["acc,none"]
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    ref = sorted(reference["samples"][TASK], key=lambda s: s["doc_id"])
    assert len(samples) == len(ref) == LIMIT
    for got, want in zip(samples, ref):
        # one float32 model, one code path, one batch size: the same log-likelihoods (JSON keeps every digit)
        assert [float(r[0][0]) for r in got["resps"]] == pytest.approx([r[0][0] for r in want["resps"]], abs=1e-6)


def test_a_wheel_puts_the_hook_and_its_pth_in_site_packages(source, tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path), str(source)], capture_output=True, text=True, env=_env())
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("alignlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        # at the wheel's root (purelib = site-packages), and in RECORD so that uninstalling removes it
        assert archive.read("alignlab_lm_eval_hook.pth").decode() == PTH_LINE
    assert "alignlab_lm_eval_hook.py" in names and "alignlab/evaluate/harness.py" in names
    assert "alignlab_lm_eval_hook.pth," in record


def test_start_up_runs_the_hook_and_imports_nothing_heavy(venv):
    probe = ("import sys; print(sorted(m for m in ('alignlab', 'torch', 'lm_eval', 'transformers') "
             "if m in sys.modules), 'alignlab_lm_eval_hook' in sys.modules)")
    out = subprocess.run([venv, "-c", probe], capture_output=True, text=True, env=_env(), check=True).stdout
    assert out.split() == ["[]", "True"]


@pytest.mark.parametrize("how", ["console script", "python -m lm_eval"])
def test_lm_eval_command_line_runs_the_alignlab_model(venv, task, in_process, how, tmp_path):
    # the console script is the running environment's own `lm_eval` file, run by the venv's interpreter
    script = shutil.which("lm_eval", path=str(Path(sys.executable).parent)) or pytest.skip("no lm_eval script")
    command = [venv, script] if how == "console script" else [venv, "-m", "lm_eval"]
    proc = _cli(command, task, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(tmp_path / "out", in_process)


def test_the_pth_line_is_silent_when_the_hook_module_is_gone(tmp_path):
    """A moved or deleted editable checkout must not print a traceback at every Python start-up."""
    (tmp_path / "alignlab_lm_eval_hook.pth").write_text(PTH_LINE)
    probe = f"import site; site.addsitedir({str(tmp_path)!r}); print('started')"
    run = subprocess.run([sys._base_executable, "-S", "-c", probe], capture_output=True, text=True, env=_env())
    assert run.returncode == 0 and run.stdout.strip() == "started" and not run.stderr


def test_a_registry_of_another_layout_does_not_break_lm_eval(monkeypatch):
    """If lm-eval's registry has no ``model_registry`` (another release), the hook leaves lm-eval importable."""
    import types

    import alignlab_lm_eval_hook as hook

    monkeypatch.setitem(sys.modules, "lm_eval.api.registry", types.ModuleType("lm_eval.api.registry"))
    assert hook.register_model_placeholder() is None  # no ImportError out of the hook


def test_without_the_hook_lm_eval_cannot_find_the_model():
    """The same environment without the install's .pth (``-S``: no site processing): lm-eval has no ``alignlab``."""
    probe = ("import sys; sys.path[1:1] = sys.argv[1].split(':'); from lm_eval.api.registry import get_model\n"
             "try: get_model('alignlab')\nexcept ValueError as err: print(err)")
    out = subprocess.run([sys._base_executable, "-S", "-c", probe, ":".join(site.getsitepackages())],
                         capture_output=True, text=True, env=_env(), check=True).stdout
    assert "no model for this name found" in out and "hf" in out


def test_the_running_environments_lm_eval_when_installed_with_the_hook(task, in_process, tmp_path):
    purelib = Path(sysconfig.get_paths()["purelib"])
    if not (purelib / "alignlab_lm_eval_hook.pth").exists():
        pytest.skip("this environment was installed before the hook existed (`make install` adds it)")
    proc = _cli([Path(sys.executable).parent / "lm_eval"], task, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(tmp_path / "out", in_process)
