"""Shared set-up for the benchmarks: a locally built ~30M-parameter Llama, a BPE tokenizer trained on the
real HH-RLHF file, and the same examples for alignlab and its peer. Nothing is downloaded."""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HH = SHARED / "hh_harmless_base_test.jsonl.gz"

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
    """Print both sides' median rates and the median of the per-round ratios."""
    ratios = [a / b for a, b in zip(ours, peer)]
    print(f"{name}: alignlab {statistics.median(ours):,.0f} {unit} | {peer_name} {statistics.median(peer):,.0f} {unit}"
          f" | ratio {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    return statistics.median(ratios)


def add_threads_flag(parser) -> None:
    """``--threads`` (default 1), the same for both sides: on a small machine shared with other jobs, two
    intra-op threads contending for two busy cores made both sides several times slower and the ratio
    swing from round to round (DPO read 1.15x, 1.17x and 1.84x in three rounds with two threads)."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default 1)")


def quiet(threads: int = 1) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by subprocess sides
    torch.set_num_threads(threads)
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
