"""What a run leaves on disk when it is refused, fails, resumes, or meets a damaged checkpoint (issue 14)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import sft_rows, write_jsonl

from alignlab.cli import main
from alignlab.core.checkpoint import checkpoint_dirs
from alignlab.core.metrics import read_metrics

SFT_FAST = ["train.progress=false", "train.batch_size=4", "train.mixed_precision=no", "train.save_every=1"]
GRPO_FAST = ["train.progress=false", "generation.max_new_tokens=4", "group_size=2", "prompts_per_step=2",
             "minibatch_size=4", "train.save_every=1", "reward.source=function"]


@pytest.fixture
def sft_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", sft_rows(16))


@pytest.fixture
def prompts(tmp_path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl",
                       [{"prompt": [{"role": "user", "content": q}]} for q in ["Hi", "Two plus two?", "Thanks!"]])


@pytest.fixture
def reward_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "rundir_rewards.py").write_text(textwrap.dedent("""
        def length(prompts, completions):
            return [len(c) / 10 for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rundir_rewards:length"


def sets(items: list[str]) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def sft(model, data, out, *extra: str, steps: int = 2) -> int:
    return main(["train", "sft", "--model", str(model), "--data", str(data), "--output", str(out),
                 "--max-steps", str(steps), *sets(SFT_FAST), *extra])


def grpo(model, data, out, reward, *extra: str, steps: int = 2) -> int:
    return main(["train", "grpo", "--model", str(model), "--data", str(data), "--output", str(out),
                 "--max-steps", str(steps), *sets(GRPO_FAST), "--set", f"reward.function={reward}", *extra])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("alignlab: error: "), err
    return err[-1]


# -- 1. nothing written before the run is known to start ------------------------------------------------------


def test_a_failed_or_refused_command_leaves_a_finished_run_untouched(tiny_model_dir, sft_data, tmp_path, capsys):
    out = tmp_path / "base"
    assert sft(tiny_model_dir, sft_data, out) == 0
    before = snapshot(out)
    bad = tmp_path / "invalid.jsonl"
    bad.write_text("{not json\n")
    assert main(["train", "dpo", "--model", str(tiny_model_dir), "--data", str(bad), "--output", str(out),
                 "--set", "train.overwrite=true", *sets(SFT_FAST)]) == 2  # fails on its data
    assert "invalid.jsonl" in error(capsys)
    assert sft(tiny_model_dir, sft_data, out, "--set", "train.lr=0.001") == 2  # refused: the directory holds a run
    assert "already holds a run" in error(capsys)
    assert snapshot(out) == before


def test_a_failed_online_command_writes_nothing(tiny_model_dir, tmp_path, reward_module, capsys):
    out = tmp_path / "grpo"
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    assert grpo(tiny_model_dir, empty, out, reward_module) == 2
    error(capsys)
    assert not out.exists() or not any(out.iterdir())


# -- 2. the input model and other people's files are never overwritten -------------------------------------


@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_output_equal_to_the_model_is_refused(method, tiny_model_dir, sft_data, prompts, reward_module, tmp_path,
                                              capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = snapshot(model)
    code = (sft(model, sft_data, model) if method == "sft" else grpo(model, prompts, model, reward_module))
    assert code == 2
    assert "is the input model" in error(capsys)
    assert snapshot(model) == before


def test_a_directory_alignlab_did_not_write_is_refused_unless_overwrite(tiny_model_dir, sft_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my: own\n")
    assert sft(tiny_model_dir, sft_data, out) == 2
    assert "did not write (config.yaml)" in error(capsys)
    assert (out / "config.yaml").read_text() == "my: own\n"
    assert sft(tiny_model_dir, sft_data, out, "--set", "train.overwrite=true") == 0
    assert (out / "alignlab-run.json").exists() and "my: own" not in (out / "config.yaml").read_text()


# -- 3. resume refuses a config that changes the run ---------------------------------------------------------


def test_resume_with_a_changed_config_is_refused_and_safe_changes_are_recorded(tiny_model_dir, sft_data, tmp_path,
                                                                              capsys, caplog):
    out = tmp_path / "run"
    assert sft(tiny_model_dir, sft_data, out) == 0
    before = snapshot(out)
    other = write_jsonl(tmp_path / "other.jsonl", sft_rows(20))  # other rows (a copy of the same rows is no change)
    assert sft(tiny_model_dir, other, out, "--resume", "--set", "train.lr=0.01") == 2
    message = error(capsys)
    assert "data.path:" in message and "train.lr: 2e-05 → 0.01" in message
    assert snapshot(out) == before
    assert sft(tiny_model_dir, sft_data, out, "--resume", steps=3) == 0  # more steps: allowed, and recorded
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 3
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert "train.max_steps: 2 → 3" in caplog.text


def test_online_resume_with_a_changed_config_is_refused(tiny_model_dir, prompts, reward_module, tmp_path, capsys):
    out = tmp_path / "grpo"
    assert grpo(tiny_model_dir, prompts, out, reward_module) == 0
    before = snapshot(out)
    assert grpo(tiny_model_dir, prompts, out, reward_module, "--resume", "--set", "beta=0.5") == 2
    assert "beta: " in error(capsys)
    assert snapshot(out) == before


# -- 5. a damaged checkpoint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt"])
@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_resume_falls_back_from_a_damaged_checkpoint(method, damaged, tiny_model_dir, sft_data, prompts,
                                                     reward_module, tmp_path, caplog):
    out = tmp_path / "run"

    def run(*extra: str, steps: int) -> int:
        if method == "sft":
            return sft(tiny_model_dir, sft_data, out, *extra, steps=steps)
        return grpo(tiny_model_dir, prompts, out, reward_module, *extra, steps=steps)

    assert run("--set", "train.save_total_limit=3", steps=2) == 0
    newest = checkpoint_dirs(out / "checkpoints")[-1]
    data = (newest / damaged).read_bytes()
    (newest / damaged).write_bytes(data[: len(data) // 2])  # truncated, as when the disk filled up
    assert run("--resume", "--set", "train.save_total_limit=3", steps=3) == 0
    assert f"checkpoint file '{newest / damaged}' cannot be loaded" in caplog.text
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # continued from step 1's checkpoint: step 2 redone, then 3


def test_resume_with_no_intact_checkpoint_is_a_one_line_error(tiny_model_dir, sft_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert sft(tiny_model_dir, sft_data, out, steps=1) == 0
    for checkpoint in checkpoint_dirs(out / "checkpoints"):
        (checkpoint / "optimizer.pt").write_bytes(b"\x00not a checkpoint")
    assert sft(tiny_model_dir, sft_data, out, "--resume", steps=2) == 2
    message = error(capsys)
    assert "no checkpoint can be loaded" in message and "optimizer.pt" in message


# -- 6. NaN settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["train.lr=nan", "train.lr=inf", "train.max_grad_norm=nan",
                                     "train.weight_decay=-inf", "train.warmup_ratio=nan", "train.num_epochs=nan"])
def test_non_finite_float_settings_are_refused(setting, tiny_model_dir, sft_data, tmp_path, capsys):
    assert main(["train", "sft", "--model", str(tiny_model_dir), "--data", str(sft_data),
                 "--output", str(tmp_path / "x"), "--set", setting]) == 2
    assert f"{setting.split('=')[0]} must be a finite number" in error(capsys)
    assert not (tmp_path / "x").exists()


# -- 4. a failed evaluation ---------------------------------------------------------------------------------------


def test_a_failed_evaluation_keeps_the_earlier_results(tmp_path, capsys):
    import torch

    from alignlab.evaluate.fixtures import build_tiny_lm

    torch.set_num_threads(1)
    model = build_tiny_lm(tmp_path / "lm", ["The cat sat on the mat.", "Hello there."] * 20, vocab_size=300,
                          hidden_size=32, layers=1)
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(model), "--output", str(out), "--limit", "2", "--tasks"]
    assert main([*argv, "crows_pairs"]) == 0
    before = (out / "results.json").read_bytes()
    missing = tmp_path / "missing_task.yaml"
    assert main([*argv, f"advbench_refusal,{missing}"]) == 2  # the second task fails after the first finished
    assert "missing_task.yaml" in error(capsys)
    assert (out / "results.json").read_bytes() == before
    partial = json.loads((out / "results.partial.json").read_text())
    assert partial["partial"] is True and list(partial["tasks"]) == ["advbench_refusal"]
    assert main([*argv, "crows_pairs"]) == 0  # a finished run replaces results.json and removes the partial file
    assert not (out / "results.partial.json").exists()
