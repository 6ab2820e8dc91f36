"""GCG steps per second: alignlab.attacks.gcg vs nanoGCG 0.3.0, at nanoGCG's defaults, on the same model in one run.

Both sides optimise the same 20-token suffix ("x "×20) for the same AdvBench behaviour and target with search width
512, top-k 256, one token replaced per candidate, buffer 0, the decode→encode filter on and every candidate scored
in one batch. nanoGCG runs with ``use_prefix_cache=False`` (its prefix cache crashes on transformers 5); alignlab
with its prefix cache. A third side, nanoGCG with its per-batch ``gc.collect()`` replaced by a no-op, shows how much
of the gap that call alone explains. The model is a locally built Llama (a byte-level BPE tokenizer trained on the
HH-RLHF file, which prepends BOS as Llama's do, so both sides see the same tokens) held in the machine's fastest
precision (bf16 weights where the CPU computes bf16 natively, fp32 otherwise; nanoGCG computes in the model's
dtype, so both sides use that dtype rather than autocast). Before timing, the first-step losses of both are
printed: the same suffix must get the same loss, or the timing compares different work (in bf16 they agree to
bf16's rounding: nanoGCG takes the cross-entropy in bf16, alignlab in fp32 from the same bf16 logits).

alignlab's own time is split by phase (gradient, sampling, filter, candidate scoring) to show where it goes.

    .venv/bin/python benchmarks/gcg_vs_nanogcg.py                      # 3 rounds of 5 steps per side
    .venv/bin/python benchmarks/gcg_vs_nanogcg.py --precision no       # fp32 weights on both sides
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import HH, SHARED, SpeedConfig, bench_parser, parse_bench, start, write_result


@dataclass
class GCGBench(SpeedConfig):
    """alignlab GCG vs nanoGCG 0.3.0: steps per second at nanoGCG's defaults."""

    rounds: int = 3
    steps: int = 5
    """GCG steps timed per side per round"""
    hidden: int = 128
    """the model's hidden size"""
    layers: int = 4
    """the model's layers"""
    vocab: int = 4096
    """BPE vocabulary size of the tokenizer trained on HH-RLHF"""
    behavior: int = 0
    """which AdvBench row gives the prompt and target"""


def build(path: Path, config: GCGBench, dtype):
    from alignlab.core.models import tiny_llama
    from alignlab.world.tokenizer import train_tokenizer

    with gzip.open(HH, "rt") as handle:
        texts = [json.loads(line)["chosen"] for line in handle]
    tok = train_tokenizer(texts, config.vocab, model_max_length=1024, add_bos=True)
    model = tiny_llama(len(tok), hidden_size=config.hidden, layers=config.layers, heads=4, max_positions=1024,
                       seed=config.seed, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    return model.to(dtype).eval(), tok


def main() -> None:
    config = parse_bench(GCGBench, bench_parser(GCGBench, "gcg_vs_nanogcg.py", __doc__))
    reason = start(config)
    import logging

    import nanogcg
    import nanogcg.gcg as peer
    import torch

    from alignlab.attacks.gcg import GCG, GCGConfig

    logging.getLogger("nanogcg").setLevel(logging.ERROR)
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
    with open(SHARED / "advbench_harmful_behaviors.csv", newline="", encoding="utf-8") as handle:
        row = list(csv.DictReader(handle))[config.behavior]
    prompt, target = row["goal"], row["target"]
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build(Path(tmp), config, dtype)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {params:.1f}M params (hidden {config.hidden}, {config.layers} layers, vocab {len(tok)}), {dtype}; "
          f"behaviour {config.behavior}: {prompt[:60]!r} → {target[:40]!r}")

    defaults = GCGConfig()  # nanoGCG's defaults
    shared = dict(optim_str_init=defaults.optim_str_init, search_width=defaults.search_width, topk=defaults.topk,
                  n_replace=defaults.n_replace, seed=config.seed)
    collect = gc.collect

    def nanogcg_side(steps: int, *, keep_gc: bool = True):
        gc.collect = collect if keep_gc else (lambda *a: 0)
        try:
            return nanogcg.run(model, tok, prompt, target, peer.GCGConfig(num_steps=steps, use_prefix_cache=False,
                                                                           verbosity="ERROR", **shared))
        finally:
            gc.collect = collect
            torch.use_deterministic_algorithms(False)  # nanoGCG turns it on for the rest of the process

    ours_last = {}

    def alignlab_side(steps: int):
        ours_last["result"] = GCG([(model, tok)], GCGConfig(num_steps=steps, **shared)).run([(prompt, target)],
                                                                                            progress=False)
        return ours_last["result"]

    sides = {"nanoGCG": nanogcg_side, "nanoGCG without gc.collect": lambda s: nanogcg_side(s, keep_gc=False),
             "alignlab": alignlab_side}
    first = {name: fn(1).losses[0] for name, fn in sides.items()}  # also the warm-up
    print("first-step losses: " + ", ".join(f"{n} {v:.6f}" for n, v in first.items()))

    # Wall time is what users wait for; process CPU time is the work done, which other jobs on a shared machine
    # disturb far less (with one thread, CPU time ~ compute). Both are kept; the ratios are given for both.
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    phases: dict[str, list[float]] = {}
    for rep in range(config.rounds):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            began, began_cpu = time.perf_counter(), time.process_time()
            sides[name](config.steps)
            wall[name].append(time.perf_counter() - began)
            cpu[name].append(time.process_time() - began_cpu)
        for phase, seconds in ours_last["result"].seconds.items():
            phases.setdefault(phase, []).append(seconds)
        print(f"round {rep + 1}: " + ", ".join(f"{n} {config.steps / wall[n][-1]:.3f} steps/s wall, "
                                                f"{config.steps / cpu[n][-1]:.3f} per cpu-s" for n in sides), flush=True)

    steps_per_s = {label: {name: config.steps / statistics.median(times) for name, times in clock.items()}
                   for label, clock in (("wall", wall), ("cpu", cpu))}
    ratios = {}
    for label, clock in (("wall", wall), ("cpu", cpu)):
        for peer_name in ("nanoGCG", "nanoGCG without gc.collect"):
            per_round = [p / a for p, a in zip(clock[peer_name], clock["alignlab"])]
            key = f"{label}_steps_per_s" + ("" if peer_name == "nanoGCG" else "_vs_no_gc")
            ratios[key] = statistics.median(per_round)
            print(f"{label}: alignlab {steps_per_s[label]['alignlab']:.3f} steps/s | {peer_name} "
                  f"{steps_per_s[label][peer_name]:.3f} steps/s | ratio {ratios[key]:.2f}x "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in per_round)})")
    share = {phase: statistics.median(s) / statistics.median(wall["alignlab"]) for phase, s in phases.items()}
    print("alignlab wall time by phase: " + ", ".join(f"{p} {100 * v:.0f}%" for p, v in share.items()))
    write_result("gcg_vs_nanogcg", config, reason, ratios,
                 {"wall_seconds": wall, "cpu_seconds": cpu, "alignlab_phase_seconds": phases},
                 steps_per_s=steps_per_s, alignlab_phase_share=share, first_step_losses=first,
                 workload={"params_m": params, "dtype": str(dtype), "prompt": prompt, "target": target,
                           "search_width": defaults.search_width, "topk": defaults.topk,
                           "suffix": defaults.optim_str_init})


if __name__ == "__main__":
    main()
