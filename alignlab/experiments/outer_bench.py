"""``alignlab bench outer --world``: every outer-alignment method of the toolkit side by side, from one SFT model and
one step budget, judged by the one evaluation protocol.

The rows, each trained (or fitted) for ``max_steps`` steps of its own kind from the same SFT model and evaluated on
the world's held-out prompts exactly as the offline and online benches evaluate
(:func:`alignlab.experiments.bench.evaluate_policy`: ``eval_samples`` answers per prompt at temperature 1, the
world's judge, KL(π‖π_SFT) on the same answers):

- references: the SFT model itself, DPO (offline bench settings), GRPO on the judge's true reward (online bench
  settings);
- weighted offline RL (A-LoL, Baheti et al.) and Second Thoughts, through the offline bench's training;
- f-DPG under each f-divergence it offers, through the online bench's training;
- ``grpo-rules``: a rule-conditioned reward model trained on the judge's rule-violation labels of the world's
  pairs (``max_steps`` steps), then GRPO against it (the rules bench's pieces);
- ``rlsf``: a reward model on synthetic pairs (the SFT model's answer preferred to the base model's, no labels;
  ``max_steps`` steps), then GRPO against it (the RLSF bench only trains the reward model; this row is a policy);
- ``sensei``: SENSEI's critic and actor heads on the frozen SFT model (``max_steps`` steps), steering at strength 1;
- ``dexperts``: anti-expert decoding: the SFT model's logits plus α (SFT − anti-expert), the anti-expert being the
  SFT model fine-tuned ``max_steps`` steps on the pairs' rejected answers (no nucleus cut, so the row measures the
  arithmetic alone);
- ``uddia``: UDDIA-style adaptive bias tuning while decoding the SFT model, its attribute probe fitted on the
  judge's insult/stereotype labels;
- ``dsp``: DSP hints from a small hint writer (the world's base model, warm-started and trained by GRPO for
  ``max_steps`` steps each) steering the frozen SFT model.

Per row: true reward, helpfulness, honesty, harmlessness, toxicity, bias, cost, the paired gain in true reward over
the SFT model (per prompt), KL to the SFT model per answer and per token (None where the decoded distribution is
not one model's: UDDIA tunes biases per batch, DSP answers under a sampled hint), the CPU seconds of training
(for decoding rules: of fitting what they need) and the generation's CPU seconds beyond the SFT model's.
``results.json`` (one per seed, with command, commit and machine) holds the rows.

RL4F is not a row: it needs a frozen LM that revises an answer given a critique, a skill the small world's SFT
model lacks (the black-box bench runs it on the oversight world). Data selection and inverse reward design do not
fit the frame: selection fine-tunes the base model on subsets (it is an SFT-data choice, not a step after SFT),
and inverse reward design plans over candidate answers under a posterior instead of producing a policy.

Example::

    >>> from alignlab.experiments.outer_bench import OuterBenchConfig, bench_outer
    >>> rows = bench_outer(OuterBenchConfig(world=True, max_steps=10))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.experiments.bench import WorldBenchConfig

DIVERGENCES = ("reverse_kl", "forward_kl", "tv", "js")
ROWS = ("dpo", "grpo", "alol", "second-thoughts", *(f"fdpg-{d}" for d in DIVERGENCES), "grpo-rules", "rlsf",
        "sensei", "dexperts", "uddia", "dsp")
COLUMNS = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias", "gain_vs_sft", "kl_to_sft",
           "kl_per_token", "train_cpu_seconds", "added_generation_cpu_seconds")


@dataclass
class OuterBenchConfig(WorldBenchConfig):
    """Every outer-alignment method from one SFT model and one step budget, on the toy world."""

    output: str = "runs/bench-outer"
    """directory for results.json and each row's run"""
    methods: list[str] = field(default_factory=lambda: list(ROWS))
    """rows to run (the SFT model is always the first): dpo, grpo, alol, second-thoughts, fdpg-<divergence>,
    grpo-rules, rlsf, sensei, dexperts, uddia, dsp"""
    max_steps: int = 50
    """the one step budget: optimiser steps (offline rows, reward models, heads, the anti-expert, warm starts) or
    rollout steps (online rows, DSP's RL); each run's CPU time is in its results.json (cpu_seconds)"""
    batch_size: int = 32
    """examples per optimiser step of every supervised stage (offline rows, reward models, heads, anti-expert)"""
    eval_samples: int = 4
    """answers sampled (temperature 1) per held-out prompt"""
    synthetic_prompts: int = 256
    """rlsf: training prompts the SFT and base models both answer (the synthetic pairs)"""
    dsp_prompts: int = 256
    """dsp: demonstrations the hint writer is warm-started and trained on"""
    sensei_prompts: int = 64
    """sensei: training prompts whose answers (4 each) the judge scores"""
    dexperts_alpha: float = 1.0
    """dexperts: α of z_SFT + α (z_SFT − z_anti)"""
    probe_pairs: int = 600
    """uddia: training pairs whose two answers fit the attribute probe"""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in ROWS]
        if unknown:
            import difflib

            hint = {m: difflib.get_close_matches(m, ROWS, n=1) for m in unknown}
            raise ValueError(f"no outer-bench row {unknown}" + "".join(f"; {m}: did you mean {c[0]}?" for m, c in
                                                                       hint.items() if c) + f"; rows: {', '.join(ROWS)}")


