"""Activation caching: alignlab's ``run_with_cache`` vs TransformerLens 4.3's ``TransformerBridge.run_with_cache``
vs the plain Hugging Face forward, on the same model and batch, in one process.

The model is the locally built ~30M-parameter Llama the other benchmarks use (hidden 512, 6 layers, vocab 8k,
random weights: speed does not depend on them), the batch ``batch × length`` random tokens. The bridge wraps
a copy of the same model (it switches the model it wraps to eager attention; the plain forward and alignlab
keep the model's SDPA unless a pattern is cached). Three workloads, each timed for all sides in alternating
order, ``forwards`` forwards per timing, the median over rounds of the per-round ratios reported:

- ``filtered``: the residual stream before every block (``names=`` / ``names_filter=`` the same predicate);
- ``pattern``: every layer's attention pattern (both sides then run attention eagerly);
- ``all``: every hook point either side has.

The headline is ``filtered``: time of a cached forward / time of the plain forward (target ≤ 1.5×). Peak
memory: each side runs once more in a fresh process (a warm allocator reuses freed memory and hides peaks),
where the resident-set growth during its first forward is sampled from ``/proc/self/statm`` every
millisecond (a peak shorter than that can be missed), beside the bytes the cache holds.

    .venv/bin/python benchmarks/cache_vs_transformerlens.py                  # the machine's fastest precision
    .venv/bin/python benchmarks/cache_vs_transformerlens.py --precision no   # fp32
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass

import torch
from common import SpeedConfig, bench_parser, parse_bench, start, write_result
from tqdm import tqdm


@dataclass
class CacheBench(SpeedConfig):
    """alignlab run_with_cache vs TransformerLens run_with_cache vs the plain forward."""

    rounds: int = 5
    batch: int = 8
    """sequences per forward"""
    length: int = 64
    """tokens per sequence"""
    forwards: int = 5
    """forwards per timing"""
    hidden: int = 512
    """model width"""
    layers: int = 6
    """model depth"""
    vocab: int = 8192
    """vocabulary size"""
    memory_side: str = ""
    """internal: measure the peak memory of this one side in this process and print it"""


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth(fn) -> int:
    """Largest resident-set size seen while ``fn`` runs (and its result is still held), minus the size before."""
    before, peak, done = _rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = fn()
    peak[0] = max(peak[0], _rss())
    done.set()
    watcher.join()
    del result
    return peak[0] - before


def cached_bytes(cache) -> int:
    """Bytes of the distinct storages a cache holds (views of one tensor count once)."""
    storages = {}
    for tensor in cache.values():
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def build(args: CacheBench):
    """The model, the batch and the bridge around a copy of the model."""
    from alignlab.core.models import tiny_llama
    from alignlab.interpret.peer import transformer_lens_bridge

    torch.manual_seed(args.seed)
    model = tiny_llama(args.vocab, hidden_size=args.hidden, layers=args.layers, heads=8,
                       intermediate_size=1376, max_positions=1024).eval()
    ids = torch.randint(3, args.vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(args.seed))
    with tempfile.TemporaryDirectory() as folder:
        bridge = transformer_lens_bridge(model, folder)
    return model, ids, bridge


FILTERS = {"filtered": lambda n: n.endswith("hook_resid_pre"), "pattern": lambda n: n.endswith("attn.hook_pattern"),
           "all": None}


def make_sides(model, ids, bridge) -> dict:
    from alignlab.interpret.hooks import run_with_cache

    sides = {"hf": lambda: (model(ids).logits, {})}
    for workload, names in FILTERS.items():
        sides[f"alignlab_{workload}"] = lambda names=names: run_with_cache(model, ids, names=names)
        sides[f"transformerlens_{workload}"] = (
            lambda names=names: bridge.run_with_cache(ids, names_filter=names) if names else bridge.run_with_cache(ids))
    return sides


def measure_memory_apart(args: CacheBench, side: str) -> int:
    """Peak resident-set growth of ``side``'s first forward, in a fresh process."""
    import json
    import subprocess
    import sys

    command = [sys.executable, __file__, "--memory-side", side, "--precision", args.precision,
               "--batch", str(args.batch), "--length", str(args.length), "--hidden", str(args.hidden),
               "--layers", str(args.layers), "--vocab", str(args.vocab), "--seed", str(args.seed)]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    return json.loads(lines[-1])["peak_growth"]


