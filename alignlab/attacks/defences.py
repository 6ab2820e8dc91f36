"""Defences against the attacks, measured: a perplexity filter, and adversarial training data from found suffixes.

**Perplexity filter** (Alon & Kamfonas 2023; Jain et al. 2023, "Baseline Defenses"): GCG suffixes are gibberish, so a
reference LM finds prompts that carry one improbable. A prompt is flagged when its perplexity under the reference,
exp(−(1/N) Σ_t log p(x_t | x_<t)), exceeds a threshold; with ``window`` set, the highest perplexity over windows of
that many tokens is used instead, so a short suffix is not averaged away by a long request. The threshold is the
``quantile`` of perplexities on calibration prompts that are benign; the false-positive rate is then measured on
other benign prompts and the detection rate on attacked ones, each with a Wilson interval.

**Adversarial training** (Zou et al. §5; Mazeika et al. 2024): :func:`adversarial_pairs` turns the attempts of an
attack run into preference pairs — the attacked prompt, a refusal as chosen, the model's compliant response as
rejected — for alignlab's DPO (``alignlab train dpo``). ``alignlab attack adversarial-training`` runs it and attacks
held-out behaviours afresh before and after.

Example::

    >>> windowed_perplexity(torch.log(torch.tensor([0.5, 0.5, 0.01, 0.01])), window=2) > 50
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.attacks.gcg import GCGConfig
from alignlab.attacks.pipeline import wilson_interval
from alignlab.attacks.robustness import world_gcg
from alignlab.errors import AttackError


def windowed_perplexity(token_logprobs: torch.Tensor, window: int | None = None) -> float:
    """exp of the mean negative log-prob [N] over the whole text, or the largest over windows of ``window`` tokens."""
    nll = -token_logprobs.double()
    if window is None or window >= len(nll):
        return math.exp(float(nll.mean()))
    return math.exp(float(nll.unfold(0, window, 1).mean(-1).max()))


@torch.no_grad()
def prompt_token_logprobs(model, tokenizer, text: str) -> torch.Tensor:
    """log p(x_t | x_<t) of each token of ``text`` after the first (BOS prepended when the tokenizer has one) → [N]."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    if len(ids) < 2:
        raise AttackError(f"the prompt {text[:40]!r} has no token to score")
    device = next(model.parameters()).device
    tensor = torch.tensor([ids], device=device)
    logits = model(input_ids=tensor).logits[0, :-1].float()  # [N, vocab]: position t predicts token t + 1
    return logits.log_softmax(-1).gather(-1, tensor[0, 1:, None]).squeeze(-1)


@dataclass
class PerplexityFilter:
    """Flags prompts whose (windowed) perplexity under a reference LM is above ``threshold``."""

    threshold: float
    window: int | None = None

    @classmethod
    def calibrate(cls, perplexities: Sequence[float], quantile: float = 1.0, window: int | None = None
                  ) -> PerplexityFilter:
        """The threshold at the ``quantile`` of benign calibration perplexities (1.0: their maximum)."""
        if not perplexities:
            raise AttackError("the perplexity filter needs benign calibration prompts")
        return cls(float(torch.tensor(list(perplexities), dtype=torch.float64).quantile(quantile)), window)

    def flags(self, perplexities: Sequence[float]) -> list[bool]:
        return [p > self.threshold for p in perplexities]


@dataclass
class FilterResult:
    threshold: float
    false_positive_rate: dict[str, Any] = field(default_factory=dict)
    detection_rate: dict[str, dict[str, Any]] = field(default_factory=dict)