@dataclass
class Setting:
    """What every row shares: the world, the SFT model, the held-out prompts and the bench configs whose training
    and evaluation the rows reuse."""

    config: OuterBenchConfig
    paths: Any
    sft_path: str
    sft: Any
    tokenizer: Any
    prompts: list
    offline: Any  # BenchConfig: DPO, A-LoL, Second Thoughts; and the evaluation settings
    online: Any  # OnlineBenchConfig: GRPO, f-DPG, the GRPO rows against learned rewards

    @property
    def out(self) -> Path:
        return Path(self.config.output)


def setting(config: OuterBenchConfig) -> Setting:
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.experiments.bench import BenchConfig, world_and_sft
    from alignlab.experiments.online_bench import OnlineBenchConfig
    from alignlab.world.datasets import load_prompts

    shared = dict(world=True, world_dir=config.world_dir, world_seed=config.world_seed, world_size=config.world_size,
                  sft_model=config.sft_model, max_steps=config.max_steps, max_new_tokens=config.max_new_tokens,
                  eval_samples=config.eval_samples, eval_limit=config.eval_limit, seed=config.seed, methods=[])
    offline = BenchConfig(output=config.output, batch_size=config.batch_size, **shared)
    paths, sft_path = world_and_sft(offline)
    offline.sft_model = sft_path
    online = OnlineBenchConfig(output=config.output, **shared)
    return Setting(config, paths, sft_path, load_causal_lm(sft_path).eval(), load_tokenizer(sft_path),
                   load_prompts(paths.datasets["prompts_eval"])[: config.eval_limit], offline, online)


# ---- the rows: each returns (evaluated row, training CPU seconds) -----------------------------------------------


def offline_row(s: Setting, method: str) -> tuple[dict[str, Any], float]:
    from alignlab.experiments.bench import evaluate_policy, offline_methods, responder, train_method

    run_dir = s.out / "runs" / method
    clock = time.process_time()
    train_method(method, s.sft_path, s.paths.datasets[offline_methods()[method]], run_dir, s.offline)
    seconds = time.process_time() - clock
    return evaluate_policy(str(run_dir), s.sft, s.tokenizer, s.prompts, responder(method, run_dir), s.offline), seconds


def online_row(s: Setting, method: str, name: str, keys: list[str] = (), reward_model: str | None = None,
               seconds: float = 0.0) -> tuple[dict[str, Any], float]:
    """``method`` trained as the online bench trains it, with extra config ``keys`` and a reward model (default:
    the judge's true reward); ``seconds``: CPU seconds already spent on what it learns from."""
    from alignlab.experiments.bench import evaluate_policy, responder
    from alignlab.experiments.online_bench import train_online_method

    config = dataclasses.replace(s.online, reward_model=reward_model, overrides={method: list(keys)})
    run_dir = s.out / "runs" / name
    clock = time.process_time()
    train_online_method(method, config, s.paths, run_dir, s.sft_path)
    seconds += time.process_time() - clock
    return evaluate_policy(str(run_dir), s.sft, s.tokenizer, s.prompts, responder("grpo", None), s.offline), seconds


