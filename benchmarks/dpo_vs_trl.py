"""alignlab DPO vs TRL DPOTrainer: same ~30M Llama, same pairs, batch, beta, learning rate and steps.

Data: HH-RLHF harmless-base pairs cut to a fixed shape, prompt 64 tokens and each response 128 tokens
(text from the following pairs is appended where a turn is shorter, then cut at a token boundary), so
neither side gains from length grouping. Both sides get the reference log-probs precomputed before
training (TRL: ``precompute_ref_log_probs=True``; both score the data with the untrained policy, so
neither loads a second copy), the same precision (the machine's fastest unless ``--precision`` says
otherwise: common.py), no gradient checkpointing, no evaluation, no saving of checkpoints during training.

alignlab runs its defaults, so each pair's prompt goes through the model once and its KV cache (with
gradients) serves both responses (``shared_prefix``: about 66 + 2 × 130 tokens through the model per pair
instead of 2 × 196, in the training step and in precomputing the reference); TRL concatenates chosen and
rejected into two full rows. Both compute the same DPO loss on the same log-probs.

Every run happens in a fresh subprocess, which reports its own wall time and peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``), so imports, model loading and caches of one side never count
for the other. A side's whole run starts before it imports its training library (alignlab imports most of
transformers lazily, inside its run; TRL imports it with ``trl``), so both count the same work. Rounds
alternate the two sides; the printed ratio is the median of per-round ratios.
Throughput counts the examples' real tokens (prompt + response, both responses of each pair), per wall second
and per CPU second of the process (``time.process_time``: the rate a busy shared machine changes least, with
one thread per side).

    python benchmarks/dpo_vs_trl.py [--pairs 128] [--batch-size 8] [--rounds 2] [--threads 1] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import resource
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
    report,
    start,
    write_result,
)

from alignlab.config import save_config

PROMPT_TOKENS, RESPONSE_TOKENS = 64, 128
MAX_LENGTH = PROMPT_TOKENS + RESPONSE_TOKENS + 8  # + the chat template's special tokens


@dataclass
class DPOBench(SpeedConfig):
    """alignlab DPO vs TRL DPOTrainer."""

    pairs: int = 128
    """preference pairs to train on (one epoch)"""
    batch_size: int = 8
    """pairs per optimiser step, both sides"""
    beta: float = 0.1
    """DPO's beta, both sides"""
    lr: float = 5e-6
    """learning rate, both sides"""


def make_pairs(tok, n: int) -> list[dict]:
    """``n`` conversational pairs with a 64-token prompt and 128-token responses, from HH-RLHF text."""
    from alignlab.core.readers import read_records

    records = read_records(HH, "pair", limit=4 * n)

    def cut(texts: list[str], n_tokens: int, keep_end: bool) -> str:
        ids: list[int] = []
        for text in texts:  # the text itself first, then the texts after it until there are enough tokens
            ids += tok(text + "\n", add_special_tokens=False)["input_ids"]
            if len(ids) >= n_tokens:
                break
        return tok.decode(ids[-n_tokens:] if keep_end else ids[:n_tokens]).strip()

    rows = []
    for i in range(n):
        later = records[i:] + records[:i]
        prompt = cut(["\n".join(m["content"] for m in r.prompt) for r in later], PROMPT_TOKENS, keep_end=True)
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "chosen": [{"role": "assistant", "content": cut([r.chosen for r in later], RESPONSE_TOKENS, False)}],
                     "rejected": [{"role": "assistant",
                                   "content": cut([r.rejected for r in later], RESPONSE_TOKENS, False)}]})
    return rows


def run_alignlab(work: Path, config: DPOBench, out: Path) -> dict:
    start, cpu = time.perf_counter(), time.process_time()  # the library's import counts, on both sides
    import alignlab.outer.preference as preference
    from alignlab.config import load_config
    from alignlab.outer.preference import PreferenceConfig, train_preference

    loop_seconds, loop_cpu = [], []
    loop = preference.train

    def timed_loop(*a, **k):  # the training loop alone, as TRL's train_runtime measures it
        start, cpu = time.perf_counter(), time.process_time()
        result = loop(*a, **k)
        loop_seconds.append(time.perf_counter() - start)
        loop_cpu.append(time.process_time() - cpu)
        return result

    preference.train = timed_loop

    cfg = load_config(PreferenceConfig, None, [
        f"model.name_or_path={work / 'model'}", f"data.path={work / 'pairs.jsonl'}", f"output={out}",
        f"data.max_length={MAX_LENGTH}", f"data.max_prompt_length={PROMPT_TOKENS + 4}", "loss=dpo",
        f"beta={config.beta}", f"train.lr={config.lr}", f"train.batch_size={config.batch_size}", "train.num_epochs=1",
        f"train.mixed_precision={config.precision}", "train.progress=false", f"reference_cache_dir={out / 'cache'}",
        "reference=precompute", f"train.seed={config.seed}"])
    result = train_preference(cfg)
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "steps": result.steps,
            "loop_seconds": loop_seconds[0], "loop_cpu_seconds": loop_cpu[0]}


