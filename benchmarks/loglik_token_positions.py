"""The exact-computation ceiling of loglik_vs_lmeval.py: token positions HFLM runs vs the best prefix trie's.

Both sides of the log-likelihood benchmark compute the same numbers exactly, so at equal speed per token position
the ratio cannot pass (positions lm-eval's HFLM runs) / (positions the best prefix trie runs). This counts both on
the benchmark's own workloads and tokenizer (the same files, the same BPE trained on the same texts), without
timing anything:

- HFLM: its real ``loglikelihood`` on a model of the benchmark's vocabulary with one small layer (positions do not
  depend on the model's width), counting every input position of every forward (``_model_call``): its length
  sort, batches of ``--batch_size``, padding to the longest request and its sharing of identical inputs, as it
  runs them; and the sum of the requests' own input lengths (no batching, no sharing);
- the best prefix trie: every request's input (context + continuation, less its last token, as both sides feed
  it) inserted into one trie over token ids; its node count is the fewest positions any exact computation that
  shares common prefixes can run (alignlab's batches of ``--batch_size`` requests run at least this many).

Writes ``loglik_token_positions.json`` (the benchmark's config; ``ratios`` holds the ceilings).

    .venv/bin/python benchmarks/loglik_token_positions.py
"""

from __future__ import annotations

import tempfile

from common import bench_parser, parse_bench, start, write_result
from loglik_vs_lmeval import LoglikBench, workloads


def trie_positions(sequences: list[list[int]]) -> int:
    """Nodes of the prefix trie over ``sequences``: the distinct non-empty prefixes."""
    return len({tuple(seq[:k]) for seq in sequences for k in range(1, len(seq) + 1)})


def count(name: str, requests: list[tuple[str, str]], harness, encoder) -> dict[str, float]:
    from lm_eval.api.instance import Instance

    inputs = [(lambda c, x: (c + x)[:-1])(*encoder.encode_pair(c, x)) for c, x in requests]
    ran = {"run": 0}
    model_call = harness._model_call

    def counted(inps, *args, **kwargs):
        ran["run"] += inps.numel()
        return model_call(inps, *args, **kwargs)

    harness._model_call = counted
    harness.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i)
                           for i, r in enumerate(requests)], disable_tqdm=True)
    harness._model_call = model_call
    per_request = sum(len(seq) for seq in inputs)
    trie = trie_positions(inputs)
    counts = {"requests": len(requests), "hflm_positions": ran["run"], "request_positions": per_request,
              "trie_positions": trie, "ceiling": ran["run"] / trie, "ceiling_per_request": per_request / trie}
    print(f"{name}: HFLM runs {ran['run']} token positions (the requests' own inputs: {per_request}); the best "
          f"prefix trie {trie}; ceiling {counts['ceiling']:.3f}x ({counts['ceiling_per_request']:.3f}x per request)")
    return counts


def main() -> None:
    args = parse_bench(LoglikBench, bench_parser(LoglikBench, "loglik_token_positions.py", __doc__))
    reason = start(args)

    from lm_eval.models.huggingface import HFLM

    from alignlab.evaluate.fixtures import build_tiny_lm
    from alignlab.evaluate.interface import HarnessEncoder

    crows, bbq, n_questions, texts = workloads(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_lm(tmp, texts, vocab_size=args.vocab, hidden_size=32, layers=1, heads=4, max_positions=1024)
        harness = HFLM(pretrained=path, device="cpu", dtype="float32", batch_size=args.batch_size)
        encoder = HarnessEncoder(harness.tokenizer)
        counts = {"crows_pairs": count("CrowS-Pairs", crows, harness, encoder)}
        if bbq:
            counts["bbq"] = count(f"BBQ ({n_questions} questions x 3 answers)", bbq, harness, encoder)
    ratios = {f"{name}_ceiling": c["ceiling"] for name, c in counts.items()}
    write_result("loglik_token_positions", args, reason, ratios, {}, positions=counts)


if __name__ == "__main__":
    main()
