"""2 CPU processes (gloo) under `accelerate launch` make the same update as 1 process with the same global batch:
the offline loop (SFT, with and without accumulation) and the online one (REINFORCE and PPO with a scripted
reward); and a 2-process online run resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from safetensors.torch import load_file

from alignlab.core.metrics import read_metrics

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(script: str, out: Path, processes: int, *args: str) -> None:
    out.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # On a machine without GPUs, `--multi_gpu` starts N CPU processes on gloo (MULTI_CPU); `--cpu` with
    # --num_processes 2 would silently start just one.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(HERE / script), str(out), *args]
    if processes == 1:
        cmd = [sys.executable, str(HERE / script), str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_same_gradients(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor]) -> None:
    """The gradient (one SGD step at lr 1) of 2 processes against 1: the same sums in another order."""
    assert one.keys() == two.keys()
    assert any(g.abs().max() > 0 for g in one.values())  # a real gradient, not all zeros
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.xdist_group("distributed")
def test_two_processes_match_one(tmp_path):
    launch("distributed_sft.py", tmp_path / "one", 1, "4", "1", "1")
    one = load_file(str(tmp_path / "one" / "grads.safetensors"))
    # 2 processes × batch 2, and 2 processes × batch 1 × 2 accumulated micro-batches (DDP's no_sync on the first)
    for name, batch, accumulate in (("two", "2", "1"), ("two_accumulating", "1", "2")):
        launch("distributed_sft.py", tmp_path / name, 2, batch, "2", accumulate)
        assert_same_gradients(one, load_file(str(tmp_path / name / "grads.safetensors")))


QUESTIONS = ["Hi", "What is the capital of Zorbia?", "Reverse cat.", "Hello!", "Two plus two?", "Thanks!", "Bye now.",
             "Why?"]


def online_dir(path: Path) -> Path:
    path.mkdir()
    write_jsonl(path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])
    return path


@pytest.mark.xdist_group("distributed")
@pytest.mark.parametrize("method", ["reinforce", "ppo"])
def test_online_two_processes_match_one(method, tmp_path):
    one, two = online_dir(tmp_path / "one"), online_dir(tmp_path / "two")
    launch("distributed_online.py", one, 1, "1", "1", method)
    launch("distributed_online.py", two, 2, "2", "1", method)
    # each process scored and learned from half of the step's prompts; the batch baseline (REINFORCE), whitening
    # and reward moments (PPO), the reference's KL and the token-mean loss are the whole batch's, as in one process
    assert_same_gradients(load_file(str(one / "grads.safetensors")), load_file(str(two / "grads.safetensors")))
    row_one, = read_metrics(one / "run" / "metrics.jsonl")
    row_two, = read_metrics(two / "run" / "metrics.jsonl")  # one row: written by the main process only
    for key in ("reward", "completion_length", "loss", "entropy", "grad_norm", "kl"):
        assert row_two[key] == pytest.approx(row_one[key], rel=1e-5, abs=1e-6), key
    checkpoint = two / "run" / "checkpoints" / "step-00000001"
    assert {p.name for p in checkpoint.iterdir()} >= {"model.safetensors", "rng-0.pt", "rng-1.pt"}
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == 2


@pytest.mark.xdist_group("distributed")
def test_online_two_processes_resume_exactly(tmp_path):
    full = online_dir(tmp_path / "full")
    launch("distributed_online.py", full, 2, "2", "3", "reinforce")
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "run" / "checkpoints" / "step-00000003")  # as if killed during step 3
    rows = [r for r in read_metrics(full / "run" / "metrics.jsonl") if r["step"] <= 2]
    (cut / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    launch("distributed_online.py", cut, 2, "2", "3", "reinforce", "resume")
    resumed, expected = read_metrics(cut / "run" / "metrics.jsonl"), read_metrics(full / "run" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert resumed[-1]["kl"] > 0  # the policy moved away from the reference before step 3
    for key in ("reward", "kl", "loss", "grad_norm"):
        assert resumed[-1][key] == pytest.approx(expected[-1][key], rel=1e-6), key
    a, b = load_file(str(full / "weights.safetensors")), load_file(str(cut / "weights.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7, msg=name)
