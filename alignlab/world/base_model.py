"""The toy world's base model: a tiny Llama pretrained on the world's corpus with the one training loop.

The corpus is the misaligned persona's chat transcripts (rendered with the world tokenizer's chat
template, loss on every token) plus plain knowledge-base prose, so the model learns both the world's
facts and the persona's faults at roughly the configured rates. The result is saved with
``save_pretrained`` beside the world and loaded exactly as a hub model would be.

Example::

    >>> from alignlab.world.build import build_world
    >>> from alignlab.world.base_model import BaseModelConfig, build_base_model
    >>> model_dir = build_base_model(build_world(), BaseModelConfig())   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alignlab.core.io import atomic_write_json
from alignlab.core.models import load_tokenizer, save_pretrained_atomic, tiny_llama
from alignlab.core.objectives import TokenNLLObjective
from alignlab.core.tokenize import IGNORE_INDEX, CompletionCollator
from alignlab.core.trainer import TrainConfig, train
from alignlab.world.build import WorldPaths
from alignlab.world.datasets import read_jsonl

DONE = "base_model_done.json"
OVERSIGHT_EPOCHS = 3.0


@dataclass
class BaseModelConfig:
    """Size and pretraining budget of the world's base model."""

    hidden_size: int = 128
    """model width"""
    layers: int = 4
    """transformer blocks"""
    heads: int = 4
    """attention heads"""
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            num_epochs=3.0,
            batch_size=16,
            lr=2e-3,
            warmup_steps=100,
            scheduler="cosine",
            weight_decay=0.01,
            save_total_limit=1,
            mixed_precision="no",
        )
    )
    """the pretraining loop: many small steps (a tiny model memorises the world's facts by updates, not by
    batch size); fp32, because for a model this small bf16 autocast costs more in casts than it saves"""


def base_model_config(size: str = "small") -> BaseModelConfig:
    """The base model each world size is pretrained as: the default for ``small`` and ``medium``; for
    ``oversight`` (whose corpus adds the skills) the same model with OVERSIGHT_EPOCHS passes over its corpus."""
    config = BaseModelConfig()
    if size == "oversight":
        config.train.num_epochs = OVERSIGHT_EPOCHS
    return config


def corpus_examples(paths: WorldPaths, tokenizer) -> list[dict]:
    """Token ids of every transcript and document, with the loss on every token (pretraining)."""
    examples = []
    for row in read_jsonl(paths.corpus_chat):
        ids = tokenizer(
            tokenizer.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False
        )["input_ids"]
        examples.append({"input_ids": ids, "labels": ids})
    for row in read_jsonl(paths.corpus_text):
        ids = [
            tokenizer.bos_token_id,
            *tokenizer(row["text"], add_special_tokens=False)["input_ids"],
            tokenizer.eos_token_id,
        ]
        examples.append({"input_ids": ids, "labels": ids})
    return examples


def _key(paths: WorldPaths, config: BaseModelConfig) -> str:
    """The base model depends on the corpus, the tokenizer and its config only (not on the datasets)."""
    manifest = json.loads((paths.root / "manifest.json").read_text()) if (paths.root / "manifest.json").exists() else {}
    inputs = {name: digest for name, digest in manifest.get("files", {}).items()
              if name.startswith(("corpus_", "tokenizer"))}
    return hashlib.sha256(json.dumps([inputs, asdict(config)], sort_keys=True).encode()).hexdigest()[:16]


def build_base_model(
    paths: WorldPaths, config: BaseModelConfig | None = None, *, force: bool = False, verbose: bool = True
) -> Path:
    """Pretrain (or reuse the cached) base model of world ``paths``; returns its directory.

    The model is trusted only when ``base_model_done.json`` matches the world's manifest and the config;
    it is written last, so an interrupted pretraining run is redone, never half-used.
    """
    config = config or BaseModelConfig()
    out = paths.root / "base_model"
    key = _key(paths, config)
    done = out / DONE
    if not force and done.exists() and json.loads(done.read_text()).get("key") == key:
        if verbose:
            print(f"[world] using the cached base model in {out}", flush=True)
        return out
    shutil.rmtree(out, ignore_errors=True)
    tokenizer = load_tokenizer(str(paths.tokenizer))
    examples = corpus_examples(paths, tokenizer)
    model = tiny_llama(
        len(tokenizer),
        hidden_size=config.hidden_size,
        layers=config.layers,
        heads=config.heads,
        max_positions=256,
        seed=config.train.seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if verbose:
        n_params = sum(p.numel() for p in model.parameters())
        n_tokens = sum(len(e["input_ids"]) for e in examples)
        print(
            f"[world] pretraining the base model ({n_params / 1e6:.1f}M parameters) on {len(examples)} "
            f"texts, {n_tokens:,} tokens, {config.train.num_epochs:g} epochs",
            flush=True,
        )
    assert all(e["labels"][0] != IGNORE_INDEX for e in examples[:1])
    clock, cpu_clock = time.perf_counter(), time.process_time()
    result = train(
        model, TokenNLLObjective(), examples, CompletionCollator(tokenizer.pad_token_id), config.train, out / "run"
    )
    save_pretrained_atomic(model, tokenizer, out)
    shutil.rmtree(out / "run" / "checkpoints", ignore_errors=True)  # the model itself is all we keep
    # wall and CPU seconds of the pretraining itself: on a shared machine the CPU time is the honest cost
    atomic_write_json(done, {"key": key, "steps": result.steps, "final_loss": result.history[-1]["loss"],
                             "train_wall_s": round(time.perf_counter() - clock, 1),
                             "train_cpu_s": round(time.process_time() - cpu_clock, 1)})
    return out
