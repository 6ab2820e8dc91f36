"""``alignlab bench blackbox --world``: black-box steering of frozen LMs on the toy world (DSP and RL4F).

DSP: the frozen LM is an SFT model of the small world (``sft_model``; default: one trained once with the demo's
settings, as the offline bench does); the hint writer starts from the small world's pretrained base model, is warm-started on keywords
of the world's good answers (``sft_train``) and trained by GRPO with the frozen LM's judged answer as reward. On
the held-out prompts the frozen LM answers (at ``frozen_temperature``) with no hint, with the untrained policy's
hints, the warm start's, DSP's, and the keywords of the world's good answer (an oracle hint).

RL4F: the frozen LM is the oversight world's pretrained base model (it has the refinement skill: improve an
answer given feedback); the critic starts from the same base model, is warm-started on the world's feedback about
the fault each first answer shows, and trained by GRPO with the revision's true-reward gain as reward. On held-out
prompts the frozen LM's first answers (sampled at ``answer_temperature``) are kept, or revised after the critique
of the untrained critic, the warm start, RL4F, or the world's feedback itself (an oracle critic).

Reported per condition over ``seeds`` (each seed trains its own policies and draws its own answers): the judge's
true reward, helpfulness, honesty, harmlessness, toxicity and bias rates, the fault rate (answers showing a fault the
world names) and the gain in true reward over the frozen LM alone (paired: each condition's answers are sampled with
the same seeds), mean ± standard error in ``results.json``; and per seed the RL stage's reward over its first and
last steps and the training wall time.

Example::

    >>> result = bench_blackbox(BlackboxBenchConfig(world=True, seeds=[0]))   # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

DIMENSIONS = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")


@dataclass
class BlackboxBenchConfig:
    """DSP hints for the small world's SFT model and RL4F critiques for the oversight world's base model."""

    world: bool = False
    """benchmark on the toy world (required)"""
    output: str = "runs/bench-blackbox"
    """directory for results.json and each seed's runs"""
    methods: list[str] = field(default_factory=lambda: ["dsp", "rl4f"])
    """which methods to run: dsp, rl4f"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """training seeds (policies, sampled answers)"""
    world_seed: int = 0
    """world seed (the small world for DSP and the oversight world for RL4F)"""
    sft_model: str | None = None
    """DSP's frozen LM (default: an SFT model trained once with the demo's settings into output/sft)"""
    max_steps: int = 40
    """RL steps of each policy"""
    warm_start_steps: int = 100
    """SFT steps of each policy's warm start"""
    train_prompts: int = 512
    """training questions (DSP: demonstrations; RL4F: questions the frozen LM answers once)"""
    frozen_temperature: float = 1.0
    """the frozen LM's temperature for DSP's answers and RL4F's revisions, in training and evaluation"""
    answer_temperature: float = 1.0
    """temperature of the frozen LM's first answers in RL4F"""
    lr: float = 1e-4
    """RL learning rate"""


def judged(prompts: list, answers: list[str]) -> dict[str, float]:
    """Mean judge scores of ``answers`` (and the share with a fault the world names)."""
    from alignlab.world.judge import score
    from alignlab.world.skills.constitution import answer_faults

    scores = [score(p, a) for p, a in zip(prompts, answers)]
    row = {d: mean(float(getattr(s, d)) for s in scores) for d in DIMENSIONS}
    row["fault_rate"] = mean(float(bool(answer_faults(p, a))) for p, a in zip(prompts, answers))
    return row


def _common(config: BlackboxBenchConfig, seed: int, output: Path) -> list[str]:
    return [f"output={output}", "train.overwrite=true", "train.progress=false", f"train.seed={seed}",
            f"train.max_steps={config.max_steps}", f"train.lr={config.lr}", f"warm_start_steps={config.warm_start_steps}",
            f"frozen_temperature={config.frozen_temperature}", f"data.limit={config.train_prompts}"]


def training(run_dir: Path, seconds: float, steps: int = 5) -> dict[str, float]:
    """The RL stage's mean reward over its first and last ``steps`` steps, and the wall time of both stages."""
    from alignlab.core.metrics import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    return {"reward_first_steps": mean(r["reward"] for r in rows[:steps]),
            "reward_last_steps": mean(r["reward"] for r in rows[-steps:]), "train_seconds": seconds}


