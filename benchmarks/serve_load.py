"""Load test for ``alignlab serve``: N requests from C concurrent clients on 127.0.0.1, batched against unbatched.

The same server (a small Llama built locally, greedy completions) runs twice, once with ``max_batch_size=1`` and
once with batching; each client sends its share of the requests one after another over HTTP. Throughput and
latency percentiles go to a JSON file with the command, the commit and the machine.

    python benchmarks/serve_load.py --requests 200 --clients 20 --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch

PROMPTS = ["The cat sat on the", "A dog ran in the", "Hello there, friend.", "Once upon a time", "The park was"]
TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?"] * 20


def run_clients(url: str, requests: int, clients: int, max_tokens: int) -> tuple[float, list[float]]:
    """Wall time and per-request latencies of ``requests`` completions sent by ``clients`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(k, requests, clients):
            body = json.dumps({"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens}).encode()
            req = urllib.request.Request(url + "/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=300) as resp:
                json.loads(resp.read())
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="max_batch_size of the batched run")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    if args.requests > 1000 or args.clients > 64:
        parser.error("this is a bounded load test: at most 1000 requests and 64 clients")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from alignlab.evaluate.fixtures import build_tiny_lm
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.evaluate.serve import ServeConfig, make_server

    path = build_tiny_lm(Path(tempfile.mkdtemp(prefix="serve-load-")), TEXTS, vocab_size=300,
                         hidden_size=args.hidden, layers=args.layers)
    lm = HuggingFaceLM(path, batch_size=args.batch, device=args.device)
    results = {}
    for mode, batch in [("unbatched", 1), ("batched", args.batch)]:
        server = make_server(lm, ServeConfig(model=path, port=0, max_batch_size=batch,
                                             max_tokens_cap=args.max_tokens, max_connections=args.clients + 8))
        url = server.start()
        run_clients(url, args.clients, args.clients, args.max_tokens)  # warm-up: one request per client
        server.app.state.logic.batcher.batches.clear()
        seconds, latencies = run_clients(url, args.requests, args.clients, args.max_tokens)
        batches = list(server.app.state.logic.batcher.batches)
        server.stop()
        results[mode] = {
            "max_batch_size": batch,
            "seconds": seconds,
            "requests_per_s": args.requests / seconds,
            "latency_p50_ms": 1000 * statistics.median(latencies),
            "latency_p90_ms": 1000 * percentile(latencies, 0.9),
            "latency_p99_ms": 1000 * percentile(latencies, 0.99),
            "mean_batch_size": statistics.mean(batches),
        }
        print(f"{mode}: {results[mode]['requests_per_s']:.1f} req/s, p50 {results[mode]['latency_p50_ms']:.0f} ms,"
              f" p90 {results[mode]['latency_p90_ms']:.0f} ms, mean batch {results[mode]['mean_batch_size']:.1f}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": args.threads, "device": args.device},
        "setup": {"requests": args.requests, "clients": args.clients, "max_tokens": args.max_tokens,
                  "model": f"Llama hidden {args.hidden}, {args.layers} layers, vocab 300", "greedy": True},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
