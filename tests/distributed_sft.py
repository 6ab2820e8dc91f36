"""Run by test_distributed.py under `accelerate launch` (2 CPU processes, gloo) and in one process.

    python distributed_sft.py OUT PER_DEVICE_BATCH PROCESSES GRAD_ACCUM

One SGD step with lr=1 makes (θ_before − θ_after) the gradient itself, so comparing the weights
after the step compares the gradients of the real training loop.
"""

import sys
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import build_tokenizer, sft_rows  # noqa: E402

from alignlab.core.models import tiny_llama  # noqa: E402
from alignlab.core.records import user  # noqa: E402
from alignlab.core.tokenize import CompletionCollator, encode_completion  # noqa: E402
from alignlab.core.trainer import TrainConfig, train  # noqa: E402
from alignlab.outer.sft import SFTObjective  # noqa: E402

out, per_device_batch, grad_accum = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
state = PartialState(cpu=True)
torch.set_num_threads(1)
tok = build_tokenizer(out / f"tok-{state.process_index}")
rows = sft_rows(8)
# Different lengths per example, so a per-process mean would NOT equal the global token mean.
examples = [encode_completion(tok, [user(r["messages"][0]["content"] * (1 + i % 3))], r["messages"][1]["content"])
            for i, r in enumerate(rows)]
model = tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, seed=0, pad_token_id=tok.pad_token_id)
before = {k: v.clone() for k, v in model.state_dict().items()}
cfg = TrainConfig(max_steps=1, batch_size=per_device_batch, grad_accum=grad_accum, lr=1.0, optimizer="sgd", max_grad_norm=0.0,
                  mixed_precision="no", progress=False, group_by_length=False)
train(model, SFTObjective(), examples, CompletionCollator(tok.pad_token_id), cfg, out / "run")
assert state.num_processes == int(sys.argv[3])
if state.is_main_process:
    after = {k: v.detach() for k, v in model.state_dict().items()}
    save_file({k: (before[k] - after[k]).contiguous() for k in before}, str(out / "grads.safetensors"))