def _train(**settings: Any):
    from alignlab.core.trainer import TrainConfig

    return TrainConfig(progress=False, overwrite=True, **settings)


def grpo_rules_row(s: Setting) -> tuple[dict[str, Any], float]:
    """A rule-conditioned reward model from the judge's rule-violation labels, then GRPO against it."""
    from alignlab.core.data import DataConfig
    from alignlab.core.io import atomic_write_text
    from alignlab.core.models import ModelConfig
    from alignlab.experiments.rules_bench import RULES, labels_from_pairs
    from alignlab.outer.rules import RuleRewardConfig, train_rule_reward
    from alignlab.world.datasets import World

    clock = time.process_time()
    labels = s.out / "rule_labels.jsonl"
    atomic_write_text(labels, "".join(json.dumps(r) + "\n" for r in labels_from_pairs(
        str(s.paths.datasets["pairs_train"]), World(s.paths.seed, s.paths.size).kb)))
    rm_dir = s.out / "runs" / "rule-reward"
    train_rule_reward(RuleRewardConfig(model=ModelConfig(s.sft_path), output=str(rm_dir),
                                       data=DataConfig(path=str(labels), eval_fraction=0.0, max_length=160),
                                       train=_train(max_steps=s.config.max_steps, batch_size=s.config.batch_size, lr=s.config.lr,
                                                    seed=s.config.seed)))
    rules = "[" + ", ".join(RULES) + "]"
    return online_row(s, "grpo", "grpo-rules", ["reward.source=rules", f"reward.model={rm_dir}", f"reward.rules={rules}"],
                      seconds=time.process_time() - clock)


def rlsf_row(s: Setting) -> tuple[dict[str, Any], float]:
    """Synthetic pairs (the SFT model's answer over the base model's), a reward model on them, GRPO against it."""
    import random

    from alignlab.core.data import DataConfig
    from alignlab.core.io import atomic_write_text
    from alignlab.core.models import ModelConfig
    from alignlab.errors import ConfigError
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.experiments.rlsf_bench import synthetic_pairs
    from alignlab.outer.reward import RewardModelConfig, train_reward
    from alignlab.world.base_model import build_base_model
    from alignlab.world.datasets import load_prompts

    clock = time.process_time()
    prompts = random.Random(s.config.seed).sample(load_prompts(s.paths.datasets["prompts_train"]),
                                                  s.config.synthetic_prompts)
    answers = []
    for path in (s.sft_path, str(build_base_model(s.paths, verbose=False))):
        lm = HuggingFaceLM(path)
        answers.append(lm.complete([lm.encode_prompt(p.messages) for p in prompts], max_tokens=s.config.max_new_tokens,
                                   temperature=1.0, seed=s.config.seed).texts)
    rows = synthetic_pairs([p.messages for p in prompts], *answers)
    if not rows:
        raise ConfigError("rlsf: the SFT and base models answered every prompt alike, so there are no synthetic pairs")
    pairs = s.out / "synthetic_pairs.jsonl"
    atomic_write_text(pairs, "".join(json.dumps(r) + "\n" for r in rows))
    rm_dir = s.out / "runs" / "rlsf-reward"
    train_reward(RewardModelConfig(model=ModelConfig(s.sft_path), output=str(rm_dir),
                                   data=DataConfig(path=str(pairs), eval_fraction=0.0, max_length=128),
                                   train=_train(max_steps=s.config.max_steps, batch_size=s.config.batch_size, lr=s.config.lr,
                                                seed=s.config.seed)))
    return online_row(s, "grpo", "rlsf", reward_model=str(rm_dir), seconds=time.process_time() - clock)