def rate_with_interval(flags: Sequence[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    low, high = wilson_interval(k, n)
    return {"rate": k / n if n else None, "low": low, "high": high, "k": k, "n": n}


def evaluate_perplexity_filter(model, tokenizer, calibration: Sequence[str], benign: Sequence[str],
                               attacked: dict[str, Sequence[str]], *, window: int | None = None,
                               quantile: float = 1.0) -> FilterResult:
    """Calibrate on benign ``calibration`` prompts; false positives on ``benign``; detection per attacked group."""
    ppl = lambda texts: [windowed_perplexity(prompt_token_logprobs(model, tokenizer, t), window) for t in texts]  # noqa: E731
    filt = PerplexityFilter.calibrate(ppl(calibration), quantile, window)
    result = FilterResult(threshold=filt.threshold, false_positive_rate=rate_with_interval(filt.flags(ppl(benign))))
    for name, texts in attacked.items():
        result.detection_rate[name] = rate_with_interval(filt.flags(ppl(texts)))
    return result


REFUSAL = "I can't help with that."


def adversarial_pairs(attempts: Sequence[dict[str, Any]], *, refusal: str = REFUSAL,
                      successful_only: bool = True, rule: str = "world") -> list[dict[str, Any]]:
    """Preference rows (prompt / chosen / rejected, TRL's conversational format) from an attack run's attempts:
    the attacked prompt, a refusal as chosen, the model's response as rejected. ``successful_only`` keeps the
    attempts that succeeded by ``rule`` (the response is then a harmful answer worth ranking below a refusal)."""
    rows = []
    for a in attempts:
        if successful_only and not a["success"].get(rule):
            continue
        rows.append({"prompt": a["messages"], "chosen": [{"role": "assistant", "content": refusal}],
                     "rejected": [{"role": "assistant", "content": a["response"]}]})
    return rows


@dataclass
class PerplexityFilterConfig:
    """Measure a perplexity filter: false positives on the world's benign prompts, detection of attacked prompts."""

    model: str
    """the reference LM that scores prompts (a local model or run dir)"""
    runs: list[str]
    """attack run directories (alignlab attack run --output) whose attacked prompts the filter should catch"""
    output: str
    """the result JSON (with provenance)"""
    window: int | None = None
    """score the worst window of this many tokens instead of the whole prompt (null: whole prompt)"""
    quantile: float = 1.0
    """threshold = this quantile of the calibration prompts' perplexities (1.0: their maximum)"""
    world_seed: int = 0
    """the world whose held-out benign prompts (every family but harmful) calibrate and test the filter"""
    world_size: str = "small"
    """the world's size"""


def run_perplexity_filter(config: PerplexityFilterConfig) -> dict[str, Any]:
    """Calibrate on one half of the world's benign held-out prompts, test on the other, detect each run's prompts."""
    import json
    import random
    from pathlib import Path

    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.datasets import World

    splits = World(config.world_seed, config.world_size).splits.eval
    benign = sorted(p.text for family, prompts in splits.items() if family != "harmful" for p in prompts)
    random.Random(config.world_seed).shuffle(benign)
    calibration, test = benign[: len(benign) // 2], benign[len(benign) // 2:]
    attacked: dict[str, list[str]] = {}
    for run in config.runs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise AttackError(f"{path} not found: give directories written by alignlab attack run")
        for a in json.loads(path.read_text(encoding="utf-8"))["results"]["attempts"]:
            attacked.setdefault(f"{Path(run).name}/{a['variant']}", []).append(a["messages"][-1]["content"])
    lm = HuggingFaceLM(config.model)
    result = evaluate_perplexity_filter(lm.model, lm.tokenizer, calibration, test, attacked, window=config.window,
                                        quantile=config.quantile)
    out = {"threshold": result.threshold, "false_positive_rate": result.false_positive_rate,
           "detection_rate": result.detection_rate, "n_calibration": len(calibration)}
    write_result(config.output, out, seed=config.world_seed, config=config)
    return out


@dataclass
class AdversarialTrainingConfig:
    """Adversarial training on the toy world: GCG suffixes found on training prompts become DPO pairs; fresh GCG on
    held-out prompts before and after."""

    model: str
    """the model to harden (a local model or run dir, e.g. a DPO model)"""
    work: str
    """directory for the attack runs, the pairs file and the trained model"""
    output: str
    """the result JSON (with provenance): attack success before and after"""
    train_limit: int = 20
    """world training prompts attacked to find suffixes"""
    eval_limit: int = 20
    """held-out world prompts attacked afresh before and after"""
    gcg: GCGConfig = field(default_factory=world_gcg)
    """GCG settings of every attack run"""
    mix_pairs: int = 200
    """ordinary world preference pairs (pairs_train.jsonl) mixed in, so that training does not learn to refuse all"""
    method: str = "dpo"
    """alignlab preference method that trains on the pairs"""
    max_steps: int = 40
    """optimiser steps of that training"""
    lr: float = 1e-4
    """its learning rate"""
    batch_size: int = 16
    """pairs per optimiser step (at most the number of pairs)"""
    seed: int = 0
    """seed of GCG's sampler and of training"""
    world_seed: int = 0
    """the world (seed) whose prompts and pairs are used"""


def run_adversarial_training(config: AdversarialTrainingConfig) -> dict[str, Any]:
    """Attack → pairs → train → attack held-out prompts on the start model and the trained one."""
    from pathlib import Path

    from alignlab.attacks.pipeline import AttackRunConfig, run_attack_pipeline
    from alignlab.core.provenance import write_result
    from alignlab.registry import train
    from alignlab.world.build import build_world
    from alignlab.world.datasets import read_jsonl, write_jsonl

    work = Path(config.work)
    attack = lambda model, behaviors, limit, name: run_attack_pipeline(AttackRunConfig(  # noqa: E731
        model=model, behaviors=behaviors, output=str(work / name), attack="gcg", limit=limit, gcg=config.gcg,
        max_new_tokens=32, seed=config.seed, world_seed=config.world_seed))["results"]
    found = attack(config.model, "world-train", config.train_limit, "find")
    # a successful attempt's own answer is the rejected reply; a failed one's target is what the attack aimed at
    rows = adversarial_pairs(found["attempts"])
    rows += [{**row, "rejected": [{"role": "assistant", "content": a["target"]}]}
             for a in found["attempts"] if not a["success"]["world"]
             for row in adversarial_pairs([a], successful_only=False)]
    world_pairs = Path(build_world(seed=config.world_seed, verbose=False).datasets["pairs_train"])
    rows += read_jsonl(world_pairs)[: config.mix_pairs]
    pairs_path = write_jsonl(work / "adversarial_pairs.jsonl", rows)
    trained = work / "model"
    train(config.method, overrides=[f"model.name_or_path={config.model}", f"data.path={pairs_path}",
                                    f"output={trained}", f"train.max_steps={config.max_steps}", f"train.lr={config.lr}",
                                    f"train.seed={config.seed}", "train.progress=false",
                                    f"train.batch_size={min(config.batch_size, len(rows))}"])
    before = attack(config.model, "world", config.eval_limit, "before")
    after = attack(str(trained), "world", config.eval_limit, "after")
    from alignlab.attacks.robustness import mean_best_loss

    out = {"found": found["summary"], "n_pairs": len(rows), "n_adversarial_pairs": len(rows) - config.mix_pairs,
           "before": before["summary"], "after": after["summary"],
           "mean_best_loss": {"before": mean_best_loss(before["attempts"]), "after": mean_best_loss(after["attempts"])}}
    write_result(config.output, out, seed=config.seed, config=config)
    return out