def main() -> None:
    args = parse_bench(CacheBench, bench_parser(CacheBench, "cache_vs_transformerlens.py", __doc__))
    if args.memory_side:
        import json

        start(args)
        model, ids, bridge = build(args)
        with torch.no_grad(), _autocast(args):
            growth = peak_rss_growth(make_sides(model, ids, bridge)[args.memory_side])
        print(json.dumps({"peak_growth": growth}))
        return
    reason = start(args)
    model, ids, bridge = build(args)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {params:.1f}M params; batch {args.batch} x {args.length} tokens; {args.forwards} forwards "
          f"per timing; attention: plain/alignlab {model.config._attn_implementation}, bridge "
          f"{getattr(bridge, 'original_model', model).config._attn_implementation}")
    sides = make_sides(model, ids, bridge)
    with torch.no_grad(), _autocast(args):
        # Agreement first (also the warm-up): the same residual stream and pattern, or the timing means nothing.
        last = args.layers - 1
        _, ours = sides["alignlab_all"]()
        _, theirs = sides["transformerlens_all"]()
        agreement = {name: float((ours[name].float() - theirs[name].float()).abs().max())
                     for name in (f"blocks.{last}.hook_resid_pre", f"blocks.{last}.attn.hook_pattern",
                                  f"blocks.{last}.attn.hook_z")
                     if name in ours and name in theirs}
        counts = {"alignlab_all": len(ours), "transformerlens_all": len(theirs)}
        print(f"agreement (max |difference|): {agreement}; cached names: {counts}")
        for side in sides.values():  # warm-up
            side()
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for rnd in range(args.rounds):
            order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
            for name in order:
                began = time.perf_counter()
                for _ in range(args.forwards):
                    sides[name]()
                seconds[name].append((time.perf_counter() - began) / args.forwards)
            print(f"round {rnd + 1}: " + ", ".join(f"{n} {seconds[n][-1] * 1e3:.1f} ms" for n in sides), flush=True)

        ratios = {}
        for name in sides:
            if name == "hf":
                continue
            per_round = [s / h for s, h in zip(seconds[name], seconds["hf"])]
            ratios[f"{name}_over_hf"] = statistics.median(per_round)
            print(f"{name}: {statistics.median(seconds[name]) * 1e3:.1f} ms vs plain forward "
                  f"{statistics.median(seconds['hf']) * 1e3:.1f} ms; ratio {ratios[f'{name}_over_hf']:.2f}x")
        for workload in FILTERS:
            ratios[f"transformerlens_over_alignlab_{workload}"] = (
                ratios[f"transformerlens_{workload}_over_hf"] / ratios[f"alignlab_{workload}_over_hf"])

        cached = {name: cached_bytes(side()[1]) for name, side in sides.items() if name != "hf"}
    memory = {f"{name}_peak_growth": measure_memory_apart(args, name) for name in tqdm(sides, desc="memory")}
    memory.update({f"{name}_cached_bytes": size for name, size in cached.items()})
    for workload in FILTERS:
        ours, peer = f"alignlab_{workload}", f"transformerlens_{workload}"
        print(f"memory ({workload}): peak growth alignlab {memory[ours + '_peak_growth'] / 2**20:.1f} MiB, "
              f"TransformerLens {memory[peer + '_peak_growth'] / 2**20:.1f} MiB, plain forward "
              f"{memory['hf_peak_growth'] / 2**20:.1f} MiB; cached tensors alignlab "
              f"{cached[ours] / 2**20:.1f} MiB, TransformerLens {cached[peer] / 2**20:.1f} MiB")

    write_result("cache_vs_transformerlens", args, reason, ratios, {"seconds_per_forward": seconds},
                 memory_bytes=memory, agreement=agreement, cached_names=counts,
                 workload={"params_m": params, "batch": args.batch, "length": args.length,
                           "transformer_lens_version": _version("transformer-lens")})


def _autocast(args: CacheBench):
    return torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()


def _version(package: str) -> str | None:
    from alignlab.core.provenance import package_version

    return package_version(package)


if __name__ == "__main__":
    main()
