"""Log-likelihood throughput: alignlab's HuggingFaceLM vs lm-evaluation-harness's HFLM on CrowS-Pairs.

Both sides score the full CrowS-Pairs file (2 requests per row, empty context) with the same locally
built ~30M-parameter Llama (hidden 512, 6 layers, a byte-level BPE tokenizer trained on the file), the
same batch size (requests per forward), the same precision (the machine's fastest unless ``--precision``
says otherwise: common.py) and thread count, in one process. The sides
alternate and repeat, and the median ratio is reported, because other jobs on a shared machine slow
either side at random. The two sides' numbers are checked to agree before any timing is trusted.

How each side lays out the same work: HFLM sorts the requests by length and runs 32 per forward,
padded to the longest, projecting every position onto the vocabulary. alignlab also puts at most 32
requests in a forward, but as token tries (requests sharing a prefix share its columns, each token
attending to its ancestors), after one extra one-token forward for the BOS token every request starts
with (its keys/values are reused by all rows), and it projects only the positions it needs. On this
file that is ~32k token positions against HFLM's ~45k; the ideal trie (every shared prefix once) is
31.5k, so at equal matmul speed the compute alone bounds the ratio near 1.43x. Under bf16 autocast the
two sides' log-likelihoods drift apart from their fp32 values by different amounts, so the agreement
line is worth reading before the ratio.

    .venv/bin/python benchmarks/loglik_vs_lmeval.py                   # the machine's fastest precision
    .venv/bin/python benchmarks/loglik_vs_lmeval.py --precision no    # both sides in fp32
    .venv/bin/python benchmarks/loglik_vs_lmeval.py --precision bf16  # both sides under bf16 autocast
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from dataclasses import dataclass

from common import SHARED, SpeedConfig, bench_parser, parse_bench, start, write_result

CSV = SHARED / "crows_pairs_anonymized.csv"


@dataclass
class LoglikBench(SpeedConfig):
    """alignlab HuggingFaceLM vs lm-eval HFLM, log-likelihood throughput on CrowS-Pairs."""

    rounds: int = 5
    data: str = ""
    """the CrowS-Pairs CSV ("" = crows_pairs_anonymized.csv in ../shared/data)"""
    rows: int | None = None
    """the first N rows only (default: all)"""
    batch_size: int = 32
    """requests per forward, both sides"""
    vocab: int = 8192
    """BPE vocabulary size of the tokenizer trained on the file"""


def main() -> None:
    args = parse_bench(LoglikBench, bench_parser(LoglikBench, "loglik_vs_lmeval.py", __doc__))
    reason = start(args)
    autocast = "bfloat16" if args.precision == "bf16" else None

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from alignlab.evaluate.fixtures import build_tiny_lm
    from alignlab.evaluate.lm import HuggingFaceLM

    with open(args.data or CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[: args.rows]
    texts = [r[k] for r in rows for k in ("sent_more", "sent_less")]
    requests = [("", t) for t in texts]
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)
    ]

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_lm(
            tmp, texts, vocab_size=args.vocab, hidden_size=512, layers=6, heads=8, max_positions=1024
        )
        harness = HFLM(
            pretrained=path,
            device="cpu",
            dtype="float32",
            batch_size=args.batch_size,
            mixed_precision_dtype=autocast,
        )
        ours = HuggingFaceLM(path, batch_size=args.batch_size, device="cpu", autocast=autocast)
        params = sum(p.numel() for p in ours.model.parameters()) / 1e6
        n_tokens = sum(len(ours.encoder.encode_pair(c, x)[1]) for c, x in requests)
        print(
            f"model: {params:.1f}M params, vocab {len(ours.tokenizer)}; {len(requests)} requests, "
            f"{n_tokens} continuation tokens; batch {args.batch_size}; threads {args.threads}; "
            f"precision {'fp32 + bf16 autocast' if autocast else 'fp32'}"
        )

        sides = {
            "lm-eval HFLM": lambda: [ll for ll, _ in harness.loglikelihood(instances, disable_tqdm=True)],
            "alignlab": lambda: [ll for ll, _ in ours.loglikelihood(requests)],
        }
        # Agreement first (also the warm-up): the same numbers, or the timing means nothing.
        ref, got = sides["lm-eval HFLM"](), sides["alignlab"]()
        worst = max(abs(a - b) for a, b in zip(ref, got))
        flips = sum((ref[2 * i] > ref[2 * i + 1]) != (got[2 * i] > got[2 * i + 1]) for i in range(len(rows)))
        print(f"agreement: max |LL difference| {worst:.2e}; pct_stereotype decisions that differ: {flips}")

        # Wall time is what users wait for; process CPU time is the work done, which other jobs on a
        # shared machine disturb less (with one thread, CPU time ~ compute).
        wall: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for rep in range(args.rounds):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for name in order:
                began, began_cpu = time.perf_counter(), time.process_time()
                sides[name]()
                wall[name].append(time.perf_counter() - began)
                cpu[name].append(time.process_time() - began_cpu)
            print(
                f"repeat {rep + 1}: "
                + ", ".join(f"{n} {wall[n][-1]:.1f}s wall / {cpu[n][-1]:.1f}s cpu" for n in sides)
            )

    speedups = {}
    for label, times in (("wall", wall), ("cpu", cpu)):
        ratios = [h / a for h, a in zip(times["lm-eval HFLM"], times["alignlab"])]
        speedups[f"{label}_requests_per_s"] = statistics.median(ratios)
        rates = ", ".join(
            f"{n} {len(requests) / statistics.median(ts):.0f} requests/s" for n, ts in times.items()
        )
        print(
            f"{label}: {rates}; ratio {statistics.median(ratios):.2f}x (median of per-repeat ratios: "
            f"{', '.join(f'{r:.2f}' for r in ratios)})"
        )
    write_result("loglik_vs_lmeval", args, reason, speedups, {"wall_seconds": wall, "cpu_seconds": cpu},
                 workload={"params_m": params, "requests": len(requests), "continuation_tokens": n_tokens},
                 agreement={"max_abs_ll_difference": worst, "pct_stereotype_flips": flips})


if __name__ == "__main__":
    main()