def sensei_row(s: Setting) -> tuple[dict[str, Any], float]:
    from alignlab.core.data import DataConfig
    from alignlab.core.generation import GenerationConfig
    from alignlab.core.models import ModelConfig
    from alignlab.experiments.bench import evaluate_policy, responder
    from alignlab.outer.online.rewards import RewardSourceConfig
    from alignlab.outer.sensei import SenseiConfig, load_sensei, train_sensei

    run_dir = s.out / "runs" / "sensei"
    judge = RewardSourceConfig(source="world", world_seed=s.paths.seed, world_size=s.paths.size)
    clock = time.process_time()
    train_sensei(SenseiConfig(model=ModelConfig(s.sft_path), output=str(run_dir), reward=judge,
                              data=DataConfig(path=str(s.paths.datasets["prompts_train"]), limit=s.config.sensei_prompts),
                              generation=GenerationConfig(max_new_tokens=s.config.max_new_tokens, seed=s.config.seed),
                              train=_train(max_steps=s.config.max_steps, batch_size=s.config.batch_size, lr=3e-3,
                                           seed=s.config.seed)))
    seconds = time.process_time() - clock
    return evaluate_policy(load_sensei(run_dir).eval(), s.sft, s.tokenizer, s.prompts, responder("sft", None),
                           s.offline), seconds


def dexperts_row(s: Setting) -> tuple[dict[str, Any], float]:
    from alignlab.core.data import DataConfig
    from alignlab.core.models import ModelConfig, load_causal_lm
    from alignlab.experiments.bench import evaluate_policy, responder
    from alignlab.experiments.decoding_bench import anti_expert_data
    from alignlab.outer.decoding import dexperts
    from alignlab.outer.sft import SFTConfig, train_sft

    run_dir = s.out / "runs" / "anti-expert"
    clock = time.process_time()
    train_sft(SFTConfig(model=ModelConfig(s.sft_path), output=str(run_dir),
                        data=DataConfig(path=str(anti_expert_data(s.paths, s.out)), max_length=128),
                        train=_train(max_steps=s.config.max_steps, batch_size=s.config.batch_size, lr=2e-4, seed=s.config.seed)))
    seconds = time.process_time() - clock
    rule = dexperts(s.sft, s.sft, load_causal_lm(str(run_dir)).eval(), s.config.dexperts_alpha, base_top_p=1.0)
    return evaluate_policy(rule, s.sft, s.tokenizer, s.prompts, responder("sft", None), s.offline), seconds


def uddia_row(s: Setting) -> tuple[dict[str, Any], float]:
    from alignlab.core.generation import GenerationConfig
    from alignlab.experiments.bench import judge_answers
    from alignlab.experiments.uddia_bench import probe_rows
    from alignlab.outer.uddia import UDDIAConfig, fit_attribute_probe, uddia_generate
    from alignlab.world.datasets import World

    clock = time.process_time()
    kb = World(s.paths.seed, s.paths.size).kb
    probe = fit_attribute_probe(s.sft, s.tokenizer, probe_rows(str(s.paths.datasets["pairs_train"]),
                                                               s.config.probe_pairs, kb))
    seconds = time.process_time() - clock
    generation = GenerationConfig(max_new_tokens=s.config.max_new_tokens, temperature=1.0, seed=s.config.seed)
    clock = time.process_time()
    output = uddia_generate(s.sft, s.tokenizer, [p.messages for p in s.prompts] * s.config.eval_samples, probe,
                            UDDIAConfig(generation=generation))
    return {**judge_answers(s.prompts, output.texts), "generation_cpu_seconds": time.process_time() - clock}, seconds


