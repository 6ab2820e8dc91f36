"""The training loop: exact resume, NaN guard, loss normalisation, output-dir safety, schedules."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tokenizer, sft_rows

from alignlab.core.checkpoint import checkpoint_dirs
from alignlab.core.metrics import read_metrics
from alignlab.core.models import tiny_llama
from alignlab.core.records import user
from alignlab.core.tokenize import CompletionCollator, encode_completion
from alignlab.core.trainer import TrainConfig, lr_lambda, train
from alignlab.errors import ConfigError, TrainingError
from alignlab.outer.sft import SFTObjective


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = build_tokenizer(tmp_path_factory.mktemp("tok"))
    rows = sft_rows(24)
    examples = [encode_completion(tok, [user(r["messages"][0]["content"])], r["messages"][1]["content"]) for r in rows]
    return tok, examples


def fresh_model(tok, seed=0):
    return tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, seed=seed, pad_token_id=tok.pad_token_id)


def run(tok, examples, out, **kw):
    cfg = TrainConfig(**{"max_steps": 6, "batch_size": 4, "lr": 1e-2, "progress": False, "mixed_precision": "no",
                         "save_every": 3, **kw})
    model = fresh_model(tok)
    return model, train(model, SFTObjective(), examples, CompletionCollator(tok.pad_token_id), cfg, out)


def test_resume_continues_exactly(setup, tmp_path):
    tok, examples = setup
    full_model, full = run(tok, examples, tmp_path / "full")
    # Simulate a crash after step 3: a run that stops at 3, then a resumed run to 6.
    run(tok, examples, tmp_path / "cut", max_steps=6, save_every=3)
    cut = tmp_path / "cut"
    for ckpt in checkpoint_dirs(cut / "checkpoints")[1:]:  # keep only step 3, as if killed before step 6
        import shutil
        shutil.rmtree(ckpt)
    lines = [r for r in read_metrics(cut / "metrics.jsonl") if r["step"] <= 4]  # a partly-written tail too
    (cut / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    resumed_model, _ = run(tok, examples, cut, resume=True)
    losses_full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    losses_resumed = [r["loss"] for r in read_metrics(cut / "metrics.jsonl")]
    assert [r["step"] for r in read_metrics(cut / "metrics.jsonl")] == list(range(1, 7))
    assert losses_resumed == pytest.approx(losses_full, rel=1e-6, abs=1e-7)
    for p_full, p_res in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p_full, p_res, rtol=1e-5, atol=1e-6)


def test_refuses_to_overwrite_a_previous_run(setup, tmp_path):
    tok, examples = setup
    run(tok, examples, tmp_path, max_steps=1)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(tok, examples, tmp_path, max_steps=1)


class ExplodingObjective(SFTObjective):
    """Finite for the first calls, then NaN, as when training diverges."""

    def __init__(self, finite_calls):
        self.calls, self.finite_calls = 0, finite_calls

    def __call__(self, model, batch):
        out = super().__call__(model, batch)
        self.calls += 1
        if self.calls > self.finite_calls:
            out.loss_sum = out.loss_sum * float("nan")
        return out


def test_nan_guard_stops_and_keeps_last_good_checkpoint(setup, tmp_path):
    tok, examples = setup
    model = fresh_model(tok)
    cfg = TrainConfig(max_steps=10, batch_size=4, lr=1e-2, progress=False, mixed_precision="no", save_every=2)
    with pytest.raises(TrainingError, match=r"step 4: loss is nan.*step-00000002"):
        train(model, ExplodingObjective(finite_calls=3), examples, CompletionCollator(tok.pad_token_id), cfg, tmp_path)
    kept = checkpoint_dirs(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["step-00000002"]
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step never updated the weights


def test_accumulation_matches_one_big_batch(setup, tmp_path):
    """Σ loss / Σ tokens over the step: 2×2 accumulation equals one batch of 4 (token-weighted)."""
    tok, examples = setup
    common = {"max_steps": 2, "optimizer": "sgd", "max_grad_norm": 0.0, "group_by_length": False}
    big, _ = run(tok, examples, tmp_path / "big", batch_size=4, grad_accum=1, **common)
    acc, _ = run(tok, examples, tmp_path / "acc", batch_size=2, grad_accum=2, **common)
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_zero_lr_leaves_model_unchanged_and_metrics_logged(setup, tmp_path):
    tok, examples = setup
    model, result = run(tok, examples, tmp_path, lr=0.0, max_steps=2, eval_every=1)
    for p, q in zip(model.parameters(), fresh_model(tok).parameters()):
        torch.testing.assert_close(p, q)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "nll", "token_accuracy"} <= set(rows[0])


def test_schedules():
    cfg = TrainConfig(warmup_steps=2, scheduler="linear")
    f = lr_lambda(cfg, 10)
    assert f(0) < f(1) < f(2) == pytest.approx(1.0)
    assert f(9) < f(5) < f(2)
    cos = lr_lambda(TrainConfig(scheduler="cosine"), 10)
    assert cos(0) == pytest.approx(1.0) and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)


def test_bad_train_config():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_periodic_evaluation_is_independent_of_logging(setup, tmp_path):
    tok, examples = setup
    model = fresh_model(tok)
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, progress=False, mixed_precision="no", log_every=3,
                      eval_every=2)
    train(model, SFTObjective(), examples, CompletionCollator(tok.pad_token_id), cfg, tmp_path,
          eval_examples=examples[:8])
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 4]  # every 2 steps, and the final one
    assert [r["step"] for r in rows if "loss" in r] == [2, 3, 4]


def test_trains_in_fp32_after_another_library_set_accelerate_to_bf16(setup, tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    tok, examples = setup
    _, clean = run(tok, examples, tmp_path / "clean")
    AcceleratorState._reset_state(True)
    try:
        Accelerator(mixed_precision="bf16", cpu=True)  # what TRL's trainers do first in a shared process
        _, after = run(tok, examples, tmp_path / "after_bf16")  # raised "already initialized" before
    finally:
        AcceleratorState._reset_state(True)
    losses = [r["loss"] for r in read_metrics(tmp_path / "clean" / "metrics.jsonl")]
    # identical to the clean fp32 run: accelerate's bf16 autocast never wrapped our forward
    assert [r["loss"] for r in read_metrics(tmp_path / "after_bf16" / "metrics.jsonl")] == pytest.approx(losses, rel=1e-6)


def test_overwrite_clears_the_previous_run_so_a_crash_cannot_mix_them(setup, tmp_path):
    tok, examples = setup
    run(tok, examples, tmp_path, max_steps=6, save_every=3)  # checkpoints at steps 3 and 6
    for name in ("results.json", "model.safetensors"):  # what a finished run leaves beside them
        (tmp_path / name).write_text("old run")
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, progress=False, mixed_precision="no", save_every=2,
                      overwrite=True)
    with pytest.raises(TrainingError):  # the new run diverges at step 3, after its checkpoint at step 2
        train(fresh_model(tok), ExplodingObjective(finite_calls=2), examples, CompletionCollator(tok.pad_token_id),
              cfg, tmp_path)
    assert [p.name for p in checkpoint_dirs(tmp_path / "checkpoints")] == ["step-00000002"]  # none of the old
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "model.safetensors").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


FREE_AND_REUSE = """
import resource, torch
from alignlab.core.trainer import keep_freed_memory

