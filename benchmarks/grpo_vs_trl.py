"""alignlab GRPO vs TRL GRPOTrainer: same ~30M Llama, prompts, group size, generation length, reward function.

Both sides run GRPO with one generation and one optimiser step per batch (TRL: steps_per_generation=1,
num_iterations=1; alignlab: ppo_epochs=1, minibatch = the whole rollout batch), β = 0 (TRL's default:
no reference model), temperature 1, AdamW, one precision for sampling and training on both sides (the
machine's fastest unless ``--precision`` says otherwise: common.py; under bf16, TRL's accelerate wraps the
model's forward in autocast, which its ``generate`` calls too). TRL gets its fastest fair settings:
gradient checkpointing off, no saving, no evaluation, no completion logging.
Every run happens in a fresh subprocess, as a user's training run would: neither side inherits the other's
imports, warmed-up caches, allocator state or process-wide settings (alignlab's training keeps freed memory
for reuse, :func:`alignlab.core.trainer.keep_freed_memory`; TRL runs with glibc's defaults). Rounds
alternate the two sides (other processes share the cores); ratios are medians over rounds.

alignlab runs its defaults: in the policy forward/backward each prompt is computed once for its whole
group (``shared_prefix``: a KV cache with gradients), and generation prefills each distinct prompt once and
copies its cache to the group (``generation.shared_prefill``) before its own sampling loop decodes over a
preallocated KV cache (:mod:`alignlab.core.generation`).

Measured per side, over the training loop only (model loading and alignlab's final save excluded):
- generated tokens/s: completion tokens produced ÷ loop wall time, and ÷ generation time alone (TRL: time
  inside ``model.generate``, its padded output counted; alignlab: its ``gen_seconds``, which also covers the
  shared prefill, and the tokens it produced);
- optimiser steps/s: steps ÷ loop wall time;
- generated tokens per CPU second: completion tokens ÷ the loop's CPU time (``time.process_time``), the rate a
  busy shared machine changes least (one thread per side; wall times there swing with other jobs' load).

    python benchmarks/grpo_vs_trl.py [--prompts 8] [--group 4] [--max-new-tokens 64] [--steps 4] [--rounds 2]
        [--threads 1] [--precision auto]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    HH,
    SpeedConfig,
    bench_parser,
    build_model,
    build_tokenizer,
    parse_bench,
    quiet,
    start,
    write_result,
)

from alignlab.config import save_config


@dataclass
class GRPOBench(SpeedConfig):
    """alignlab GRPO vs TRL GRPOTrainer."""

    prompts: int = 8
    """prompts per step"""
    group: int = 4
    """completions per prompt"""
    max_new_tokens: int = 64
    """tokens generated per completion at most"""
    steps: int = 4
    """optimiser steps (one generation each)"""


def distinct_reward(completions: list[str]) -> list[float]:
    """The shared reward: fraction of distinct words, a cheap function that varies between samples."""
    return [len(set(c.split())) / max(1, len(c.split())) for c in completions]


class GenerateTimer:
    """Wrap TRL's ``model.generate`` to count time spent in it and tokens it produced beyond the prompt (padding
    after EOS included); alignlab reports both in its own metrics."""

    def __init__(self, model):
        self.seconds, self.tokens, self.inner = 0.0, 0, model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        prompt_len = (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[1]
        self.tokens += out[:, prompt_len:].numel()
        return out


def cpu_timed(method, total: dict[str, float]):
    """``method`` adding the CPU time of each call to ``total["loop"]``."""
    @functools.wraps(method)
    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            total["loop"] += time.process_time() - start
    return timed


def load_prompts(n: int) -> list[list[dict]]:
    out = []
    with gzip.open(HH, "rt") as f:
        for line in f:
            text = json.loads(line)["chosen"].split("\n\nAssistant:")[0].replace("\n\nHuman: ", "").strip()
            if 10 < len(text) < 200:
                out.append([{"role": "user", "content": text}])
            if len(out) == n:
                break
    return out


def run_alignlab(work: Path, args: GRPOBench, i: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignlab.config import load_config
    from alignlab.outer.online.grpo import GRPOConfig, train_grpo
    from alignlab.outer.online.rollout import OnlineTrainer as trainer_cls

    batch = args.prompts * args.group
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model")
    cfg = load_config(GRPOConfig, None, [
        f"model.name_or_path={work / 'model'}", f"data.path={work / 'prompts.jsonl'}", f"output={work / f'ours-{i}'}",
        f"train.max_steps={args.steps}", "train.progress=false", f"train.mixed_precision={args.precision}",
        "train.lr=1e-6", f"train.seed={args.seed}",
        "train.scheduler=constant", f"prompts_per_step={args.prompts}", f"group_size={args.group}",
        f"minibatch_size={batch}", "ppo_epochs=1", "beta=0.0", f"generation.max_new_tokens={args.max_new_tokens}",
        "generation.temperature=1.0", f"generation.batch_size={batch}"])
    cpu = {"loop": 0.0}
    for name in ("collect", "learn"):  # CPU time of each step's rollout and update (the loop, as step_seconds)
        setattr(trainer_cls, name, cpu_timed(getattr(trainer_cls, name), cpu))
    result = train_grpo(cfg, model=model, tokenizer=tok, reward=lambda p, c: distinct_reward(c))
    loop = sum(r["step_seconds"] for r in result.history)
    # alignlab's own generation clock (the shared prefill included) and the completion tokens it produced;
    # TRL's count below also includes the padding after a row's EOS, so the comparison is in TRL's favour
    gen = sum(r["gen_seconds"] for r in result.history)
    tokens = round(sum(r["gen_tokens_per_s"] * r["gen_seconds"] for r in result.history))
    return {"loop": loop, "gen": gen, "tokens": tokens, "steps": result.steps, "loop_cpu": cpu["loop"]}


def run_trl(work: Path, args: GRPOBench, i: int) -> dict[str, float]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    batch = args.prompts * args.group
    prompts = [json.loads(line)["prompt"] for line in (work / "prompts.jsonl").read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model")
    timer = GenerateTimer(model)
    clock: dict[str, float] = {}

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            clock["start"], clock["cpu_start"] = time.perf_counter(), time.process_time()

        def on_train_end(self, *a, **k):
            clock["end"], clock["cpu_end"] = time.perf_counter(), time.process_time()

    config = TRLConfig(
        output_dir=str(work / f"trl-{i}"), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, num_generations=args.group,
        max_completion_length=args.max_new_tokens, temperature=1.0, beta=0.0, learning_rate=1e-6,
        lr_scheduler_type="constant", max_steps=args.steps, bf16=args.precision == "bf16",
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(), save_strategy="no", eval_strategy="no", report_to="none",
        logging_steps=1000, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
        seed=args.seed + i)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda prompts, completions, **kw: distinct_reward(
        [c[-1]["content"] for c in completions]), args=config,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in prompts]), processing_class=tok,
        callbacks=[LoopTimer()])
    trainer.train()
    return {"loop": clock["end"] - clock["start"], "gen": timer.seconds, "tokens": timer.tokens,
            "steps": args.steps, "loop_cpu": clock["cpu_end"] - clock["cpu_start"]}


def main() -> None:
    parser = bench_parser(GRPOBench, "grpo_vs_trl.py", __doc__)
    parser.add_argument("--child", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    args = parse_bench(GRPOBench, parser, namespace=parsed)
    if parsed.child:  # the parent passes its config, precision already resolved, as --config
        quiet(args.threads, args.seed)
        run = run_alignlab if parsed.child == "ours" else run_trl
        print("RESULT " + json.dumps(run(parsed.work, args, parsed.round)), flush=True)
        return

    reason = start(args, device=None)  # both sides train on CUDA when there is one
    import torch

    from alignlab.core.io import atomic_write_text

    work = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    save_config(args, work / "bench.yaml")
    tok = build_tokenizer(work / "model")
    n_params = build_model(work / "model", tok)
    prompts = load_prompts(args.prompts * args.steps)
    atomic_write_text(work / "prompts.jsonl", "".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    print(f"model: {n_params / 1e6:.1f}M params; {args.steps} steps × {args.prompts} prompts × {args.group} "
          f"completions × ≤{args.max_new_tokens} new tokens; β=0; torch threads {torch.get_num_threads()}")

    rates = {"ours": [], "trl": []}
    runs = {"ours": [], "trl": []}
    for i in range(args.rounds):
        for side in ("ours", "trl"):
            cmd = [sys.executable, __file__, "--child", side, "--work", str(work), "--round", str(i),
                   "--config", str(work / "bench.yaml")]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                sys.exit(f"{side} round {i} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            r = json.loads(line[len("RESULT "):])
            runs[side].append(r)
            rates[side].append({"tok_s": r["tokens"] / r["loop"], "gen_tok_s": r["tokens"] / r["gen"],
                                "steps_s": r["steps"] / r["loop"], "gen_share": r["gen"] / r["loop"],
                                "tok_cpu_s": r["tokens"] / r["loop_cpu"]})
            print(f"  round {i} {side}: loop {r['loop']:.1f}s ({r['loop_cpu']:.1f}s CPU), generate {r['gen']:.1f}s, "
                  f"{r['tokens']} tokens", flush=True)

    ratios = {}
    for key, label in (("tok_s", "generated tokens/s (whole loop)"), ("gen_tok_s", "generated tokens/s (generate only)"),
                       ("steps_s", "optimiser steps/s"),
                       # per CPU second of the process: what a busy shared machine changes least (one thread)
                       ("tok_cpu_s", "generated tokens per CPU second (whole loop)")):
        ours = [r[key] for r in rates["ours"]]
        peer = [r[key] for r in rates["trl"]]
        per_round = [a / b for a, b in zip(ours, peer)]
        ratios[key] = statistics.median(per_round)
        print(f"{label}: alignlab {statistics.median(ours):.3g} | TRL {statistics.median(peer):.3g} | ratio "
              f"{ratios[key]:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in per_round)})")
    print(f"share of the loop spent generating: alignlab {statistics.median(r['gen_share'] for r in rates['ours']):.0%}"
          f" | TRL {statistics.median(r['gen_share'] for r in rates['trl']):.0%}")
    write_result("grpo_vs_trl", args, reason, ratios, {"alignlab": runs["ours"], "trl": runs["trl"]},
                 workload={"params": n_params, "steps": args.steps, "prompts": args.prompts, "group": args.group,
                           "max_new_tokens": args.max_new_tokens})


if __name__ == "__main__":
    main()