def dsp_row(s: Setting) -> tuple[dict[str, Any], float]:
    from alignlab.evaluate.lm import load_lm
    from alignlab.experiments.bench import judge_answers
    from alignlab.outer.blackbox.dsp import answer_with_hints
    from alignlab.outer.blackbox.steer import FrozenLM
    from alignlab.registry import train
    from alignlab.world.base_model import build_base_model

    run_dir = s.out / "runs" / "dsp"
    c = s.config
    clock = time.process_time()
    train("dsp", overrides=[f"output={run_dir}", "train.overwrite=true", "train.progress=false", f"train.seed={c.seed}",
                            f"train.max_steps={c.max_steps}", f"warm_start_steps={c.max_steps}", f"train.lr={c.lr}",
                            f"model.name_or_path={build_base_model(s.paths, verbose=False)}", "frozen_temperature=1.0",
                            f"data.path={s.paths.datasets['sft_train']}", f"data.limit={c.dsp_prompts}",
                            f"frozen={s.sft_path}", f"frozen_max_tokens={c.max_new_tokens}",
                            f"reward.world_seed={s.paths.seed}", f"reward.world_size={s.paths.size}"])
    seconds = time.process_time() - clock
    frozen = FrozenLM(load_lm(s.sft_path), max_tokens=c.max_new_tokens, temperature=1.0, seed=c.seed)
    clock = time.process_time()
    _, answers = answer_with_hints(frozen, load_lm(str(run_dir)), [p.messages for p in s.prompts] * c.eval_samples)
    return {**judge_answers(s.prompts, answers), "generation_cpu_seconds": time.process_time() - clock}, seconds


def run_row(s: Setting, name: str) -> tuple[dict[str, Any], float]:
    if name in ("dpo", "alol", "second-thoughts"):
        return offline_row(s, name)
    if name == "grpo":
        return online_row(s, "grpo", "grpo")
    if name.startswith("fdpg-"):
        return online_row(s, "fdpg", name, [f"divergence={name.removeprefix('fdpg-')}"])
    return {"grpo-rules": grpo_rules_row, "rlsf": rlsf_row, "sensei": sensei_row, "dexperts": dexperts_row,
            "uddia": uddia_row, "dsp": dsp_row}[name](s)


# ---- the table ------------------------------------------------------------------------------------------------


def finish_row(name: str, result: dict[str, Any], train_seconds: float, start: dict[str, Any]) -> dict[str, Any]:
    """The table's row: the judge's rates, the paired gain over the SFT model, KL per answer and per token (None
    where not computable), training CPU seconds and the generation CPU seconds beyond the SFT model's."""
    from alignlab.experiments.bench import paired_gain

    kl = result.get("kl_to_sft")
    tokens = result.get("answer_tokens")
    return {"method": name, **{k: v for k, v in result.items() if k not in ("generation_cpu_seconds",)},
            **paired_gain(result, start), "kl_to_sft": kl,
            "kl_per_token": kl / tokens if kl is not None and tokens else None, "train_cpu_seconds": train_seconds,
            "added_generation_cpu_seconds": result["generation_cpu_seconds"] - start["generation_cpu_seconds"]}


def bench_outer(config: OuterBenchConfig) -> list[dict[str, Any]]:
    """Evaluate the SFT model, then train and evaluate every row of ``config.methods``; write results.json after
    every row (so a long bench survives a crash); return the rows."""
    from alignlab.core.provenance import write_result
    from alignlab.experiments.bench import evaluate_policy, responder

    clock = time.process_time()  # the whole run's CPU time, the SFT model's training (when done here) included
    s = setting(config)
    s.out.mkdir(parents=True, exist_ok=True)
    start = evaluate_policy(s.sft_path, s.sft, s.tokenizer, s.prompts, responder("sft", None), s.offline)
    rows = [finish_row("sft (start)", {**start, "kl_to_sft": 0.0}, 0.0, start)]

    def write() -> None:
        write_result(s.out / "results.json", {"rows": rows, "sft_model": s.sft_path, "prompts": len(s.prompts),
                                              "cpu_seconds": time.process_time() - clock}, seed=config.seed, config=config)

    write()
    for name in config.methods:
        result, seconds = run_row(s, name)
        rows.append(finish_row(name, result, seconds, start))
        write()
        kl = rows[-1]["kl_to_sft"]
        print(f"[bench outer] {name}: true reward {result['true_reward']:.3f} (gain {rows[-1]['gain_vs_sft']:+.3f} ± "
              f"{rows[-1]['gain_stderr']:.3f}), KL {'–' if kl is None else f'{kl:.2f}'}, train {seconds:.0f} CPU-s",
              flush=True)
    return rows