def faults_of_a_fresh_block():  # a 64 MiB tensor allocated, filled and freed: the page faults it took
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(2**24)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_fresh_block()
default = faults_of_a_fresh_block()
applies = keep_freed_memory()
faults_of_a_fresh_block()  # the heap grows once
print(default, faults_of_a_fresh_block(), applies)
"""


def test_training_reuses_freed_memory_without_page_faults():
    """After keep_freed_memory a large block freed and allocated again costs no page faults (glibc's default
    maps it anew, one fault per page). In a subprocess: the setting lasts for the whole process."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FREE_AND_REUSE], capture_output=True, text=True, check=True).stdout
    default, kept, applies = out.split()
    if applies != "True":
        pytest.skip("not glibc: malloc's settings are left alone")
    assert int(default) >= 2**24 * 4 // 4096 * 0.9  # about one fault per 4 KiB page of the block
    assert int(kept) < 100


def test_keep_freed_memory_can_be_turned_off():
    """ALIGNLAB_KEEP_FREED_MEMORY=0 leaves malloc's defaults: freed blocks are mapped anew (faults come back)."""
    import os
    import subprocess
    import sys

    env = os.environ | {"ALIGNLAB_KEEP_FREED_MEMORY": "0"}
    out = subprocess.run([sys.executable, "-c", FREE_AND_REUSE], capture_output=True, text=True, check=True,
                         env=env).stdout
    default, again, applies = out.split()
    assert applies == "False"
    assert int(again) >= int(default) * 0.9  # no reuse: about as many faults as before
