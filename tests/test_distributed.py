"""2 CPU processes (gloo) under `accelerate launch` give the same gradient as 1 process, same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "distributed_sft.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(out: Path, processes: int, per_device_batch: int) -> dict[str, torch.Tensor]:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # On a machine without GPUs, `--multi_gpu` starts N CPU processes on gloo (MULTI_CPU); `--cpu` with
    # --num_processes 2 would silently start just one.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(SCRIPT), str(out), str(per_device_batch), str(processes)]
    if processes == 1:
        cmd = [sys.executable, str(SCRIPT), str(out), str(per_device_batch), "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(str(out / "grads.safetensors"))


@pytest.mark.xdist_group("distributed")
def test_two_processes_match_one(tmp_path):
    one = launch(tmp_path / "one", processes=1, per_device_batch=4)
    two = launch(tmp_path / "two", processes=2, per_device_batch=2)
    assert one.keys() == two.keys()
    assert any(g.abs().max() > 0 for g in one.values())  # a real gradient, not all zeros
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
