"""alignlab SFT vs TRL SFTTrainer: same ~30M Llama, same HH-RLHF conversations, batch, length and epoch.

Both sides train one epoch over the same examples with bf16 autocast and AdamW; TRL gets its fastest fair
settings (bf16 on, gradient checkpointing off, no evaluation, no saving). Rounds alternate the two sides
so that load from other processes hits both alike; the printed ratio is the median over rounds.
Throughput counts the examples' real (unpadded) tokens: padding is each side's own cost.

    python benchmarks/sft_vs_trl.py [--examples 256] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import HH, add_threads_flag, build_model, build_tokenizer, quiet, report, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    add_threads_flag(parser)
    args = parser.parse_args()
    quiet(args.threads)

    import datasets
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    from alignlab.config import load_config
    from alignlab.core.readers import read_records, write_jsonl
    from alignlab.outer.sft import SFTConfig, encode_sft, train_sft

    work = Path(tempfile.mkdtemp(prefix="bench-sft-"))
    tok = build_tokenizer(work / "model")
    n_params = build_model(work / "model", tok)
    records = read_records(HH, "conversation", limit=args.examples)
    write_jsonl(records, work / "sft.jsonl")
    trl_rows = [{"prompt": r.prompt, "completion": [{"role": "assistant", "content": r.completion}]} for r in records]
    cfg_common = [f"model.name_or_path={work / 'model'}", f"data.path={work / 'sft.jsonl'}",
                  f"data.max_length={args.max_length}", f"train.batch_size={args.batch_size}", "train.num_epochs=1",
                  "train.progress=false", "train.mixed_precision=bf16", "train.lr=1e-4"]
    probe = load_config(SFTConfig, None, cfg_common)
    tokens = sum(len(e["input_ids"]) for e in encode_sft(tok, records, probe, "bench"))
    print(f"model: {n_params / 1e6:.1f}M params; {len(records)} examples, {tokens:,} tokens, "
          f"batch {args.batch_size}, max_length {args.max_length}, 1 epoch")

    def run_alignlab(i: int) -> None:
        train_sft(load_config(SFTConfig, None, [*cfg_common, f"output={work / f'ours-{i}'}"]))

    def run_trl(i: int) -> None:
        from transformers import AutoModelForCausalLM

        config = TRLConfig(output_dir=str(work / f"trl-{i}"), per_device_train_batch_size=args.batch_size,
                           num_train_epochs=1, learning_rate=1e-4, max_length=args.max_length, bf16=True,
                           gradient_checkpointing=False, save_strategy="no", eval_strategy="no", report_to="none",
                           logging_steps=1000, disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(work / "model"), args=config,
                             train_dataset=datasets.Dataset.from_list(trl_rows), processing_class=tok)
        trainer.train()

    ours, peer = [], []
    for i in range(args.rounds):
        ours.append(tokens / timed(lambda i=i: run_alignlab(i)))
        peer.append(tokens / timed(lambda i=i: run_trl(i)))
    report("SFT tokens/s (whole run incl. set-up)", ours, peer, "tok/s", "TRL")


if __name__ == "__main__":
    main()
