"""Shared set-up for the benchmarks: a locally built ~30M-parameter Llama, a BPE tokenizer trained on the
real HH-RLHF file, the same examples for alignlab and its peer, the options every benchmark shares
(:class:`SpeedConfig`) and the result record. Nothing is downloaded.

Both sides run at one precision, by default the machine's fastest (:func:`alignlab.core.precision.fastest_precision`:
bf16 autocast only where the hardware computes bf16 natively, fp32 elsewhere); ``--precision bf16`` or
``--precision no`` forces one. Each benchmark prints its ratios as ``ratio N.NNx`` and writes
``results/<name>.json`` (under benchmarks/) with the command line, commit, seed, machine, precision and every
timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from alignlab.config import config_parser, field_docs, parse_config
from alignlab.core.io import atomic_write_json
from alignlab.core.precision import cpu_info, fastest_precision
from alignlab.core.provenance import git_commit, package_version
from alignlab.errors import AlignlabError

BENCHMARKS = Path(__file__).resolve().parent
SHARED = BENCHMARKS.parents[1] / "shared" / "data"
HH = SHARED / "hh_harmless_base_test.jsonl.gz"

@dataclass
class SpeedConfig:
    """Options every benchmark has; each benchmark's config adds its workload."""

    rounds: int = 2
    """rounds; the two sides alternate within each, and a ratio is the median of the per-round ratios"""
    threads: int = 1
    """torch threads, the same for both sides (on a small machine shared with other jobs, two threads per side
    contend for busy cores and make the ratio swing from round to round)"""
    precision: Literal["auto", "bf16", "no"] = "auto"
    """both sides' precision: auto = the machine's fastest (bf16 autocast only where the hardware computes bf16
    natively: CUDA, AVX512-BF16/AMX), bf16 = bf16 autocast, no = fp32"""
    seed: int = 0
    """random seed, the same for both sides"""
    output: str = "results"
    """folder for <benchmark>.json: command line, commit, machine, precision, every timing (relative to
    benchmarks/)"""


def bench_parser(cls: type[SpeedConfig], prog: str, doc: str | None):
    """A config-dataclass parser where every field of ``cls`` is also a flag (``--batch-size 8``), as before."""
    flags = {f.name: (f.name, field_docs(cls).get(f.name, "")) for f in dataclasses.fields(cls)}
    return config_parser(cls, prog, flags=flags, description=doc)


def parse_bench(cls: type[SpeedConfig], parser: argparse.ArgumentParser,
                namespace: argparse.Namespace | None = None) -> SpeedConfig:
    """The benchmark's config from the command line (``--flag value``, ``--set key=value``, ``--config``); a bad
    value ends the run with the parser's one-line error."""
    try:
        return parse_config(cls, parser, namespace=namespace)
    except AlignlabError as err:
        parser.error(str(err))


def start(config: SpeedConfig, device: str | None = "cpu") -> str:
    """Threads, seed and quiet libraries; resolve ``config.precision`` to "bf16" or "no" (in place) and print
    the machine and the precision both sides will run at (on ``device``: None = CUDA if available). Returns
    why that precision."""
    quiet(config.threads, config.seed)
    if config.precision == "auto":
        config.precision, reason = fastest_precision(device)
    else:
        reason = "forced by --precision"
    info = cpu_info()
    print(f"machine: {info.model}; torch CPU capability {info.capability}, native bf16 "
          f"{'yes' if info.native_bf16 else 'no'}; {config.threads} thread(s) per side; precision "
          f"{'bf16 autocast' if config.precision == 'bf16' else 'fp32'} on both sides ({reason})", flush=True)
    return reason


def write_result(name: str, config: SpeedConfig, reason: str, ratios: dict[str, float],
                 timings: dict[str, Any], **extra: Any) -> Path:
    """Write ``<config.output>/<name>.json``: what ran (command line, commit, config), where (machine), at which
    precision, every timing and the ratios printed."""
    folder = Path(config.output)
    path = (folder if folder.is_absolute() else BENCHMARKS / folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    info = cpu_info()
    record = {
        "benchmark": name,
        "command": [Path(sys.executable).name, *sys.argv],
        "commit": git_commit(),
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "precision": {"both_sides": config.precision, "reason": reason},
        "machine": {"cpu": info.model, "capability": info.capability, "native_bf16": info.native_bf16,
                    "threads": config.threads, "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    **{f"{package}_version": package_version(package)
                       for package in ("torch", "transformers", "trl", "lm-eval", "accelerate")}},
        "ratios": ratios,
        "timings": timings,
        **extra,
    }
    atomic_write_json(path, record)
    print(f"result: {path}")
    return path


def build_tokenizer(path: Path, vocab_size: int = 8000):
    """alignlab's tokenizer builder (the toy world's byte-level BPE and chat template) trained on HH-RLHF."""
    from alignlab.world.tokenizer import train_tokenizer

    with gzip.open(HH, "rt") as handle:
        texts = [json.loads(line)["chosen"] for line in handle]
    tok = train_tokenizer(texts, vocab_size, model_max_length=1024)  # build_model's positions
    tok.save_pretrained(path)
    return tok


def build_model(path: Path, tokenizer, *, hidden: int = 512, layers: int = 6, heads: int = 8):
    """A ~30M-parameter Llama (hidden 512, 6 layers, vocab 8k), saved like a hub model."""
    from alignlab.core.models import tiny_llama

    model = tiny_llama(len(tokenizer), hidden_size=hidden, layers=layers, heads=heads, intermediate_size=1376,
                       max_positions=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name: str, ours: list[float], peer: list[float], unit: str, peer_name: str) -> float:
    """Print both sides' median rates and the median of the per-round ratios; return that ratio."""
    ratios = [a / b for a, b in zip(ours, peer)]
    print(f"{name}: alignlab {statistics.median(ours):,.0f} {unit} | {peer_name} {statistics.median(peer):,.0f} {unit}"
          f" | ratio {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    return statistics.median(ratios)


def quiet(threads: int = 1, seed: int = 0) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by subprocess sides
    torch.set_num_threads(threads)
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
