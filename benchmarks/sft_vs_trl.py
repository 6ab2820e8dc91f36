"""alignlab SFT vs TRL SFTTrainer: same ~30M Llama, same HH-RLHF conversations, batch, length and epoch.

Both sides train one epoch over the same examples with AdamW at the same precision (the machine's fastest
unless ``--precision`` says otherwise: common.py); TRL gets its fastest fair settings (gradient
checkpointing off, no evaluation, no saving). Rounds alternate the two sides so that load from other
processes hits both alike; the printed ratio is the median over rounds. Throughput counts the examples'
real (unpadded) tokens: padding is each side's own cost.

    python benchmarks/sft_vs_trl.py [--examples 256] [--batch-size 8] [--rounds 2] [--threads 1] [--precision auto]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    HH,
    SpeedConfig,
    bench_parser,
    build_model,
    build_tokenizer,
    parse_bench,
    report,
    start,
    timed,
    write_result,
)


@dataclass
class SFTBench(SpeedConfig):
    """alignlab SFT vs TRL SFTTrainer."""

    examples: int = 256
    """HH-RLHF conversations to train on (one epoch)"""
    batch_size: int = 8
    """examples per optimiser step, both sides"""
    max_length: int = 256
    """tokens per example at most, both sides"""


def main() -> None:
    config = parse_bench(SFTBench, bench_parser(SFTBench, "sft_vs_trl.py", __doc__))
    reason = start(config)

    import datasets
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    from alignlab.config import load_config
    from alignlab.core.readers import read_records, write_jsonl
    from alignlab.outer.sft import SFTConfig, encode_sft, train_sft

    work = Path(tempfile.mkdtemp(prefix="bench-sft-"))
    tok = build_tokenizer(work / "model")
    n_params = build_model(work / "model", tok)
    records = read_records(HH, "conversation", limit=config.examples)
    write_jsonl(records, work / "sft.jsonl")
    trl_rows = [{"prompt": r.prompt, "completion": [{"role": "assistant", "content": r.completion}]} for r in records]
    cfg_common = [f"model.name_or_path={work / 'model'}", f"data.path={work / 'sft.jsonl'}",
                  f"data.max_length={config.max_length}", f"train.batch_size={config.batch_size}",
                  "train.num_epochs=1", "train.progress=false", f"train.mixed_precision={config.precision}",
                  "train.lr=1e-4", f"train.seed={config.seed}"]
    probe = load_config(SFTConfig, None, cfg_common)
    tokens = sum(len(e["input_ids"]) for e in encode_sft(tok, records, probe, "bench"))
    print(f"model: {n_params / 1e6:.1f}M params; {len(records)} examples, {tokens:,} tokens, "
          f"batch {config.batch_size}, max_length {config.max_length}, 1 epoch")

    def run_alignlab(i: int) -> None:
        train_sft(load_config(SFTConfig, None, [*cfg_common, f"output={work / f'ours-{i}'}"]))

    def run_trl(i: int) -> None:
        from transformers import AutoModelForCausalLM

        trl_config = TRLConfig(output_dir=str(work / f"trl-{i}"), per_device_train_batch_size=config.batch_size,
                               num_train_epochs=1, learning_rate=1e-4, max_length=config.max_length,
                               bf16=config.precision == "bf16", gradient_checkpointing=False, save_strategy="no",
                               eval_strategy="no", report_to="none", logging_steps=1000, disable_tqdm=True,
                               use_cpu=True, dataloader_num_workers=0, seed=config.seed)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(work / "model"), args=trl_config,
                             train_dataset=datasets.Dataset.from_list(trl_rows), processing_class=tok)
        trainer.train()

    seconds: dict[str, list[float]] = {"alignlab": [], "trl": []}
    for i in range(config.rounds):
        seconds["alignlab"].append(timed(lambda i=i: run_alignlab(i)))
        seconds["trl"].append(timed(lambda i=i: run_trl(i)))
    ratio = report("SFT tokens/s (whole run incl. set-up)", [tokens / s for s in seconds["alignlab"]],
                   [tokens / s for s in seconds["trl"]], "tok/s", "TRL")
    write_result("sft_vs_trl", config, reason, {"tokens_per_s": ratio}, {"seconds": seconds},
                 workload={"params": n_params, "examples": len(records), "tokens": tokens})


if __name__ == "__main__":
    main()
