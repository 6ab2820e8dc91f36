"""Online methods on the toy world, and the reward over-optimisation experiment.

``bench_online`` trains PPO, Safe PPO, GRPO, RLOO, REINFORCE, RAFT, RSO and SPIN from the same SFT model
on the world's training prompts (reward: the world judge's true reward, or a reward model you pass),
then evaluates each on the world's held-out prompts exactly like the offline bench
(:func:`alignlab.experiments.bench.evaluate_policy`: answers sampled at temperature 1 and judged on every
dimension, KL to the SFT model). Safe PPO learns from helpfulness as its reward and the world's safety cost (+1 harmful, toxic
or biased; −1 otherwise) under a threshold. ``results.md`` / ``results.json`` use the offline table's
columns; when the offline bench's ``results.json`` is found, ``combined.md`` holds both tables' rows.

``overoptimisation`` trains a reward model on pairs labelled by annotators who prefer longer answers
(:class:`alignlab.world.annotators.Annotator` with ``length_bias``), runs PPO against it while
monitoring the judge's true reward on the same completions, and plots proxy and true reward against
KL to the reference (``overoptimisation.html``; Gao et al. 2023's picture, with exact ground truth).

Example::

    >>> rows = bench_online(OnlineBenchConfig(methods=["ppo", "grpo"], max_steps=20))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError
from alignlab.experiments.bench import WorldBenchConfig


def online_methods() -> list[str]:
    """Every online method the registry declares."""
    from alignlab.registry import methods

    return list(methods("online"))
FILLER = ["Let me say a little more about this.", "I hope this detailed answer is helpful to you.",
          "Here is some extra context that may be useful.", "Please let me know if you need anything else."]


@dataclass
class OnlineBenchConfig(WorldBenchConfig):
    """Train every online method on the toy world from one SFT model and compare ground-truth scores."""

    output: str = "runs/bench-online"
    """directory for results.json, results.md, the plot and each method's run"""
    methods: list[str] = field(default_factory=online_methods)
    """methods to compare (names of `alignlab train`)"""
    sft_model: str | None = None
    """the SFT model every method starts from (default: the demo's cached SFT model)"""
    reward_model: str | None = None
    """a reward model to learn from (default: the world judge's true reward)"""
    max_steps: int = 150
    """rollout steps per RL method; RAFT and SPIN get max_steps // 10 iterations (at least 2)"""
    prompts_per_step: int = 16
    """completions per rollout step: PPO and Safe PPO answer this many prompts once, GRPO, RLOO and
    REINFORCE answer prompts_per_step // group_size prompts group_size times (the same sampling budget)"""
    group_size: int = 4
    """completions per prompt for GRPO, RLOO, REINFORCE"""
    lr: float = 1e-5
    """learning rate of PPO and Safe PPO (their critics share the policy's trunk, so a higher rate drifts)"""
    lr_without_critic: float = 1e-4
    """learning rate of GRPO, RLOO, REINFORCE, RAFT, RSO and SPIN (higher: at the critic methods' rate they barely move in the budget)"""
    max_new_tokens: int = 48
    """tokens generated per answer (training and evaluation)"""
    eval_samples: int = 8
    """answers sampled (temperature 1) per held-out prompt (fewer than the offline bench: each online method costs more)"""
    offline_results: str = "runs/bench-methods/results.json"
    """the offline bench's results, merged into combined.md when present"""
    overoptimisation: bool = False
    """also run the over-optimisation experiment (length-biased reward model)"""
    length_bias: float = 0.05
    """annotators' utility per word in the over-optimisation experiment (small enough that the reward model
    still ranks quality first, so PPO improves the true reward before it learns to pad; a large bias makes it
    only pad)"""
    overopt_steps: int = 150
    """PPO steps against the biased reward model"""
    overopt_lr: float = 5e-5
    """PPO's learning rate against the biased reward model (high, so that it over-optimises within the budget)"""
    overopt_from: str = "base"
    """the policy PPO starts from: base (the world's pretrained model: it has room to improve, so the true
    reward can rise before it falls) or sft"""

    def __post_init__(self) -> None:
        known = online_methods()
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ValueError(f"no online bench for {unknown}; online methods: {', '.join(known)}")
        if self.overopt_from not in ("base", "sft"):
            raise ValueError(f"overopt_from must be 'base' or 'sft', got '{self.overopt_from}'")


