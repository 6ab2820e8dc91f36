"""``alignlab bench selection --world``: how much of the SFT data does the toy world's base model need, and does
choosing it well beat choosing it at random? (LIMA-style small-data SFT; core-set selection.)

For each fraction of the world's demonstrations (default 1%, 5%, 25%), each selector of
:mod:`alignlab.outer.selection` and each seed, SFT from the world's base model on the chosen subset for the
same number of passes, then the world's evaluation protocol (held-out prompts, sampled answers, the judge; rates
with clustered standard errors). The full data set is trained once per seed as the ceiling. Results: the mean
over seeds of every rate with its standard error across seeds, per (fraction, selector), in ``results.json``
(with command, commit, seed and machine) and a figure in ``report.html``.

Example::

    >>> from alignlab.experiments.selection_bench import SelectionBenchConfig, bench_selection
    >>> rows = bench_selection(SelectionBenchConfig(world=True, seeds=[0]))   # doctest: +SKIP
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig
from alignlab.outer.selection import SELECTORS

RATES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward")


@dataclass
class SelectionBenchConfig(WorldExperimentConfig):
    """SFT on chosen fractions of the toy world's demonstrations, by each selector, over seeds."""

    output: str = "runs/bench-selection"
    """directory for results.json, report.html and the runs (the runs' models are deleted after evaluation)"""
    world_size: str = "small"
    """world size (when the world is built here)"""
    base_model: str | None = None
    """the model every run fine-tunes (default: the world's base model, pretrained and cached on first use)"""
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.25])
    """shares of the demonstrations to train on"""
    selectors: list[str] = field(default_factory=lambda: ["random", "kcenter", "kmeans_kcenter"])
    """selectors to compare (alignlab.outer.selection.SELECTORS)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds: each draws its own random subset, k-means start and training order"""
    epochs: float = 2.0
    """passes over the chosen subset (the same for every selector, so a fraction's runs get the same steps)"""
    full_data: bool = True
    """also train on all demonstrations (once per seed), the ceiling a subset is measured against"""
    batch_size: int = 16
    """examples per optimiser step"""
    lr: float = 2e-4
    """learning rate"""
    eval_samples: int = 4
    """answers sampled per held-out prompt"""
    max_new_tokens: int = 48
    """tokens generated per answer"""

    def __post_init__(self) -> None:
        unknown = [s for s in self.selectors if s not in SELECTORS]
        if unknown:
            raise ValueError(f"unknown selectors {unknown}; choose from {', '.join(SELECTORS)}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1], got {self.fractions}")


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (fraction, selector): every rate's mean over seeds and its standard error across seeds.

    Example::

        >>> rows = aggregate([{"fraction": 0.1, "selector": "random", "seed": s, "true_reward": r,
        ...                    **{k: 0.5 for k in RATES if k != "true_reward"}} for s, r in [(0, 1.0), (1, 2.0)]])
        >>> rows[0]["true_reward"], round(rows[0]["true_reward_se"], 3), rows[0]["seeds"]
        (1.5, 0.5, 2)
    """
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["fraction"], run["selector"]), []).append(run)
    rows = []
    for (fraction, selector), members in sorted(groups.items()):
        row: dict[str, Any] = {"fraction": fraction, "selector": selector, "seeds": len(members),
                               "examples": members[0].get("examples")}
        for rate in RATES:
            values = [m[rate] for m in members if m[rate] is not None]
            row[rate] = mean(values) if values else None
            row[f"{rate}_se"] = stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        rows.append(row)
    return rows


def bench_selection(config: SelectionBenchConfig) -> list[dict[str, Any]]:
    """Run every (fraction, selector, seed) and the full-data runs; write results.json and report.html."""
    import json

    from alignlab.core.data import DataConfig
    from alignlab.core.io import atomic_write_text
    from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer
    from alignlab.core.provenance import write_result
    from alignlab.core.readers import read_records
    from alignlab.core.trainer import TrainConfig
    from alignlab.outer.selection import SelectConfig, embed_records, select_records
    from alignlab.outer.sft import SFTConfig, train_sft
    from alignlab.world.base_model import BaseModelConfig, build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.model_eval import evaluate_model

    out = Path(config.output)
    world = build_world(config.world_dir, seed=config.world_seed, size=config.world_size, verbose=False)
    base = config.base_model or str(build_base_model(world, BaseModelConfig()))
    source = str(world.datasets["sft_train"])
    records = read_records(source, "conversation")
    print(f"[selection] embedding {len(records)} demonstrations with the base model", flush=True)
    embeddings = embed_records(load_causal_lm(base), load_tokenizer(base), records)

    runs: list[dict[str, Any]] = []

    def train_and_evaluate(name: str, rows: list[int], seed: int, fraction: float, selector: str) -> None:
        run_dir = out / "runs" / name
        subset = run_dir.parent / f"{name}.jsonl"
        atomic_write_text(subset, "".join(json.dumps({"prompt": records[i].prompt, "completion": [
            {"role": "assistant", "content": records[i].completion}]}) + "\n" for i in sorted(rows)))
        steps = max(1, math.ceil(config.epochs * len(rows) / config.batch_size))
        train = TrainConfig(max_steps=steps, batch_size=config.batch_size, lr=config.lr, seed=seed,
                            warmup_steps=min(10, steps // 10), progress=False, overwrite=True)
        train_sft(SFTConfig(model=ModelConfig(base), data=DataConfig(path=str(subset), max_length=128), train=train,
                            output=str(run_dir)))
        result = evaluate_model(str(run_dir), world, samples=config.eval_samples, max_tokens=config.max_new_tokens,
                                seed=seed)
        runs.append({"fraction": fraction, "selector": selector, "seed": seed, "examples": len(rows), "steps": steps,
                     **{rate: result[rate] for rate in RATES}, "stderr": result["stderr"]})
        print(f"[selection] {name}: {len(rows)} examples, {steps} steps, true reward {result['true_reward']:.3f}",
              flush=True)
        shutil.rmtree(run_dir)  # keep the numbers, not 30 models

    for seed in config.seeds:
        for fraction in config.fractions:
            for selector in config.selectors:
                chosen = select_records(SelectConfig(data=source, selector=selector, fraction=fraction, seed=seed),
                                        records, embeddings)
                train_and_evaluate(f"{selector}-{fraction:g}-seed{seed}", chosen, seed, fraction, selector)
        if config.full_data:
            train_and_evaluate(f"all-seed{seed}", list(range(len(records))), seed, 1.0, "all")
    rows = aggregate(runs)
    write_result(out / "results.json", {"rows": rows, "runs": runs}, seed=config.seeds, config=config)
    _report(rows).write(out / "report.html")
    return rows


def _report(rows: list[dict[str, Any]]):
    from alignlab.report.html import Report

    report = Report("alignlab bench selection: small-data SFT on the toy world")
    report.text("SFT from the world's base model on a chosen share of its demonstrations; every rate is the mean "
                "over seeds of the world judge's verdicts on held-out prompts, ± its standard error across seeds.")
    columns = ["fraction", "selector", "examples", *[f"{r} (± se)" for r in RATES]]
    report.table("Rates by fraction and selector", columns, [
        [r["fraction"], r["selector"], r["examples"],
         *[f"{r[k]:.3f} ± {r[k + '_se']:.3f}" if r[k + "_se"] is not None else r[k] for k in RATES]] for r in rows])
    selectors = sorted({r["selector"] for r in rows if r["selector"] != "all"})
    report.line_plot("True reward against the share of the data", {
        s: [(r["fraction"], r["true_reward"]) for r in rows if r["selector"] in (s, "all")] for s in selectors},
        xlabel="share of the demonstrations", ylabel="true reward")
    return report
