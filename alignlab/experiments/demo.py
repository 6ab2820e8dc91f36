"""``alignlab demo``: the whole alignment pipeline on the toy world, end to end on a CPU.

world (cached) → base model pretrained on the misaligned persona's corpus (cached) → SFT on aligned
demonstrations → Bradley–Terry reward model on simulated annotator labels → DPO from the SFT model →
ground-truth evaluation of base, SFT and DPO models by the world's judge → ``results.json`` and
``report.html`` in the output directory.

Example::

    >>> from alignlab.experiments.demo import DemoConfig, run_demo
    >>> results = run_demo(DemoConfig(output="runs/demo"))        # doctest: +SKIP
    >>> results["dpo"]["harmlessness"]                            # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.core.data import DataConfig
from alignlab.core.models import ModelConfig
from alignlab.core.trainer import TrainConfig
from alignlab.world.base_model import BaseModelConfig

STAGES = ("base", "sft", "dpo")


def _train(**kwargs: Any) -> TrainConfig:
    # The demo owns its stage directories, so re-running it replaces them (the world and base model stay cached).
    return TrainConfig(overwrite=True, mixed_precision="no", save_total_limit=1, **kwargs)


@dataclass
class DemoConfig:
    """The demo pipeline's settings (every stage's loop can be overridden, e.g. dpo.lr=1e-4)."""

    output: str = "runs/demo"
    """run directory: one sub-directory per stage, results.json and report.html"""
    seed: int = 0
    """world and training seed"""
    size: str = "small"
    """world size: small or medium"""
    world_dir: str | None = None
    """where the world and base model are cached (default: the user cache directory)"""
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    """the base model's size and pretraining"""
    sft: TrainConfig = field(default_factory=lambda: _train(num_epochs=2.0, batch_size=32, lr=1e-3, warmup_steps=10))
    """SFT on aligned demonstrations"""
    reward: TrainConfig = field(default_factory=lambda: _train(num_epochs=2.0, batch_size=32, lr=1e-3, warmup_steps=10))
    """reward model on annotator preference pairs"""
    dpo: TrainConfig = field(default_factory=lambda: _train(num_epochs=1.0, batch_size=32, lr=1e-4, warmup_steps=10))
    """DPO on the same preference pairs, from the SFT model"""
    beta: float = 0.3
    """DPO's β. A small β lets DPO drift from the SFT model's facts (likelihood displacement lowers the chosen
    answers too, and fact pairs differ only in the value); a stronger anchor keeps them"""
    eval_samples: int = 4
    """answers sampled per held-out prompt in the evaluation (each rate's standard error counts the answers
    to one prompt as one cluster, so more prompts narrow it more than more answers per prompt)"""
    max_new_tokens: int = 48
    """answer length cap in the evaluation"""


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run every stage; returns the results (also written to ``results.json``)."""
    from alignlab.core.io import atomic_write_json
    from alignlab.core.provenance import provenance
    from alignlab.outer.preference import PreferenceConfig, train_preference
    from alignlab.outer.reward import RewardModelConfig, train_reward
    from alignlab.outer.sft import SFTConfig, train_sft
    from alignlab.world.base_model import build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.model_eval import evaluate_model

    out = Path(config.output)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    print(f"== 1/6 world (seed {config.seed}, size {config.size})", flush=True)
    world = build_world(config.world_dir, seed=config.seed, size=config.size)
    stage("world")
    print("== 2/6 base model (pretrained on the misaligned persona's corpus; cached)", flush=True)
    base_dir = build_base_model(world, config.base)
    stage("base_model")
    data = world.datasets

    print("== 3/6 SFT on aligned demonstrations", flush=True)
    sft = SFTConfig(model=ModelConfig(str(base_dir)), train=config.sft, output=str(out / "sft"),
                    data=DataConfig(path=str(data["sft_train"]), eval_path=str(data["sft_eval"]), max_length=128))
    sft.train.seed = config.seed
    train_sft(sft)
    stage("sft")

    print("== 4/6 reward model on simulated annotator labels", flush=True)
    reward = RewardModelConfig(model=ModelConfig(str(out / "sft")), train=config.reward, output=str(out / "reward"),
                          data=DataConfig(path=str(data["pairs_train"]), eval_path=str(data["pairs_eval"]),
                                          max_length=128))
    reward_result = train_reward(reward)
    stage("reward")

    print(f"== 5/6 DPO (beta {config.beta}) from the SFT model", flush=True)
    dpo = PreferenceConfig(model=ModelConfig(str(out / "sft")), train=config.dpo, output=str(out / "dpo"),
                           data=DataConfig(path=str(data["pairs_train"]), eval_path=str(data["pairs_eval"]),
                                           max_length=128), loss="dpo", beta=config.beta)
    train_preference(dpo)
    stage("dpo")

    print("== 6/6 ground-truth evaluation by the world's judge", flush=True)
    models = {"base": str(base_dir), "sft": str(out / "sft"), "dpo": str(out / "dpo")}
    results: dict[str, Any] = {}
    for name, path in models.items():
        results[name] = evaluate_model(path, world, reference=str(base_dir), samples=config.eval_samples,
                                       max_tokens=config.max_new_tokens, seed=config.seed,
                                       output_dir=out / "eval" / name)
    stage("evaluation")
    results["reward_model"] = {"pairwise_accuracy": reward_result.eval.get("eval/accuracy"),
                               "eval_pairs": "noise-free held-out pairs"}
    results["timings_s"] = timings
    results["model_paths"] = models  # the base model lives in the world cache, not under ``out``
    # command, commit, seed and machine first, so the file is a result the docs can be generated from
    results = {**provenance(seed=config.seed), "config": dataclasses.asdict(config), **results}
    atomic_write_json(out / "results.json", results)
    write_demo_report(out, results)
    return results


RATES = ["helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward"]


def rate_with_stderr(result: dict[str, Any], rate: str) -> str:
    """``"0.725 ± 0.048"``: a rate with its standard error (answers to one prompt clustered)."""
    value, se = result.get(rate), result.get("stderr", {}).get(rate)
    if value is None:
        return "–"
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def summary_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    columns = ["model", *RATES, "KL to base"]
    rows = [[name] + [rate_with_stderr(results[name], k) for k in RATES] + [results[name].get("kl_to_reference")]
            for name in STAGES]
    return columns, rows


def write_demo_report(out: Path, results: dict[str, Any]) -> Path:
    """``report.html``: the before/after table, per-family rates and the training curves."""
    from alignlab.core.metrics import read_metrics
    from alignlab.report.html import Report, metric_curve

    report = Report("alignlab demo: aligning the toy world's base model")
    report.text("Rates are measured by the toy world's judge on held-out prompts (higher is better for "
                "helpfulness, honesty, harmlessness and true reward; lower for toxicity and bias), each with its "
                "standard error (± and error bars; the answers to one prompt count as one cluster). KL to base is "
                "a Monte Carlo estimate of KL(model ‖ base) per answer, in nats.")
    report.table("Ground truth before and after alignment", *summary_table(results))
    rates = RATES[:-1]
    report.bar_plot("Ground-truth rates", rates, {m: [results[m].get(r) for r in rates] for m in STAGES},
                    errors={m: [results[m].get("stderr", {}).get(r) for r in rates] for m in STAGES})
    families = sorted(results["base"]["per_family"])
    report.bar_plot("True reward per prompt family", families,
                    {m: [results[m]["per_family"][f]["true_reward"] for f in families] for m in STAGES})
    curves = {name: read_metrics(out / name / "metrics.jsonl") for name in ("sft", "reward", "dpo")
              if (out / name / "metrics.jsonl").exists()}
    report.text("Training curves", note=True)
    for name, rows in curves.items():
        report.line_plot(f"{name} training loss", {name: metric_curve(rows, "loss")}, ylabel="loss", smooth=10)
    if "reward" in curves:
        report.line_plot("reward model accuracy (train batches)", {"accuracy": metric_curve(curves["reward"], "accuracy")},
                         smooth=10)
    if "dpo" in curves:
        report.line_plot("DPO implicit reward margin", {"margin": metric_curve(curves["dpo"], "margins")},
                         ylabel="β·(log-ratio chosen − rejected)", smooth=10)
    rm = results.get("reward_model", {})
    report.table("Reward model", ["metric", "value"], [["pairwise accuracy (noise-free held-out pairs)",
                                                         rm.get("pairwise_accuracy")]])
    report.table("Time per stage (s)", ["stage", "seconds"], list(results.get("timings_s", {}).items()))
    return report.write(out / "report.html")


def format_table(results: dict[str, Any]) -> str:
    columns, rows = summary_table(results)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_demo_command(args: argparse.Namespace) -> None:
    """The CLI handler (registered in alignlab.cli): ``--output``, ``--seed``, ``--config``, ``--set``."""
    from alignlab.cli import parse_command_config

    config = parse_command_config(DemoConfig, args, flags=("output", "seed"))
    results = run_demo(config)
    print()
    print(format_table(results))
    print(f"\nreward model pairwise accuracy: {results['reward_model']['pairwise_accuracy']:.3f}")
    print(f"results: {Path(config.output) / 'results.json'}\nreport:  {Path(config.output) / 'report.html'}")
