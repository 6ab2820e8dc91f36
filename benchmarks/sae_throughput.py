"""Sparse-autoencoder training throughput (tokens/s) and its FLOP count, alignlab alone.

The peer would be SAELens's trainer, but SAELens 6.x pins transformer-lens < 4 while alignlab's environment has
TransformerLens 4.3, so the two cannot be installed side by side (REFERENCES.md, "Environment facts"). This
benchmark therefore records alignlab's SAE training step on its own, with the FLOPs each token costs, so the
number can be compared with any other trainer's FLOP rate on the same machine:

- standard SAE, per token: encoder ``2·d_in·d_sae``, decoder ``2·d_sae·d_in`` forward; backward twice the
  forward (gradients of the inputs and of the weights): ``3 × 4·d_in·d_sae`` in all (the element-wise ReLU, L1
  and bias terms are O(d_sae) and left out);
- TopK SAE: the same matmuls (the decoder is dense here, as in SAELens's TopK training), plus the top-k
  selection, which is not counted as FLOPs.

Activations are random Gaussian vectors (throughput does not depend on their content); the SAE is the one
``alignlab interpret sae`` trains (:func:`alignlab.interpret.toy.sae.sae_loss` + Adam), one thread, at the
machine's fastest precision by default (fp32 on a CPU without native bf16).

    .venv/bin/python benchmarks/sae_throughput.py
    .venv/bin/python benchmarks/sae_throughput.py --d-in 512 --expansion 16 --batch-size 4096
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from common import SpeedConfig, bench_parser, parse_bench, start, write_result


@dataclass
class SAEBench(SpeedConfig):
    """alignlab's SAE training step: tokens/s and GFLOP/s."""

    rounds: int = 5
    d_in: int = 128
    """activation width (the world base model's residual stream)"""
    expansion: int = 8
    """d_sae / d_in"""
    batch_size: int = 1024
    """tokens per step"""
    steps: int = 30
    """timed steps per round (after 3 warm-up steps)"""
    k: int = 32
    """active features of the TopK SAE"""


def flops_per_token(d_in: int, d_sae: int) -> int:
    """Forward ``4·d_in·d_sae`` (encoder and decoder matmuls), backward twice that."""
    return 3 * 4 * d_in * d_sae


def main() -> None:
    args = parse_bench(SAEBench, bench_parser(SAEBench, "sae_throughput.py", __doc__))
    reason = start(args)

    import torch

    from alignlab.core.trainer import autocast
    from alignlab.interpret.toy.sae import SAEConfig, SparseAutoencoder, sae_loss

    d_sae = args.d_in * args.expansion
    x = torch.randn(args.batch_size, args.d_in)
    results, timings = {}, {}
    for architecture in ("standard", "topk"):
        sae = SparseAutoencoder(SAEConfig(d_in=args.d_in, d_sae=d_sae, architecture=architecture, k=args.k))
        optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)

        def step(sae=sae, optimizer=optimizer) -> None:
            with autocast(args.precision):
                loss, _ = sae_loss(sae, x, 1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            optimizer.step()

        for _ in range(3):
            step()
        rates = []
        for _ in range(args.rounds):
            begin = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates.append(args.steps * args.batch_size / (time.perf_counter() - begin))
        tokens_per_s = statistics.median(rates)
        flops = flops_per_token(args.d_in, d_sae)
        results[architecture] = {"tokens_per_s": tokens_per_s, "flops_per_token": flops,
                                 "gflops_per_s": tokens_per_s * flops / 1e9, "d_sae": d_sae}
        timings[architecture] = {"tokens_per_s_per_round": rates}
        print(f"{architecture}: {tokens_per_s:,.0f} tokens/s, {flops / 1e6:.2f} MFLOP/token, "
              f"{tokens_per_s * flops / 1e9:.1f} GFLOP/s (median of {args.rounds} rounds); "
              f"peer: SAELens cannot be installed beside TransformerLens 4 — recorded alone")
    write_result("sae_throughput", args, reason, ratios={}, timings=timings, results=results)


if __name__ == "__main__":
    main()
