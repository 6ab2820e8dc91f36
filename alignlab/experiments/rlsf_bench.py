"""``alignlab bench rlsf --world``: reward models from synthetic feedback against human-style labels.

RLSF (Kim et al. 2023, "Aligning Large Language Models through Synthetic Feedback") builds reward-model data
without labels: responses from a stronger generator (larger, better prompted) are assumed better than a weaker
generator's for the same prompt. On the toy world the assumption itself is measurable: the judge's true reward
says how often the "better by construction" answer really is better (the synthetic labels' accuracy).

Per seed: each of ``pairs`` training prompts is answered by the strong generator (the SFT model) and the weak
one (the base model); the pair (strong, weak) is a synthetic preference. A reward model is trained on those
pairs, and another on the same number of the world's annotator-labelled pairs (noisy human-style labels);
both are scored on the world's noise-free held-out pairs. Results: each reward model's held-out accuracy and
the synthetic labels' accuracy, mean ± standard error over seeds, with command, commit and machine.

Example::

    >>> from alignlab.experiments.rlsf_bench import RLSFBenchConfig, bench_rlsf
    >>> result = bench_rlsf(RLSFBenchConfig(world=True))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig


@dataclass
class RLSFBenchConfig(WorldExperimentConfig):
    """Reward models from synthetic (by-construction) preferences against annotator labels at equal data."""

    output: str = "runs/bench-rlsf"
    """directory for results.json, the pairs and the reward models"""
    strong_model: str | None = None
    """the better generator (default: an SFT model trained from the base model, as the offline bench does)"""
    weak_model: str | None = None
    """the weaker generator (default: the world's base model)"""
    pairs: int = 600
    """preference pairs per reward model (synthetic and annotator-labelled alike)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds: each draws its own prompts, samples, annotator pairs and training order"""
    reward_steps: int = 150
    """reward-model training steps"""
    batch_size: int = 16
    """pairs per reward-model step"""
    lr: float = 1e-4
    """reward-model learning rate"""
    max_new_tokens: int = 48
    """tokens per generated answer"""


def synthetic_pairs(prompts: list[Any], strong_answers: list[str], weak_answers: list[str]) -> list[dict[str, Any]]:
    """Preference rows (strong chosen, weak rejected) for each prompt where the two answers differ.

    Example::

        >>> p = [[{"role": "user", "content": "Hi"}]] * 2
        >>> [r["chosen"][0]["content"] for r in synthetic_pairs(p, ["Hello!", "Same."], ["Go away.", "Same."])]
        ['Hello!']
    """
    return [{"prompt": prompt, "chosen": [{"role": "assistant", "content": strong}],
             "rejected": [{"role": "assistant", "content": weak}]}
            for prompt, strong, weak in zip(prompts, strong_answers, weak_answers) if strong.strip() != weak.strip()]


def bench_rlsf(config: RLSFBenchConfig) -> dict[str, Any]:
    """Build synthetic pairs, train both reward models per seed, evaluate; write results.json."""
    from alignlab.core.data import DataConfig
    from alignlab.core.io import atomic_write_text
    from alignlab.core.models import ModelConfig
    from alignlab.core.provenance import write_result
    from alignlab.core.readers import read_records
    from alignlab.core.trainer import TrainConfig
    from alignlab.errors import ConfigError
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.experiments.bench import BenchConfig, world_and_sft
    from alignlab.outer.reward import RewardModelConfig, train_reward
    from alignlab.world.base_model import build_base_model
    from alignlab.world.datasets import load_prompts
    from alignlab.world.evaluate import evaluate_responses

    out = Path(config.output)
    world, strong = world_and_sft(BenchConfig(world=True, world_dir=config.world_dir, world_seed=config.world_seed,
                                              sft_model=config.strong_model, output=str(out)))
    weak = config.weak_model or str(build_base_model(world))
    prompts = load_prompts(world.datasets["prompts_train"])
    annotated = [json.loads(line) for line in Path(world.datasets["pairs_train"]).read_text().splitlines()]
    runs = []
    for seed in config.seeds:
        rng = random.Random(seed)
        chosen_prompts = rng.sample(prompts, min(config.pairs, len(prompts)))
        answers = {}
        for name, path in (("strong", strong), ("weak", weak)):
            lm = HuggingFaceLM(path)
            answers[name] = lm.complete([lm.encode_prompt(p.messages) for p in chosen_prompts],
                                        max_tokens=config.max_new_tokens, temperature=1.0, seed=seed).texts
        rows = synthetic_pairs([p.messages for p in chosen_prompts], answers["strong"], answers["weak"])
        kept = [p for p, s, w in zip(chosen_prompts, answers["strong"], answers["weak"]) if s.strip() != w.strip()]
        # how often "better by construction" is better by the world's true reward (ties count half)
        truth = {side: evaluate_responses(kept, [r[side][0]["content"] for r in rows], per_response=True)["true_rewards"]
                 for side in ("chosen", "rejected")}
        margins = [c - r for c, r in zip(truth["chosen"], truth["rejected"])]
        if not rows:
            raise ConfigError(f"seed {seed}: the strong and weak generators answered every prompt alike, so there "
                              "are no synthetic pairs; use generators that differ")
        label_accuracy = mean(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins)
        data = {"synthetic": rows, "annotated": rng.sample(annotated, min(len(rows), len(annotated)))}
        run: dict[str, Any] = {"seed": seed, "pairs": len(rows), "synthetic_label_accuracy": label_accuracy}
        for name, pairs in data.items():
            path = out / f"seed{seed}" / f"{name}_pairs.jsonl"
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in pairs))
            train = TrainConfig(max_steps=config.reward_steps, batch_size=config.batch_size, lr=config.lr, seed=seed,
                                progress=False, overwrite=True)
            result = train_reward(RewardModelConfig(
                model=ModelConfig(strong), train=train, output=str(out / f"seed{seed}" / f"rm_{name}"),
                data=DataConfig(path=str(path), eval_path=str(world.datasets["pairs_eval"]), max_length=128)))
            run[f"{name}_rm_accuracy"] = result.eval.get("eval/accuracy")
        runs.append(run)
        print(f"[rlsf] seed {seed}: {run}", flush=True)
    summary = {}
    for key in ("synthetic_label_accuracy", "synthetic_rm_accuracy", "annotated_rm_accuracy"):
        values = [r[key] for r in runs if r[key] is not None]
        summary[key] = {"mean": mean(values) if values else None,
                        "se": stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None}
    eval_pairs = len(read_records(str(world.datasets["pairs_eval"]), "pair"))
    write_result(out / "results.json", {"summary": summary, "runs": runs, "eval_pairs": eval_pairs},
                 seed=config.seeds, config=config)
    return {"summary": summary, "runs": runs}
