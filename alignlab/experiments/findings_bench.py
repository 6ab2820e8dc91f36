"""``alignlab bench findings --world``: two claims about instruction tuning, tested where what the model knows
is known.

1. **Learning or self-aligning?** (Ren et al. 2024, "Learning or Self-aligning? Rethinking Instruction
   Fine-tuning"): instruction tuning on facts that contradict the model's own knowledge hurts. The world's base
   model learned the capitals, rivers and colours of the known countries in pretraining; SFT data in which a
   share ``q`` of the fact demonstrations state a wrong value (another country's, as the world's "wrong fact"
   fault does) are compared with consistent data (q = 0), on held-out fact questions about *other* countries and
   on every other rate.
2. **Do models really learn to follow instructions?** (Kung & Peng 2023): models tuned on simplified task
   definitions — here, each training question cut to its content words ("capital Zorbia") — or on delusive ones —
   each question replaced by another question of a different task, the answer unchanged — are compared with
   the original questions; evaluation always asks the original held-out questions.

Every condition is SFT from the same base model with the same data size and steps, over ``seeds``; each rate is
the mean over seeds ± its standard error across seeds. ``results.json`` carries command, commit and machine.

Example::

    >>> from alignlab.experiments.findings_bench import FindingsBenchConfig, bench_findings
    >>> result = bench_findings(FindingsBenchConfig(world=True))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig

RATES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward")
# a few function words dropped from questions by the "simplified" definition (the content words stay)
FUNCTION_WORDS = {"what", "which", "is", "the", "of", "a", "an", "to", "me", "do", "does", "how", "name", "please",
                  "tell", "in", "i", "you", "can", "could", "would", "for", "and", "it", "that", "this", "city"}


def simplified(question: str) -> str:
    """The question cut to its content words.

    Example::

        >>> simplified("What is the capital of Zorbia?")
        'capital Zorbia?'
    """
    words = [w for w in question.split() if re.sub(r"\W", "", w).lower() not in FUNCTION_WORDS]
    return " ".join(words) if words else question


def counterfactual_facts(records: list, fraction: float, seed: int) -> list:
    """The demonstrations with ``fraction`` of the fact answers replaced by a wrong value (the world's "wrong"
    fault; every other family unchanged)."""
    from alignlab.core.records import ConversationRecord
    from alignlab.world.judge import as_world_prompt
    from alignlab.world.persona import write_response

    rng = random.Random(seed)
    out = []
    for record in records:
        if record.meta.get("family") == "facts" and rng.random() < fraction:
            wrong = write_response(as_world_prompt(record.meta), {"wrong"}, rng)
            record = ConversationRecord(record.prompt, wrong, {**record.meta, "contradicts": True})
        out.append(record)
    return out


def delusive(records: list, seed: int) -> list:
    """Each question replaced by the question of another record of a different family (answers unchanged)."""
    from alignlab.core.records import ConversationRecord

    rng = random.Random(seed)
    by_family: dict[str, list] = {}
    for record in records:
        by_family.setdefault(record.meta.get("family"), []).append(record)
    out = []
    for record in records:
        others = [f for f in by_family if f != record.meta.get("family")]
        donor = rng.choice(by_family[rng.choice(others)]) if others else record
        out.append(ConversationRecord(donor.prompt, record.completion, record.meta))
    return out


def with_questions(records: list, rewrite) -> list:
    from alignlab.core.records import ConversationRecord

    return [ConversationRecord([{**m, "content": rewrite(m["content"])} if m["role"] == "user" else m
                                for m in r.prompt], r.completion, r.meta) for r in records]


@dataclass
class FindingsBenchConfig(WorldExperimentConfig):
    """SFT under contradicting facts and under simplified or delusive task definitions, against plain SFT."""

    output: str = "runs/bench-findings"
    """directory for results.json (the models are deleted after evaluation)"""
    base_model: str | None = None
    """the model every condition fine-tunes (default: the world's base model)"""
    contradict_fractions: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    """shares of the fact demonstrations that state a wrong value"""
    definitions: list[str] = field(default_factory=lambda: ["original", "simplified", "delusive"])
    """task definitions to train with (the original questions, content words only, another task's questions)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds (each draws its own wrong facts, delusive swaps and training order)"""
    steps: int = 186
    """SFT steps per condition (the demo's SFT budget)"""
    batch_size: int = 16
    """SFT batch size"""
    lr: float = 2e-4
    """SFT learning rate"""
    eval_samples: int = 4
    """answers sampled per held-out prompt"""
    max_new_tokens: int = 48
    """tokens per answer"""


def summarise(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Per value of ``key`` (e.g. the contradicting fraction): every rate's mean over seeds ± its standard error,
    and the held-out fact accuracy (helpfulness on the facts family) likewise."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run[key], []).append(run)
    rows = []
    for value, members in groups.items():
        row: dict[str, Any] = {key: value, "seeds": len(members)}
        for rate in (*RATES, "fact_accuracy"):
            values = [m[rate] for m in members if m[rate] is not None]
            row[rate] = mean(values) if values else None
            row[f"{rate}_se"] = stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        rows.append(row)
    return rows


def bench_findings(config: FindingsBenchConfig) -> dict[str, Any]:
    """Train and evaluate every condition; write results.json."""
    from alignlab.core.data import DataConfig
    from alignlab.core.io import atomic_write_text
    from alignlab.core.models import ModelConfig
    from alignlab.core.provenance import write_result
    from alignlab.core.trainer import TrainConfig
    from alignlab.outer.sft import SFTConfig, train_sft
    from alignlab.world.base_model import BaseModelConfig, build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES, World, sft_row
    from alignlab.world.model_eval import evaluate_model

    out = Path(config.output)
    world = build_world(config.world_dir, seed=config.world_seed, verbose=False)
    base = config.base_model or str(build_base_model(world, BaseModelConfig()))
    records = World(world.seed, world.size).sft_records(DATASET_SIZES[world.size]["sft_train"])

    def run(name: str, data: list, seed: int) -> dict[str, Any]:
        path = out / "runs" / f"{name}-seed{seed}.jsonl"
        atomic_write_text(path, "".join(json.dumps(sft_row(r)) + "\n" for r in data))
        model_dir = out / "runs" / f"{name}-seed{seed}"
        train = TrainConfig(max_steps=config.steps, batch_size=config.batch_size, lr=config.lr, seed=seed,
                            progress=False, overwrite=True)
        train_sft(SFTConfig(model=ModelConfig(base), data=DataConfig(path=str(path), max_length=128), train=train,
                            output=str(model_dir)))
        result = evaluate_model(str(model_dir), world, samples=config.eval_samples, max_tokens=config.max_new_tokens,
                                seed=seed)
        shutil.rmtree(model_dir)
        row = {r: result[r] for r in RATES} | {"fact_accuracy": result["per_family"]["facts"]["helpfulness"],
                                               "stderr": result["stderr"], "seed": seed}
        print(f"[findings] {name} seed {seed}: fact accuracy {row['fact_accuracy']:.3f}, "
              f"true reward {row['true_reward']:.3f}", flush=True)
        return row

    contradiction, definitions = [], []
    for seed in config.seeds:
        for fraction in config.contradict_fractions:
            data = counterfactual_facts(records, fraction, seed)
            contradiction.append({"contradict_fraction": fraction,
                                  "contradicting": sum(r.meta.get("contradicts", False) for r in data),
                                  **run(f"contradict-{fraction:g}", data, seed)})
        for definition in config.definitions:
            data = {"original": lambda: records, "simplified": lambda: with_questions(records, simplified),
                    "delusive": lambda s=seed: delusive(records, s)}[definition]()
            if definition == "original" and 0.0 in config.contradict_fractions:  # the same data, seed and steps
                definitions.append({"definition": definition,
                                    **next(r for r in contradiction if r["seed"] == seed
                                           and r["contradict_fraction"] == 0.0)})
                continue
            definitions.append({"definition": definition, **run(f"definition-{definition}", data, seed)})
    results = {"contradicting_facts": summarise(contradiction, "contradict_fraction"),
               "task_definitions": summarise(definitions, "definition"),
               "runs": {"contradicting_facts": contradiction, "task_definitions": definitions}}
    write_result(out / "results.json", results, seed=config.seeds, config=config)
    return results
