"""Log-likelihood throughput: alignlab's HuggingFaceLM vs lm-evaluation-harness's HFLM on CrowS-Pairs and BBQ.

Both sides score two workloads with the same locally built ~30M-parameter Llama (hidden 512, 6 layers, a
byte-level BPE tokenizer trained on both files), the same batch size (requests per forward), the same
precision (the machine's fastest unless ``--precision`` says otherwise: common.py) and thread count, in one
process:

- CrowS-Pairs: the full file, 2 requests per row, empty context (writes ``loglik_vs_lmeval.json``);
- BBQ: every ``--bbq-every``-th question of each of the six shared categories, each context followed by its
  three answers (``"{context}\n\nQ: {question}\nA:"`` + `` answer``), as alignlab's ``bbq_original`` task asks
  (writes ``bbq_vs_lmeval.json``).

The sides alternate and repeat, and the median ratio is reported, because other jobs on a shared machine slow
either side at random. The two sides' numbers are checked to agree before any timing is trusted.

How each side lays out the same work: HFLM sorts the requests by length and runs 32 per forward, padded to
the longest, projecting every position onto the vocabulary. alignlab also puts at most 32 requests in a
forward, but as token tries (requests sharing a prefix share its columns, each token attending to its
ancestors), after one extra forward for the tokens every request starts with (their keys/values are reused
by all rows), and it projects only the positions it needs. On CrowS-Pairs the ideal trie's token positions
against the positions HFLM runs bound the ratio at equal matmul speed (counted by loglik_token_positions.py,
written to loglik_token_positions.json); on BBQ a context is computed once for its three answers instead of
three times. Under bf16 autocast HFLM also pays
autocast's cast of every linear weight on every call, which alignlab avoids by holding those weights in bf16
(the same products): that is why the bf16 ratio can pass the token-count bound. Under bf16 autocast the two
sides' log-likelihoods drift apart from their fp32 values by different amounts, so the agreement is checked in
fp32 first (each side's fp32 numbers) and the bf16 drift is printed beside it.

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
BBQ = SHARED / "bbq"


@dataclass
class LoglikBench(SpeedConfig):
    """alignlab HuggingFaceLM vs lm-eval HFLM, log-likelihood throughput on CrowS-Pairs and BBQ."""

    rounds: int = 5
    data: str = ""
    """the CrowS-Pairs CSV ("" = crows_pairs_anonymized.csv in ../shared/data)"""
    rows: int | None = None
    """the first N CrowS-Pairs rows only (default: all)"""
    bbq_every: int = 20
    """BBQ: every N-th question of each category (0: skip BBQ)"""
    batch_size: int = 32
    """requests per forward, both sides"""
    vocab: int = 8192
    """BPE vocabulary size of the tokenizer trained on the files"""


def bbq_requests(every: int) -> tuple[list[tuple[str, str]], int]:
    """(context, " answer") for the three answers of every ``every``-th BBQ question; and the question count."""
    from alignlab.evaluate.bbq import PROMPT, load_bbq

    rows = [r for i, r in enumerate(load_bbq(BBQ)) if i % every == 0]
    return [(PROMPT.format(**r), " " + r[f"ans{k}"]) for r in rows for k in range(3)], len(rows)


def workloads(args: LoglikBench) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int, list[str]]:
    """CrowS-Pairs requests, BBQ requests and question count, and the texts the benchmark's tokenizer is trained
    on (loglik_token_positions.py rebuilds the same tokenizer from them)."""
    with open(args.data or CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[: args.rows]
    crows = [("", r[k]) for r in rows for k in ("sent_more", "sent_less")]
    bbq, n_questions = bbq_requests(args.bbq_every) if args.bbq_every else ([], 0)
    texts = [x for _, x in crows] + sorted({c for c, _ in bbq}) + [x for _, x in bbq]
    return crows, bbq, n_questions, texts


def compare(name: str, requests: list[tuple[str, str]], group: int, harness, ours, ours_fp32, rounds: int) -> dict:
    """Agreement, then alternating timed repeats of both sides on ``requests`` (``group`` requests per item)."""
    from lm_eval.api.instance import Instance

    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)
    ]
    sides = {
        "lm-eval HFLM": lambda: [ll for ll, _ in harness.loglikelihood(instances, disable_tqdm=True)],
        "alignlab": lambda: [ll for ll, _ in ours.loglikelihood(requests)],
    }
    n_tokens = sum(len(ours.encoder.encode_pair(c, x)[1]) for c, x in requests)
    print(f"{name}: {len(requests)} requests, {n_tokens} continuation tokens")
    # Agreement first: the same numbers, or the timing means nothing. The algorithm is checked in fp32 (both
    # sides' autocast off), where the two must agree to rounding; then at the timed precision (also the warm-up),
    # where bf16 products summed in different orders drift apart by more.

    def best(lls: list[float], i: int) -> int:
        return max(range(group), key=lambda k: lls[group * i + k])

    agreement = {}
    timed = harness.mixed_precision_dtype
    # alignlab in fp32 is its own instance: under autocast it holds its linear weights in bf16
    for label, harness_precision, side in (("fp32", None, ours_fp32), ("timed precision", timed, ours)):
        harness.mixed_precision_dtype = harness_precision
        ref = sides["lm-eval HFLM"]()
        got = [ll for ll, _ in side.loglikelihood(requests)]
        worst = max(abs(a - b) for a, b in zip(ref, got))
        flips = sum(best(ref, i) != best(got, i) for i in range(len(requests) // group))
        print(f"{name} agreement ({label}): max |LL difference| {worst:.2e}; choices that differ: {flips}")
        agreement[label] = {"max_abs_ll_difference": worst, "choices_that_differ": flips}

    # Wall time is what users wait for; process CPU time is the work done, which other jobs on a
    # shared machine disturb less (with one thread, CPU time ~ compute).
    wall: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for rep in range(rounds):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            began, began_cpu = time.perf_counter(), time.process_time()
            sides[side]()
            wall[side].append(time.perf_counter() - began)
            cpu[side].append(time.process_time() - began_cpu)
        print(f"{name} repeat {rep + 1}: "
              + ", ".join(f"{n} {wall[n][-1]:.1f}s wall / {cpu[n][-1]:.1f}s cpu" for n in sides))
    speedups = {}
    for label, times in (("wall", wall), ("cpu", cpu)):
        ratios = [h / a for h, a in zip(times["lm-eval HFLM"], times["alignlab"])]
        speedups[f"{label}_requests_per_s"] = statistics.median(ratios)
        rates = ", ".join(f"{n} {len(requests) / statistics.median(ts):.0f} requests/s" for n, ts in times.items())
        print(f"{name} {label}: {rates}; ratio {statistics.median(ratios):.2f}x (median of per-repeat ratios: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
    return {"ratios": speedups, "timings": {"wall_seconds": wall, "cpu_seconds": cpu},
            "workload": {"requests": len(requests), "continuation_tokens": n_tokens},
            "agreement": agreement}


def main() -> None:
    args = parse_bench(LoglikBench, bench_parser(LoglikBench, "loglik_vs_lmeval.py", __doc__))
    reason = start(args)
    autocast = "bfloat16" if args.precision == "bf16" else None

    from lm_eval.models.huggingface import HFLM

    from alignlab.evaluate.fixtures import build_tiny_lm
    from alignlab.evaluate.lm import HuggingFaceLM

    crows, bbq, n_questions, texts = workloads(args)

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
        ours_fp32 = HuggingFaceLM(path, batch_size=args.batch_size, device="cpu") if autocast else ours
        params = sum(p.numel() for p in ours.model.parameters()) / 1e6
        print(f"model: {params:.1f}M params, vocab {len(ours.tokenizer)}; batch {args.batch_size}; threads "
              f"{args.threads}; precision {'fp32 + bf16 autocast' if autocast else 'fp32'}")
        runs = {"loglik_vs_lmeval": compare("CrowS-Pairs", crows, 2, harness, ours, ours_fp32, args.rounds)}
        if bbq:
            runs["bbq_vs_lmeval"] = compare(f"BBQ ({n_questions} questions x 3 answers)", bbq, 3, harness, ours,
                                            ours_fp32, args.rounds)
    for name, run in runs.items():
        run["workload"]["params_m"] = params
        write_result(name, args, reason, run["ratios"], run["timings"], workload=run["workload"],
                     agreement=run["agreement"])


if __name__ == "__main__":
    main()
