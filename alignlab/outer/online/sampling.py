"""Sampling-based alignment: best-of-n, RAFT, RSO and SPIN.

Each samples from the current model, scores or pairs the samples, and then trains with an existing
objective — SFT (:func:`alignlab.outer.sft.train_sft`) or a pairwise preference loss
(:func:`alignlab.outer.preference.train_preference`); nothing here re-implements a loss.

- **best-of-n** (inference): n samples per prompt, keep the reward model's best.
- **RAFT** (Dong et al. 2023): per iteration, K samples per prompt, keep the best of K (or the global
  top fraction), SFT on the kept samples; iterate.
- **RSO** (Liu et al. 2024): statistical rejection sampling from π* ∝ π_sft·exp(r/β): draw candidates from
  π_sft, accept each with probability exp((r − r_max)/β) (Algorithm 1), pair the accepted samples,
  label each pair with the reward model, then a sigmoid (DPO) or hinge (SLiC) loss.
- **SPIN** (Chen et al. 2024): chosen = the SFT data's real answer, rejected = the current iterate's own
  generation, reference = the previous iterate; iterate.

Every stage writes its data beside the model (``iter-K/data.jsonl``, ``pairs.jsonl``), so a run can be
inspected and each stage re-run on its own.

Example::

    >>> rso_accept([0.0, 1.0, 5.0], num_samples=1, beta=1e-6, rng=random.Random(0))  # tiny β: the best only
    [2]
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from alignlab.core.data import DataConfig, load_records
from alignlab.core.generation import GenerationConfig, generate
from alignlab.core.io import atomic_write_json
from alignlab.core.metrics import MetricsLogger
from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer, save_pretrained_atomic
from alignlab.core.records import Message
from alignlab.core.run import RunConfig, start_run
from alignlab.core.tokenize import ensure_chat_template
from alignlab.core.trainer import TrainConfig, TrainResult
from alignlab.errors import ConfigError, DataError
from alignlab.outer.online.rewards import (
    RewardSource,
    RewardSourceConfig,
    as_source,
    build_reward,
    call_source,
)

# -- pure pieces ---------------------------------------------------------------------------------------------


def acceptance_probability(reward: float, r_max: float, beta: float) -> float:
    """RSO's acceptance probability exp((r − r_max)/β) for a sample from π_sft to count as a sample of π*."""
    return math.exp((reward - r_max) / beta)


def rso_accept(rewards: Sequence[float], num_samples: int, beta: float, rng: random.Random) -> list[int]:
    """Statistical rejection sampling (Liu et al. 2024, Algorithm 1): indices of accepted candidates, in order.

    Rounds over the remaining candidates; in each, a candidate is accepted with probability
    exp((r − r_max)/β), r_max being the best *remaining* reward, until ``num_samples`` are accepted or
    none remain. The best remaining candidate is always accepted, so every round makes progress.
    """
    if beta <= 0:
        raise ValueError(f"RSO's beta must be > 0, got {beta}")
    remaining = list(range(len(rewards)))
    accepted: list[int] = []
    while remaining and len(accepted) < num_samples:
        r_max = max(rewards[i] for i in remaining)
        for i in list(remaining):
            if len(accepted) == num_samples:
                break
            if rng.random() < acceptance_probability(rewards[i], r_max, beta):
                accepted.append(i)
                remaining.remove(i)
    return accepted


