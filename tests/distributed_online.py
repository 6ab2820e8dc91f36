"""Run by test_distributed.py under `accelerate launch` (2 CPU processes, gloo) and in one process: REINFORCE
(the group policy-gradient trainer with a batch-mean baseline and the KL to a reference folded into the reward)
or PPO (a value head, whitened GAE advantages, running reward moments) with a scripted reward, the step's prompts
sharded over the processes.

Generation is replaced by a deterministic stand-in (each prompt's k-th completion is a fixed function of the
prompt's ids and k), so one process and two sample the same completions and only the sharding differs.
MAX_STEPS = 1 makes one SGD update at lr = 1 over the whole rollout, so θ_before − θ_after is the gradient of the
real online update; more steps make several shuffled minibatch updates per step (for the resume check).

    python distributed_online.py OUT PROCESSES MAX_STEPS reinforce|ppo [resume]
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import build_tokenizer  # noqa: E402

import alignlab.outer.online.rollout as rollout  # noqa: E402
from alignlab.config import load_config  # noqa: E402
from alignlab.core.generation import GenerationOutput  # noqa: E402
from alignlab.core.models import tiny_llama  # noqa: E402
from alignlab.registry import get_method  # noqa: E402

out, processes, max_steps, method = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resume = sys.argv[5:] == ["resume"]
state = PartialState(cpu=True)
assert state.num_processes == processes
torch.set_num_threads(1)
tok = build_tokenizer(out / f"tok-{state.process_index}")


def scripted_generate(model, tokenizer, prompt_ids, config, *, engine=None):
    """Completion k of a prompt: 1–4 tokens fixed by the prompt's ids and k; every other one ends with EOS."""
    seen: dict[tuple[int, ...], int] = {}
    completions, finished = [], []
    for ids in prompt_ids:
        k = seen[tuple(ids)] = seen.get(tuple(ids), -1) + 1
        body = [10 + (sum(ids) * 7 + k * 13 + j * 31) % 200 for j in range(1 + (sum(ids) + k) % 4)]
        completions.append(body + [tokenizer.eos_token_id] if k % 2 else body)
        finished.append(bool(k % 2))
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    return GenerationOutput(prompt_ids=[list(p) for p in prompt_ids], completion_ids=completions, texts=texts,
                            finished=finished, seconds=0.0)


rollout.generate = scripted_generate
model = tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, seed=0, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id)
before = {k: v.clone() for k, v in model.state_dict().items()}
prompts = out / "prompts.jsonl"
one_update = ["train.lr=1.0", "ppo_epochs=1", "minibatch_size=8"]
several = ["train.lr=0.1", "ppo_epochs=2", "minibatch_size=4"]
# 8 completions per step: 4 prompts × 2 for REINFORCE, 8 prompts once for PPO
shape = ["prompts_per_step=4", "group_size=2"] if method == "reinforce" else ["prompts_per_step=8"]
config_cls, train = get_method(method)
cfg = load_config(config_cls, None, [
    f"data.path={prompts}", f"output={out / 'run'}", f"train.max_steps={max_steps}", "train.optimizer=sgd",
    "train.max_grad_norm=0", "train.mixed_precision=no", "train.progress=false", "train.save_every=1",
    f"train.resume={str(resume).lower()}", "beta=0.1", *shape, *(one_update if max_steps == 1 else several)])
# the reward: a scripted function of the text (completions of different lengths, so the processes' token counts differ)
train(cfg, model=model, tokenizer=tok, reward=lambda p, c: [float(len(x) % 5) - len(q) % 3 for q, x in zip(p, c)])
if state.is_main_process:
    after = {k: v.detach() for k, v in model.state_dict().items()}
    save_file({k: (before[k] - after[k]).contiguous() for k in before}, str(out / "grads.safetensors"))
    save_file({k: v.contiguous() for k, v in after.items()}, str(out / "weights.safetensors"))
    (out / "done.json").write_text(json.dumps({"processes": processes}))