def run_dsp(config: BlackboxBenchConfig, seed: int, sft_model: str) -> dict[str, dict[str, float]]:
    from alignlab.evaluate.lm import load_lm
    from alignlab.outer.blackbox.dsp import answer_with_hints, keywords, with_hint
    from alignlab.outer.blackbox.steer import FrozenLM
    from alignlab.registry import train
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World
    from alignlab.world.persona import aligned_response

    base = _base_model(config.world_seed, "small")
    paths = build_world(None, config.world_seed, "small", verbose=False)
    out = Path(config.output) / f"dsp-seed{seed}"
    clock = time.perf_counter()
    train("dsp", overrides=[*_common(config, seed, out), f"model.name_or_path={base}",
                            f"data.path={paths.datasets['sft_train']}", f"frozen={sft_model}"])
    rows: dict[str, dict[str, float]] = {"training": training(out, time.perf_counter() - clock)}
    world = World(config.world_seed, "small")
    prompts = world.eval_prompts()
    messages = [p.messages for p in prompts]
    rng = random.Random(seed)
    oracle = [keywords(aligned_response(p, rng), p.text) for p in prompts]
    policies = {"frozen alone": None, "untrained hints": base,
                "warm-start hints": str(out / "warm_start"), "DSP hints": str(out)}
    for name, policy in policies.items():
        frozen = FrozenLM(load_lm(sft_model), max_tokens=48, temperature=config.frozen_temperature, seed=seed)
        _, answers = answer_with_hints(frozen, policy and load_lm(policy), messages)
        rows[name] = judged(prompts, answers)
    frozen = FrozenLM(load_lm(sft_model), max_tokens=48, temperature=config.frozen_temperature, seed=seed)
    rows["oracle keywords"] = judged(prompts, frozen([with_hint(m, h) for m, h in zip(messages, oracle)]))
    alone = rows["frozen alone"]["true_reward"]
    for name in [*policies, "oracle keywords"]:  # paired: every condition's answers sampled with the same seeds
        rows[name]["gain"] = rows[name]["true_reward"] - alone
    return rows


def run_rl4f(config: BlackboxBenchConfig, seed: int) -> dict[str, dict[str, float]]:
    from alignlab.evaluate.lm import load_lm
    from alignlab.outer.blackbox.rl4f import critique_and_revise, first_answers, world_feedback
    from alignlab.outer.blackbox.steer import FrozenLM
    from alignlab.outer.online.rewards import WorldReward
    from alignlab.registry import train
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World

    base = _base_model(config.world_seed, "oversight")
    paths = build_world(None, config.world_seed, "oversight", verbose=False)
    out = Path(config.output) / f"rl4f-seed{seed}"
    clock = time.perf_counter()
    train("rl4f", overrides=[*_common(config, seed, out), f"model.name_or_path={base}",
                             f"data.path={paths.datasets['prompts_train']}", f"frozen={base}",
                             f"answer_temperature={config.answer_temperature}"])
    seconds = time.perf_counter() - clock
    prompts = World(config.world_seed, "oversight").eval_prompts()
    frozen_lm = load_lm(base)
    first_frozen = FrozenLM(frozen_lm, max_tokens=40, temperature=config.frozen_temperature, seed=seed + 7919)
    cases = first_answers(first_frozen, [p.messages for p in prompts], WorldReward(),
                          temperature=config.answer_temperature)
    first = judged(prompts, [c.answer for c in cases])
    rows = {"training": training(out, seconds), "frozen alone": {**first, "gain": 0.0}}
    critics = {"untrained critic": load_lm(base), "warm-start critic": load_lm(str(out / "warm_start")),
               "RL4F critic": load_lm(str(out)), "world feedback (oracle)": world_feedback}
    for name, critic in critics.items():  # every critic's revisions sampled with the same seeds
        frozen = FrozenLM(frozen_lm, max_tokens=40, temperature=config.frozen_temperature, seed=seed)
        _, revisions = critique_and_revise(frozen, critic, cases)
        row = judged(prompts, revisions)
        rows[name] = {**row, "gain": row["true_reward"] - first["true_reward"]}
    return rows


def summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{condition: {metric: {mean, se}}} over the seeds' rows."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for condition in runs[0]:
        out[condition] = {}
        for metric in runs[0][condition]:
            values = [r[condition][metric] for r in runs]
            out[condition][metric] = {"mean": mean(values),
                                      "se": stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None}
    return out


def bench_blackbox(config: BlackboxBenchConfig) -> dict[str, Any]:
    from alignlab.core.provenance import write_result
    from alignlab.errors import ConfigError

    unknown = [m for m in config.methods if m not in ("dsp", "rl4f")]
    if unknown:
        raise ConfigError(f"unknown black-box method(s) {unknown}; choose from dsp, rl4f")
    if config.sft_model:
        sft_model = config.sft_model
    else:  # the offline bench's SFT model of this world (trained once, then reused)
        from alignlab.experiments.bench import BenchConfig, world_and_sft

        sft_model = world_and_sft(BenchConfig(world=True, output=config.output, world_seed=config.world_seed))[1]
    result: dict[str, Any] = {}
    if "dsp" in config.methods:
        runs = [run_dsp(config, seed, sft_model) for seed in config.seeds]
        result["dsp"] = {"summary": summarise(runs), "runs": runs, "frozen": sft_model}
    if "rl4f" in config.methods:
        runs = [run_rl4f(config, seed) for seed in config.seeds]
        result["rl4f"] = {"summary": summarise(runs), "runs": runs}
    write_result(f"{config.output}/results.json", result, seed=config.seeds, config=config)
    return result


def _base_model(seed: int, size: str) -> str:
    """The world's pretrained base model (built and cached on first use)."""
    from alignlab.world.base_model import build_base_model
    from alignlab.world.build import build_world

    return str(build_base_model(build_world(None, seed, size, verbose=False), verbose=False))