def pair_extremes(indices: Sequence[int], scores: Sequence[float]) -> list[tuple[int, int]]:
    """(winner, loser) pairs from accepted samples: best with worst, second best with second worst, ...,
    skipping pairs the reward cannot tell apart. With a coarse reward most accepted samples tie, and pairing
    the extremes keeps every informative pair that pairing in sampling order would often miss.

    Example:
        >>> pair_extremes([0, 1, 2, 3], [1.0, 4.0, 4.0, 2.0])
        [(1, 0), (2, 3)]
    """
    ranked = sorted(indices, key=lambda i: -scores[i])
    pairs = [(ranked[k], ranked[-1 - k]) for k in range(len(ranked) // 2)]
    return [(win, lose) for win, lose in pairs if scores[win] > scores[lose]]


def best_of_k(scores: Sequence[float], group_size: int) -> list[int]:
    """Index of the best-scoring completion in each consecutive group of ``group_size``."""
    return [g * group_size + max(range(group_size), key=lambda j: scores[g * group_size + j])
            for g in range(len(scores) // group_size)]


def top_fraction(scores: Sequence[float], fraction: float) -> list[int]:
    """Indices of the globally best ``fraction`` of scores (at least one)."""
    k = max(1, int(round(len(scores) * fraction)))
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]


# -- shared plumbing -----------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Completions of prompts, ``group_size`` consecutive ones per prompt, with their scores."""

    prompts: list[list[Message]]
    texts: list[str]
    scores: list[float]
    finished: list[bool]
    seconds: float


def sample_and_score(model: nn.Module, tokenizer, prompts: list[list[Message]], group_size: int,
                     generation: GenerationConfig, reward: RewardSource | None) -> Samples:
    """Generate ``group_size`` completions per prompt (consecutive) and score them (when ``reward`` is given)."""
    repeated = [p for p in prompts for _ in range(group_size)]
    gen = generate(model, tokenizer, repeated, generation)
    index = [i for i in range(len(prompts)) for _ in range(group_size)]
    scores = call_source(reward, repeated, gen.texts, prompt_index=index).tolist() if reward else []
    return Samples(repeated, gen.texts, scores, gen.finished, gen.seconds)


def best_of_n(model: nn.Module, tokenizer, prompts: list[list[Message]], reward: RewardSource | Callable, n: int,
              generation: GenerationConfig | None = None) -> list[tuple[str, float]]:
    """For each prompt, the best of ``n`` sampled completions under ``reward``: [(text, score)].

    Example::

        >>> best_of_n(model, tok, [[user("Hi")]], WorldReward(), n=8)  # doctest: +SKIP
    """
    samples = sample_and_score(model, tokenizer, prompts, n, generation or GenerationConfig(), as_source(reward))
    return [(samples.texts[i], samples.scores[i]) for i in best_of_k(samples.scores, n)]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    from alignlab.core.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _reply(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def _setup(config: Any, model: nn.Module | None, tokenizer, kind: str):
    """Run directory, tokenizer, model and the records of ``kind`` shared by RAFT, RSO and SPIN."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    records, _ = load_records(config.data, kind, seed=config.seed)
    if not records:
        raise DataError("the prompt set is empty", source=config.data.path)
    model = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                    trust_remote_code=config.model.trust_remote_code)
    if torch.cuda.is_available():
        model = model.cuda()
    return out, tokenizer, records, model


def _model_path(config: Any, model: nn.Module, tokenizer, out: Path) -> str:
    """A directory holding the starting model (needed as a reference / as the next stage's init)."""
    if config.model.name_or_path:
        return config.model.name_or_path
    save_pretrained_atomic(model, tokenizer, out / "start")
    return str(out / "start")


# -- RAFT ----------------------------------------------------------------------------------------------------


@dataclass
class RAFTConfig(RunConfig):
    """RAFT: sample K per prompt, keep the reward model's best, SFT on them, iterate."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the policy to start from"""
    data: DataConfig = field(default_factory=DataConfig)
    """the prompts"""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """how samples are drawn"""
    reward: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    """scores the samples"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    """the SFT stage of each iteration"""
    output: str = "runs/raft"
    """run directory (iteration K's data and model in iter-K/)"""
    iterations: int = 4
    """sample → select → SFT rounds"""
    prompts_per_iteration: int = 64
    """prompts sampled per iteration"""
    samples_per_prompt: int = 4
    """K completions per prompt"""
    selection: Literal["best_of_k", "top_fraction"] = "best_of_k"
    """keep each prompt's best (best_of_k) or the globally best fraction of all samples"""
    fraction: float = 0.2
    """fraction kept with selection=top_fraction"""
    seed: int = 0
    """seed for the prompt order"""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.prompts_per_iteration < 1 or self.samples_per_prompt < 1:
            raise ValueError("iterations, prompts_per_iteration and samples_per_prompt must be >= 1")


def train_raft(config: RAFTConfig, *, model: nn.Module | None = None, tokenizer=None,
               reward: RewardSource | Callable | None = None) -> TrainResult:
    """Run RAFT; the final policy is saved in ``config.output``; ``metrics.jsonl`` has one row per iteration."""
    from alignlab.outer.sft import SFTConfig, train_sft

    out, tokenizer, records, model = _setup(config, model, tokenizer, "prompt")
    source = as_source(reward) if reward is not None else build_reward(config.reward)
    rng = random.Random(config.seed)
    logger = MetricsLogger(out / "metrics.jsonl")
    history = []
    path = _model_path(config, model, tokenizer, out)
    for it in range(config.iterations):
        prompts = [r.prompt for r in rng.sample(records, min(config.prompts_per_iteration, len(records)))]
        s = sample_and_score(model, tokenizer, prompts, config.samples_per_prompt, config.generation, source)
        keep = (best_of_k(s.scores, config.samples_per_prompt) if config.selection == "best_of_k"
                else top_fraction(s.scores, config.fraction))
        data = _write_jsonl(out / f"iter-{it}" / "data.jsonl",
                            [{"messages": s.prompts[i] + _reply(s.texts[i])} for i in keep if s.texts[i].strip()])
        sft = SFTConfig(model=dataclasses.replace(config.model, name_or_path=path), data=DataConfig(path=str(data)),
                        train=dataclasses.replace(config.train, overwrite=True), output=str(out / f"iter-{it}"))
        result = train_sft(sft, model=model, tokenizer=tokenizer)
        path = str(out / f"iter-{it}")
        row = {"step": it + 1, "reward": sum(s.scores) / len(s.scores),
               "reward/kept": sum(s.scores[i] for i in keep) / len(keep), "kept": len(keep),
               "gen_seconds": s.seconds, "sft_loss": result.history[-1]["loss"] if result.history else None}
        logger.log(row)
        history.append(row)
    logger.close()
    return _finish(model, tokenizer, out, config.iterations, history)


def _finish(model: nn.Module, tokenizer, out: Path, steps: int, history: list[dict]) -> TrainResult:
    save_pretrained_atomic(model, tokenizer, out)
    atomic_write_json(out / "results.json", {"steps": steps, "history": history})
    return TrainResult(output_dir=out, steps=steps, history=history, eval={})


# -- RSO -----------------------------------------------------------------------------------------------------


@dataclass
class RSOConfig(RunConfig):
    """RSO: rejection-sample from the optimal policy with the reward model, then a pairwise loss."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the SFT policy π_sft to sample from and start training from"""
    data: DataConfig = field(default_factory=DataConfig)
    """the prompts"""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """how candidates are drawn from π_sft"""
    reward: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    """the reward model that defines π* and labels the pairs"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-6))
    """the preference-training stage"""
    output: str = "runs/rso"
    """run directory (pairs.jsonl, the trained model)"""
    num_candidates: int = 8
    """candidates drawn from π_sft per prompt"""
    num_samples: int = 4
    """samples accepted per prompt (paired up two by two)"""
    rso_beta: float = 0.5
    """β of π* ∝ π_sft·exp(r/β): small keeps only the best, large accepts almost everything"""
    loss: Literal["dpo", "slic"] = "dpo"
    """sigmoid (dpo) or hinge (slic) preference loss on the sampled pairs"""
    beta: float = 0.1
    """the preference loss's β"""
    seed: int = 0
    """seed of the acceptance draws"""

    def __post_init__(self) -> None:
        if self.num_samples < 2 or self.num_candidates < self.num_samples:
            raise ValueError("RSO needs num_samples >= 2 and num_candidates >= num_samples")
        if self.rso_beta <= 0:
            raise ValueError(f"rso_beta must be > 0, got {self.rso_beta}")


def train_rso(config: RSOConfig, *, model: nn.Module | None = None, tokenizer=None,
              reward: RewardSource | Callable | None = None) -> TrainResult:
    """Sample pairs from π* by rejection sampling and train on them with a sigmoid/hinge loss."""
    from alignlab.outer.preference import PreferenceConfig, train_preference

    out, tokenizer, records, model = _setup(config, model, tokenizer, "prompt")
    source = as_source(reward) if reward is not None else build_reward(config.reward)
    path = _model_path(config, model, tokenizer, out)
    s = sample_and_score(model, tokenizer, [r.prompt for r in records], config.num_candidates, config.generation,
                         source)
    rng = random.Random(config.seed)
    pairs, accepted = [], 0
    for g in range(len(records)):
        lo = g * config.num_candidates
        chosen_idx = [lo + i for i in rso_accept(s.scores[lo:lo + config.num_candidates], config.num_samples,
                                                 config.rso_beta, rng)]
        accepted += len(chosen_idx)
        # an empty answer (EOS at once) cannot be a side of a pair: the pair readers reject empty completions
        for win, lose in pair_extremes([i for i in chosen_idx if s.texts[i].strip()], s.scores):
            pairs.append({"prompt": s.prompts[win], "chosen": _reply(s.texts[win]), "rejected": _reply(s.texts[lose]),
                          "margin": s.scores[win] - s.scores[lose]})
    if not pairs:
        raise DataError("rejection sampling produced no pair with different rewards; raise num_candidates or "
                        "generation.temperature", source=config.data.path)
    data = _write_jsonl(out / "pairs.jsonl", pairs)
    pref = PreferenceConfig(model=dataclasses.replace(config.model, name_or_path=path), data=DataConfig(path=str(data)),
                            train=dataclasses.replace(config.train, overwrite=True), output=str(out / "preference"),
                            loss=config.loss, beta=config.beta, reference_model=path)
    result = train_preference(pref, model=model, tokenizer=tokenizer)
    stats = {"step": 1, "reward": sum(s.scores) / len(s.scores), "accepted": accepted, "pairs": len(pairs),
             "gen_seconds": s.seconds, "preference_loss": result.history[-1].get("loss") if result.history else None}
    return _finish(model, tokenizer, out, result.steps, [stats])


# -- SPIN ----------------------------------------------------------------------------------------------------


@dataclass
class SPINConfig(RunConfig):
    """SPIN: self-play — real SFT answers as chosen, the model's own as rejected, previous iterate as reference."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the SFT policy to start from"""
    data: DataConfig = field(default_factory=DataConfig)
    """SFT demonstrations (conversations)"""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """how the model's own answers are generated"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-6))
    """the preference-training stage of each iteration"""
    output: str = "runs/spin"
    """run directory (iteration K in iter-K/)"""
    iterations: int = 2
    """self-play rounds"""
    loss: Literal["dpo", "slic"] = "dpo"
    """sigmoid (the paper's logistic loss) or hinge"""
    beta: float = 0.1
    """the preference loss's β (the paper's λ)"""
    seed: int = 0
    """seed"""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")


def train_spin(config: SPINConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Run SPIN; the final iterate is saved in ``config.output``."""
    from alignlab.outer.preference import PreferenceConfig, train_preference

    out, tokenizer, records, model = _setup(config, model, tokenizer, "conversation")
    path = _model_path(config, model, tokenizer, out)
    logger = MetricsLogger(out / "metrics.jsonl")
    history = []
    for it in range(config.iterations):
        s = sample_and_score(model, tokenizer, [r.prompt for r in records], 1, config.generation, None)
        pairs = [{"prompt": r.prompt, "chosen": _reply(r.completion), "rejected": _reply(text)}
                 for r, text in zip(records, s.texts) if text.strip() and text.strip() != r.completion.strip()]
        if not pairs:
            raise ConfigError(f"iteration {it}: the model reproduces every demonstration (or answers nothing); SPIN has "
                              "converged")
        data = _write_jsonl(out / f"iter-{it}" / "pairs.jsonl", pairs)
        # Reference = the previous iterate (θ_t), which is also where θ_{t+1} starts.
        pref = PreferenceConfig(model=dataclasses.replace(config.model, name_or_path=path),
                                data=DataConfig(path=str(data)), train=dataclasses.replace(config.train, overwrite=True),
                                output=str(out / f"iter-{it}"), loss=config.loss, beta=config.beta, reference_model=path)
        result = train_preference(pref, model=model, tokenizer=tokenizer)
        path = str(out / f"iter-{it}")
        row = {"step": it + 1, "pairs": len(pairs), "gen_seconds": s.seconds,
               "preference_loss": result.history[-1].get("loss") if result.history else None}
        logger.log(row)
        history.append(row)
    logger.close()
    return _finish(model, tokenizer, out, config.iterations, history)