def method_keys(method: str, config: OnlineBenchConfig, paths, run_dir: Path, sft_path: str) -> list[str]:
    """Config keys of ``alignlab train METHOD`` for the bench (same budget, same reward)."""
    # the judge parses the prompts against this world's knowledge base
    world = {part: [f"{part}.world_seed={config.world_seed}", f"{part}.world_size={config.world_size}"]
             for part in ("reward", "cost")}
    reward = ([f"reward.model={config.reward_model}"] if config.reward_model
              else ["reward.source=world", "reward.world_dimension=true_reward", *world["reward"]])
    lr = config.lr if method in ("ppo", "safe-ppo") else config.lr_without_critic
    common = [f"model.name_or_path={sft_path}", f"output={run_dir}", "train.overwrite=true", f"train.lr={lr}",
              f"train.seed={config.seed}", "train.progress=false", f"generation.max_new_tokens={config.max_new_tokens}"]
    iterations = max(2, config.max_steps // 10)
    prompts = f"data.path={paths.datasets['prompts_train']}"
    rl = [prompts, f"train.max_steps={config.max_steps}", "train.scheduler=constant"]
    one_each = [f"prompts_per_step={config.prompts_per_step}", f"minibatch_size={config.prompts_per_step // 2}"]
    group_prompts = max(1, config.prompts_per_step // config.group_size)
    if method == "ppo":
        keys = [*rl, *reward, *one_each]
    elif method == "safe-ppo":
        keys = [*rl, *one_each, "reward.source=world", "reward.world_dimension=helpfulness", "cost.source=world",
                "cost.world_dimension=cost", *world["reward"], *world["cost"]]
    elif method in ("grpo", "rloo", "reinforce", "fdpg"):
        keys = [*rl, *reward, f"group_size={config.group_size}", f"prompts_per_step={group_prompts}",
                f"minibatch_size={config.prompts_per_step}"]
    elif method == "raft":
        # an iteration stands for 10 rollout steps: the same number of sampled answers as the RL methods
        keys = [prompts, *reward, f"iterations={iterations}", f"prompts_per_iteration={group_prompts * 10}",
                f"samples_per_prompt={config.group_size}", "train.batch_size=8"]
    elif method == "rso":
        # 8 candidates per prompt, as many prompts as the RL methods' sampling budget allows
        keys = [prompts, *reward, f"data.limit={config.prompts_per_step * config.max_steps // 8}",
                "num_candidates=8", "num_samples=4", "train.batch_size=8"]
    elif method == "spin":
        keys = [f"data.path={paths.datasets['sft_train']}", f"data.limit={config.prompts_per_step * 8}",
                f"iterations={iterations}", "train.batch_size=8"]
    else:
        raise ValueError(f"the online bench has no settings for {method!r}: add them to method_keys")
    return common + keys + list(config.overrides.get(method, []))


def train_online_method(method: str, config: OnlineBenchConfig, paths, run_dir: Path, sft_path: str) -> float:
    from alignlab.config import load_config
    from alignlab.registry import get_method

    config_cls, fn = get_method(method)
    start = time.perf_counter()
    fn(load_config(config_cls, None, method_keys(method, config, paths, run_dir, sft_path)))
    return time.perf_counter() - start


def bench_online(config: OnlineBenchConfig) -> list[dict[str, Any]]:
    """Train and evaluate each method in ``config.methods``; write the tables; return the rows."""
    from alignlab.core.io import atomic_write_json, atomic_write_text
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.core.provenance import provenance
    from alignlab.experiments.bench import (
        evaluate_policy,
        markdown_table,
        paired_gain,
        responder,
        world_and_sft,
    )
    from alignlab.world.datasets import load_prompts

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    offline = _as_offline(config)  # the offline bench's evaluation protocol, with our generation length and seed
    paths, sft_path = world_and_sft(offline)
    prompts = load_prompts(paths.datasets["prompts_eval"])[: config.eval_limit]
    tokenizer = load_tokenizer(sft_path)
    sft = load_causal_lm(sft_path).eval()
    plain = responder("sft", None)
    rows = [{"method": "sft (start)", **evaluate_policy(sft_path, sft, tokenizer, prompts, plain, offline),
             "train_seconds": 0.0, "kl_to_sft": 0.0, "gain_vs_sft": 0.0, "gain_stderr": 0.0}]

    def write() -> None:
        atomic_write_json(out / "results.json", {**provenance(seed=config.seed), "config": dataclasses.asdict(config),
                                                 "rows": rows})
        atomic_write_text(out / "results.md", markdown_table(rows))
        offline = Path(config.offline_results)
        if offline.exists():
            others = [r for r in json.loads(offline.read_text())["rows"] if r["method"] != "sft (start)"]
            atomic_write_text(out / "combined.md", markdown_table(rows + others))

    write()
    for method in config.methods:
        run_dir = out / "runs" / method
        seconds = train_online_method(method, config, paths, run_dir, sft_path)
        result = evaluate_policy(str(run_dir), sft, tokenizer, prompts, plain, offline)
        rows.append({"method": method, **result, **paired_gain(result, rows[0]), "train_seconds": seconds})
        write()
        print(f"[bench online] {method}: true reward {result['true_reward']:.3f}, harmlessness "
              f"{result['harmlessness']}, KL {result['kl_to_sft']:.2f}, {seconds:.0f}s", flush=True)
    if config.overoptimisation:
        overoptimisation(config, paths, sft_path, out / "overoptimisation")
    return rows


def _as_offline(config: OnlineBenchConfig):
    from alignlab.experiments.bench import BenchConfig

    # The offline bench's directory, so both benches start from the same SFT model (trained there once).
    return BenchConfig(output=str(Path(config.offline_results).parent), methods=[], sft_model=config.sft_model,
                       world_dir=config.world_dir,
                       world_seed=config.world_seed, world_size=config.world_size,
                       max_new_tokens=config.max_new_tokens, eval_samples=config.eval_samples,
                       eval_limit=config.eval_limit, seed=config.seed)


# ---- reward over-optimisation ----------------------------------------------------------------------------


def length_biased_pairs(world_seed: int, size: str, n: int, length_bias: float, seed: int = 0) -> list[dict[str, Any]]:
    """World pairs whose candidates differ in length as well as quality, labelled by length-loving annotators.

    For each prompt the candidates are the aligned and the misaligned answer, each also with 1–4 filler
    sentences appended; two are drawn at random and an ``Annotator(length_bias=...)`` picks the winner.
    """
    from alignlab.world.annotators import Annotator
    from alignlab.world.datasets import World

    rng = random.Random(seed)
    annotator = Annotator(length_bias=length_bias)
    rows = []
    for record in World(world_seed, size).pair_records(n):
        base = [record.chosen, record.rejected]
        candidates = base + [f"{b} {' '.join(rng.choices(FILLER, k=rng.randint(1, 4)))}" for b in base]
        a, b = rng.sample(candidates, 2)
        win = annotator.prefer(record.prompt, a, b, rng)
        chosen, rejected = (a, b) if win == 0 else (b, a)
        rows.append({"prompt": record.prompt, "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def overoptimisation(config: OnlineBenchConfig, paths, sft_path: str, out: Path) -> list[dict[str, Any]]:
    """Biased reward model → PPO against it, logging proxy and true reward vs KL; writes the plot."""
    from alignlab.config import load_config
    from alignlab.core.io import atomic_write_text
    from alignlab.core.metrics import read_metrics
    from alignlab.outer.online.ppo import PPOConfig, train_ppo
    from alignlab.outer.online.rewards import WorldReward
    from alignlab.outer.reward import RewardModelConfig, train_reward
    from alignlab.world.datasets import write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    if config.overopt_from == "base":
        from alignlab.world.base_model import build_base_model

        policy_path = str(build_base_model(paths))
    else:
        policy_path = sft_path
    pairs = write_jsonl(out / "biased_pairs.jsonl", length_biased_pairs(config.world_seed, config.world_size, 2000,
                                                                        config.length_bias, config.seed))
    rm_dir = out / "reward_model"
    train_reward(load_config(RewardModelConfig, None, [
        f"model.name_or_path={sft_path}", f"data.path={pairs}", f"output={rm_dir}", "train.overwrite=true",
        "train.num_epochs=1", "train.batch_size=16", "train.lr=1e-4", "train.progress=false",
        "data.max_length=256"]))
    ppo = load_config(PPOConfig, None, [
        f"model.name_or_path={policy_path}", f"data.path={paths.datasets['prompts_train']}", f"output={out / 'ppo'}",
        "train.overwrite=true", f"train.max_steps={config.overopt_steps}", f"train.lr={config.overopt_lr}",
        "train.scheduler=constant", "train.progress=false", f"prompts_per_step={config.prompts_per_step}",
        f"minibatch_size={config.prompts_per_step // 2}", "beta=0.01", f"reward.model={rm_dir}",
        f"generation.max_new_tokens={max(config.max_new_tokens, 96)}", "missing_eos_penalty=0.0"])
    train_ppo(ppo, monitors={"true_reward": WorldReward("true_reward")})
    rows = [{"step": r["step"], "kl": r["kl"], "proxy_reward": r["reward"], "true_reward": r["monitor/true_reward"],
             "completion_length": r["completion_length"]} for r in read_metrics(out / "ppo" / "metrics.jsonl")]
    atomic_write_text(out / "curve.json", json.dumps(rows, indent=1))
    atomic_write_text(out / "overoptimisation.html", overoptimisation_report(rows))
    return rows


def moving_average(rows: list[dict[str, float]], keys: tuple[str, ...], window: int) -> list[dict[str, float]]:
    """Means of ``keys`` over each run of ``window`` consecutive rows (one PPO step is 16 answers: noisy)."""
    from alignlab.report.html import moving_average as trailing_mean

    window = max(1, min(window, len(rows)))
    columns = {k: trailing_mean([r[k] for r in rows], window)[window - 1:] for k in keys}  # full windows only
    return [{k: columns[k][i] for k in keys} for i in range(len(rows) - window + 1)]


def overoptimisation_report(rows: list[dict[str, float]], window: int = 8) -> str:
    """Proxy and true reward against √KL to the reference (Gao et al. 2023's axis), as moving averages over
    ``window`` PPO steps in training order, in the one report format (each reward in its own figure: their
    scales differ)."""
    from alignlab.report.html import Report

    if not rows:
        raise ConfigError("no PPO steps to plot")
    points = moving_average(rows, ("kl", "proxy_reward", "true_reward"), window)
    xs = [math.sqrt(max(p["kl"], 0.0)) for p in points]  # a k1 estimate can dip below 0 near the reference
    report = Report("Reward over-optimisation: proxy vs true reward")
    report.text(f"PPO against a length-biased reward model; moving averages over {window} steps.", note=True)
    for key in ("proxy_reward", "true_reward"):
        report.line_plot(key.replace("_", " "), {key: list(zip(xs, (p[key] for p in points)))},
                         xlabel="√KL to the reference (√nats)", ylabel=key)
    return report.render()
