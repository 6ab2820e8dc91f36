"""``alignlab bench sensei --world``: SENSEI's critic and actor heads on the world's SFT model, against the SFT
model itself, over seeds.

For each seed: SENSEI (:mod:`alignlab.outer.sensei`) samples ``samples_per_prompt`` answers to ``train_prompts``
training prompts from the SFT model, the world's judge scores them (true reward), and the two heads train on the
frozen SFT model. Then the SFT model (full vocabulary), the truncation-only control (the SFT model cut to the
same ``top_k`` tokens the actor chooses among: SENSEI at strength 0) and SENSEI at each ``strengths`` answer the
held-out prompts ``eval_samples`` times each; the judge grades them (true reward, helpfulness, honesty,
harmlessness, toxicity, bias), with the KL to the SFT model per answer, the heads' training seconds and
generation speed. Each steered row also records, per seed, its gain over the truncation-only control
(``<rate>_gain``: what the heads add beyond top-k sampling). ``results.json`` holds every seed's rows and the
mean ± standard error over seeds.

Example::

    >>> from alignlab.experiments.sensei_bench import SenseiBenchConfig, bench_sensei
    >>> result = bench_sensei(SenseiBenchConfig(world=True, sft_model="runs/sft"))   # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig

RATES = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")


@dataclass
class SenseiBenchConfig(WorldExperimentConfig):
    """SENSEI heads on the world's SFT model against the SFT model, over seeds."""

    output: str = "runs/bench-sensei"
    """directory for results.json and each seed's SENSEI run"""
    sft_model: str | None = None
    """the shared LM (default: trained as the offline bench does)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds (training answers, head initialisation order, evaluation samples)"""
    train_prompts: int = 200
    """training prompts whose answers the judge scores"""
    samples_per_prompt: int = 4
    """answers sampled per training prompt"""
    epochs: float = 3.0
    """passes of the heads over the scored answers"""
    lr: float = 3e-3
    """the heads' learning rate"""
    beta: float = 0.5
    """the actor's KL strength"""
    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0])
    """steering strengths evaluated (the SFT model and its top-k truncation are always evaluated)"""
    top_k: int = 10
    """the actor chooses among the SFT model's k most likely tokens (also the truncation-only control's k)"""
    eval_samples: int = 2
    """answers sampled (temperature 1) per held-out prompt"""
    max_new_tokens: int = 48
    """tokens per answer (training and evaluation)"""


def top_k_control(k: int) -> str:
    """The name of the truncation-only row: the SFT model sampled from its top k tokens, no heads."""
    return f"SFT model, top {k} only"


def evaluate_steered(model, reference, tokenizer, prompts: list, *, samples: int, max_tokens: int, seed: int
                     ) -> dict[str, Any]:
    """The judge's rates of ``model``'s answers to ``prompts``, the KL to ``reference`` per answer and tokens/s."""
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.evaluate import evaluate_responses
    from alignlab.world.model_eval import kl_estimate, sample_answers

    sampled = sample_answers(HuggingFaceLM(model, tokenizer), prompts, samples=samples, max_tokens=max_tokens,
                             temperature=1.0, seed=seed)
    scores = evaluate_responses(sampled.prompts, sampled.answers)
    return {**{r: scores[r] for r in RATES}, "stderr": {r: scores["stderr"].get(r) for r in RATES},
            "kl_to_sft": kl_estimate(model, reference, sampled, pad_token_id=tokenizer.pad_token_id),
            "tokens_per_s": sampled.generated.num_tokens / max(sampled.generated.seconds, 1e-9)}


def summarise(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{row name: {key: {mean, se}}} over the seeds' runs (each {"rows": {name: {key: value}}})."""
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in runs[0]["rows"]:
        summary[name] = {}
        for key in keys:
            values = [run["rows"][name][key] for run in runs if run["rows"][name].get(key) is not None]
            summary[name][key] = {"mean": statistics.fmean(values) if values else None,
                                  "se": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None}
    return summary


def bench_sensei(config: SenseiBenchConfig) -> dict[str, Any]:
    """Train SENSEI per seed, evaluate it against the SFT model; write results.json with provenance."""
    from alignlab.core.data import DataConfig
    from alignlab.core.generation import GenerationConfig
    from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer
    from alignlab.core.provenance import write_result
    from alignlab.core.trainer import TrainConfig
    from alignlab.experiments.bench import BenchConfig, world_and_sft
    from alignlab.outer.online.rewards import RewardSourceConfig
    from alignlab.outer.sensei import SenseiConfig, load_sensei, train_sensei
    from alignlab.world.datasets import load_prompts

    out = Path(config.output)
    world, sft = world_and_sft(BenchConfig(world=True, world_dir=config.world_dir, world_seed=config.world_seed,
                                           sft_model=config.sft_model, output=str(out)))
    tokenizer = load_tokenizer(sft)
    reference = load_causal_lm(sft).eval()
    prompts = load_prompts(world.datasets["prompts_eval"])
    runs = []
    for seed in config.seeds:
        run_dir = out / f"seed-{seed}"
        start = time.perf_counter()
        train_sensei(SenseiConfig(
            model=ModelConfig(sft), output=str(run_dir), reward=RewardSourceConfig(source="world"),
            data=DataConfig(path=str(world.datasets["prompts_train"]), limit=config.train_prompts),
            generation=GenerationConfig(max_new_tokens=config.max_new_tokens, seed=seed),
            samples_per_prompt=config.samples_per_prompt, beta=config.beta, top_k=config.top_k,
            train=TrainConfig(lr=config.lr, batch_size=16, num_epochs=config.epochs, seed=seed, progress=False,
                              overwrite=True)))
        seconds = time.perf_counter() - start
        sensei = load_sensei(run_dir)
        control = top_k_control(config.top_k)
        models = {"SFT model": sensei.with_strength(0.0, top_k=0), control: sensei.with_strength(0.0),
                  **{f"SENSEI (strength {s:g})": sensei.with_strength(s) for s in config.strengths}}
        rows = {}
        for name, model in models.items():
            rows[name] = evaluate_steered(model, reference, tokenizer, prompts, samples=config.eval_samples,
                                          max_tokens=config.max_new_tokens, seed=seed)
            rows[name]["train_seconds"] = seconds if model.strength else 0.0
            if model.strength:
                rows[name].update({f"{r}_gain": rows[name][r] - rows[control][r] for r in RATES})
            print(f"[sensei] seed {seed} {name}: " + ", ".join(f"{r} {rows[name][r]:.3f}" for r in RATES)
                  + f", KL {rows[name]['kl_to_sft']:.3f}", flush=True)
        runs.append({"seed": seed, "rows": rows})
    keys = (*RATES, "kl_to_sft", "train_seconds", "tokens_per_s", *(f"{r}_gain" for r in RATES))
    result = {"summary": summarise(runs, keys), "runs": runs, "sft_model": sft, "control": control}
    write_result(out / "results.json", result, seed=config.seeds, config=config)
    return result