def run_trl(work: Path, config: DPOBench, out: Path) -> dict:
    start, cpu = time.perf_counter(), time.process_time()  # the library's import counts, on both sides
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class LoopCPU(TrainerCallback):  # CPU time of the training loop, the span train_runtime measures
        def on_train_begin(self, *a, **k):
            clock["begin"] = time.process_time()

        def on_train_end(self, *a, **k):
            clock["end"] = time.process_time()

    clock: dict[str, float] = {}
    rows = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(work / "model")
    trl_config = DPOConfig(output_dir=str(out), per_device_train_batch_size=config.batch_size, num_train_epochs=1,
                           learning_rate=config.lr, beta=config.beta, max_length=MAX_LENGTH,
                           bf16=config.precision == "bf16", gradient_checkpointing=False,
                           precompute_ref_log_probs=True, precompute_ref_batch_size=2 * config.batch_size,
                           save_strategy="no", eval_strategy="no", report_to="none", logging_steps=1000,
                           disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, seed=config.seed)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(work / "model"), args=trl_config,
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tok, callbacks=[LoopCPU()])
    output = trainer.train()
    trainer.save_model(str(out))  # alignlab saves its model at the end too
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "steps": output.global_step, "loop_seconds": output.metrics["train_runtime"],
            "loop_cpu_seconds": clock["end"] - clock["begin"]}


def child(side: str, work: Path, config: DPOBench, out: Path) -> None:
    quiet(config.threads, config.seed)
    result = (run_alignlab if side == "alignlab" else run_trl)(work, config, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = bench_parser(DPOBench, "dpo_vs_trl.py", __doc__)
    parser.add_argument("--child", choices=["alignlab", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = parse_bench(DPOBench, parser, namespace=args)
    if args.child:  # the parent passes its config, precision already resolved, as --config
        child(args.child, args.work, config, args.out)
        return

    reason = start(config)
    from alignlab.core.readers import read_records
    from alignlab.core.tokenize import encode_completion

    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    save_config(config, work / "bench.yaml")
    tok = build_tokenizer(work / "model")
    n_params = build_model(work / "model", tok)
    rows = make_pairs(tok, config.pairs)
    (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = read_records(work / "pairs.jsonl", "pair")
    steps = len(pairs) // config.batch_size
    shapes = [(len(encode_completion(tok, p.prompt, c)["prompt_ids"]), len(encode_completion(tok, p.prompt, c)["input_ids"]))
              for p in pairs[: steps * config.batch_size] for c in (p.chosen, p.rejected)]
    tokens = sum(total for _, total in shapes)
    print(f"model: {n_params / 1e6:.1f}M params; {steps * config.batch_size} pairs (prompt ≈ "
          f"{statistics.mean(p for p, _ in shapes):.0f}, response ≈ {statistics.mean(t - p for p, t in shapes):.0f} "
          f"tokens), {tokens:,} tokens; batch {config.batch_size} pairs, beta {config.beta}, {steps} steps, "
          "reference precomputed on both sides", flush=True)

    results: dict[str, list[dict]] = {"alignlab": [], "trl": []}
    for i in range(config.rounds):
        for side in ("alignlab", "trl"):
            cmd = [sys.executable, __file__, "--child", side, "--work", str(work), "--out", str(work / f"{side}-{i}"),
                   "--config", str(work / "bench.yaml")]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                sys.exit(f"{side} round {i} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[side].append(json.loads(line[len("RESULT "):]))
            r = results[side][-1]
            print(f"  round {i} {side:8s}: {r['seconds']:.1f}s in all ({r['cpu_seconds']:.1f}s CPU), "
                  f"{r['loop_seconds']:.1f}s in the training loop ({r['loop_cpu_seconds']:.1f}s CPU), "
                  f"{r['steps']} steps, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    assert all(r["steps"] == steps for side in results.values() for r in side), "the two sides ran different steps"
    ratios = {
        "whole_run_tokens_per_s": report(
            "DPO tokens/s (whole run: import, load, tokenise, precompute reference, train, save)",
            [tokens / r["seconds"] for r in results["alignlab"]], [tokens / r["seconds"] for r in results["trl"]],
            "tok/s", "TRL"),
        "loop_tokens_per_s": report(
            "DPO tokens/s (training loop only)", [tokens / r["loop_seconds"] for r in results["alignlab"]],
            [tokens / r["loop_seconds"] for r in results["trl"]], "tok/s", "TRL"),
        # per CPU second of the process: what a busy shared machine changes least (one thread per side)
        "whole_run_tokens_per_cpu_s": report(
            "DPO tokens per CPU second (whole run)", [tokens / r["cpu_seconds"] for r in results["alignlab"]],
            [tokens / r["cpu_seconds"] for r in results["trl"]], "tok/CPU s", "TRL"),
        "loop_tokens_per_cpu_s": report(
            "DPO tokens per CPU second (training loop only)",
            [tokens / r["loop_cpu_seconds"] for r in results["alignlab"]],
            [tokens / r["loop_cpu_seconds"] for r in results["trl"]], "tok/CPU s", "TRL"),
    }
    rss_ours = statistics.median(r["peak_rss_mb"] for r in results["alignlab"])
    rss_peer = statistics.median(r["peak_rss_mb"] for r in results["trl"])
    ratios["peak_rss"] = rss_ours / rss_peer
    print(f"DPO peak RSS: alignlab {rss_ours:,.0f} MB | TRL {rss_peer:,.0f} MB | ratio {ratios['peak_rss']:.2f}x")
    write_result("dpo_vs_trl", config, reason, ratios, results,
                 workload={"params": n_params, "pairs": steps * config.batch_size, "tokens": tokens, "steps": steps})


if __name__ == "__main__":
    main()
