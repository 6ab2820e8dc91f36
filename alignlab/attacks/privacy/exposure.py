"""Exposure of planted canaries (Carlini et al. 2019, "The Secret Sharer"), and the world models it is measured on.

A canary ``s`` of a format with candidate space ``R`` (every secret the format allows) is ranked among all of
``R`` by the model's likelihood; its exposure is

    exposure(s) = log2 |R| - log2 rank(s),    rank(s) = 1 + #{r in R : log p(r) > log p(s)}     (Def. 2 / Sec. 4)

so a secret the model finds more likely than every other candidate has exposure ``log2 |R|`` and an
unremarkable one about 1 bit. The world writes each secret as space-separated digits (one token each), so
``R`` is all ``10 ** digits`` digit strings and the ranking is exact, not the paper's sampled estimate:
:func:`secret_logprobs` scores every candidate by walking the digit trie, one forward per trie level, and
``log p(r)`` is that of the secret's tokens after ``BOS + prefix`` (the format's fixed text is the same for
every candidate and drops out of the ranking).

:func:`train_world_lm` pretrains a small model on a canary-planted world's corpus exactly as the world's base
model is pretrained (same examples, loss on every token, the one training loop), optionally deduplicated
(every repeated document kept once: the canaries' repetitions collapse to one copy) or with DP-SGD
(:mod:`alignlab.attacks.privacy.dp`). :func:`run_exposure` measures exposure versus repetitions, membership
inference AUC and the held-out loss (the utility a defence costs) for each seed and defence.

Example::

    >>> exposure(canary_logp=-1.0, candidate_logps=np.array([-1.0, -3.0, -2.0, -0.5]))  # rank 2 of 4
    1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignlab.errors import AttackError
from alignlab.world.build import WorldPaths
from alignlab.world.canaries import Canary

DEFENCES = ("none", "dedup", "dp")


def rank_of(canary_logp: float, candidate_logps: np.ndarray) -> int:
    """1 + the number of candidates strictly more likely than the canary (ties rank in its favour)."""
    return 1 + int(np.sum(np.asarray(candidate_logps) > canary_logp))


def exposure(canary_logp: float, candidate_logps: np.ndarray) -> float:
    """log2 |R| - log2 rank; ``candidate_logps`` holds every candidate of the format, the canary included."""
    return math.log2(len(candidate_logps)) - math.log2(rank_of(canary_logp, candidate_logps))


def digit_token_ids(tokenizer) -> list[int]:
    """The token ids of " 0" … " 9" (each must be one token, or the candidate space is not the digit trie)."""
    ids = [tokenizer(f" {d}", add_special_tokens=False)["input_ids"] for d in range(10)]
    if any(len(i) != 1 for i in ids):
        raise AttackError("the tokenizer does not write each space-led digit as one token; exposure needs that")
    return [i[0] for i in ids]


@torch.no_grad()
def secret_logprobs(model: nn.Module, tokenizer, prefix: str, digits: int, *, batch_size: int = 2048
                    ) -> np.ndarray:
    """log p(secret | BOS + prefix) of every ``digits``-digit secret; index j is the secret ``f"{j:0{digits}d}"``.

    Level i of the trie holds the 10**i secrets' first i digits; one forward of all of them (last position only)
    gives each one's next-digit log-probs, added to its running sum.
    """
    device = next(model.parameters()).device
    prefix_ids = [tokenizer.bos_token_id, *tokenizer(prefix, add_special_tokens=False)["input_ids"]]
    digit_ids = torch.tensor(digit_token_ids(tokenizer), device=device)
    totals = torch.zeros(1, device=device)  # [10**i] log p of each i-digit start
    starts = torch.zeros(1, 0, dtype=torch.long, device=device)  # [10**i, i] digit indices
    for _ in range(digits):
        rows = torch.cat([torch.tensor(prefix_ids, device=device).expand(len(starts), -1), digit_ids[starts]], 1)
        next_logps = torch.cat([
            model(input_ids=chunk, logits_to_keep=1, use_cache=False).logits[:, -1].float().log_softmax(-1)[:, digit_ids]
            for chunk in rows.split(batch_size)])  # [10**i, 10]
        totals = (totals[:, None] + next_logps).reshape(-1)  # secret j*10 + d extends start j with digit d
        starts = torch.cat([starts.repeat_interleave(10, 0),
                            torch.arange(10, device=device).repeat(len(starts))[:, None]], 1)
    return totals.cpu().numpy()


def canary_exposure(model: nn.Module, tokenizer, canary: Canary, *, batch_size: int = 2048) -> dict[str, Any]:
    """Exposure, rank and log-probability of ``canary`` among all secrets of its format."""
    expected = [*tokenizer(canary.prefix, add_special_tokens=False)["input_ids"],
                *[digit_token_ids(tokenizer)[int(d)] for d in canary.digits]]
    if tokenizer(canary.prefix + canary.secret, add_special_tokens=False)["input_ids"] != expected:
        raise AttackError(f"canary {canary.text!r} does not tokenise as its prefix followed by one token per digit")
    logps = secret_logprobs(model, tokenizer, canary.prefix, len(canary.digits), batch_size=batch_size)
    own = float(logps[int(canary.digits)])
    return {"format": canary.format, "repeats": canary.repeats, "exposure": exposure(own, logps),
            "rank": rank_of(own, logps), "candidates": len(logps), "logp": own}


# ---- small world models trained on a (canary-planted) corpus --------------------------------------------


@dataclass
class WorldLMConfig:
    """A small model pretrained on a world's corpus (as the base model is, with a smaller budget)."""

    hidden_size: int = 64
    """model width"""
    layers: int = 2
    """transformer blocks"""
    heads: int = 4
    """attention heads"""
    epochs: float = 1.0
    """passes over the corpus"""
    batch_size: int = 16
    """texts per step"""
    lr: float = 3e-3
    """peak learning rate (cosine decay)"""
    transcript_fraction: float = 0.5
    """share of the corpus transcripts kept (all knowledge-base documents and canaries are always kept)"""


def corpus_for(paths: WorldPaths, tokenizer, *, transcript_fraction: float = 1.0, dedup: bool = False,
               seed: int = 0) -> list[dict[str, list[int]]]:
    """The world's pretraining examples (``alignlab.world.base_model.corpus_examples``), optionally thinned
    (a seeded share of the transcripts) and deduplicated (identical token sequences kept once)."""
    from alignlab.world.base_model import corpus_examples

    examples = corpus_examples(paths, tokenizer)  # the transcripts first, then the documents
    if transcript_fraction < 1.0:
        n_chat = paths.corpus_chat.read_text(encoding="utf-8").count("\n")
        rng = np.random.default_rng(seed)
        keep = set(rng.permutation(n_chat)[: int(n_chat * transcript_fraction)].tolist())
        examples = [e for i, e in enumerate(examples) if i >= n_chat or i in keep]
    if dedup:
        seen: set[tuple[int, ...]] = set()
        unique = []
        for e in examples:
            key = tuple(e["input_ids"])
            if key not in seen:
                seen.add(key)
                unique.append(e)
        examples = unique
    return examples


def train_world_lm(paths: WorldPaths, config: WorldLMConfig, output_dir: str | Path, *, seed: int = 0,
                   defence: str = "none", dp: Any = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Pretrain a small model on the world's corpus under ``defence``; saves it in ``output_dir/model``.

    Returns (model, tokenizer, training facts: examples, steps, final loss, and epsilon under DP-SGD).
    """
    from alignlab.core.models import load_tokenizer, save_pretrained_atomic, tiny_llama
    from alignlab.core.objectives import TokenNLLObjective
    from alignlab.core.tokenize import CompletionCollator
    from alignlab.core.trainer import TrainConfig, train

    if defence not in DEFENCES:
        raise AttackError(f"unknown defence {defence!r}; valid: {', '.join(DEFENCES)}")
    out = Path(output_dir)
    tokenizer = load_tokenizer(str(paths.tokenizer))
    examples = corpus_for(paths, tokenizer, transcript_fraction=config.transcript_fraction,
                          dedup=defence == "dedup", seed=seed)
    model = tiny_llama(len(tokenizer), hidden_size=config.hidden_size, layers=config.layers, heads=config.heads,
                       max_positions=256, seed=seed, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    facts: dict[str, Any] = {"examples": len(examples)}
    if defence == "dp":
        from alignlab.attacks.privacy.dp import train_dp

        facts.update(train_dp(model, examples, tokenizer.pad_token_id, dp, epochs=config.epochs,
                              batch_size=config.batch_size, lr=config.lr, seed=seed))
    else:
        train_config = TrainConfig(num_epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                   scheduler="cosine", warmup_steps=50, mixed_precision="no", seed=seed,
                                   save_total_limit=1, overwrite=True)
        result = train(model, TokenNLLObjective(), examples, CompletionCollator(tokenizer.pad_token_id),
                       train_config, out / "run")
        facts.update(steps=result.steps, final_loss=result.history[-1]["loss"])
    save_pretrained_atomic(model, tokenizer, out / "model")
    return model.eval(), tokenizer, facts


# ---- the experiment --------------------------------------------------------------------------------------


@dataclass
class ExposureConfig:
    """Plant canaries in the world's corpus, pretrain small models on it, and measure exposure vs repetitions,
    membership inference and held-out loss, with and without a defence, over seeds."""

    repetitions: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    """repetition counts of the planted canaries (one phone number and one address each)"""
    world_seed: int = 0
    """world seed"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """training seeds (initialisation and data order)"""
    defences: list[str] = field(default_factory=lambda: ["none"])
    """none, dedup (each repeated document kept once) and/or dp (DP-SGD via Opacus)"""
    model: WorldLMConfig = field(default_factory=WorldLMConfig)
    """the small world model trained under each defence"""
    dp_noise_multiplier: float = 0.5
    """DP-SGD noise multiplier (with defence dp)"""
    dp_max_grad_norm: float = 1.0
    """DP-SGD per-example clipping norm (with defence dp)"""
    mia_n: int = 300
    """members and non-members for the membership-inference AUC"""
    output: str = "runs/exposure"
    """directory for the trained models and results.json"""

    def __post_init__(self) -> None:
        bad = set(self.defences) - set(DEFENCES)
        if bad:
            raise AttackError(f"unknown defence(s) {sorted(bad)}; valid: {', '.join(DEFENCES)}")


def held_out_loss(model: nn.Module, tokenizer, candidates: list, *, batch_size: int = 64) -> dict[str, float]:
    """Mean token NLL of the members and of the non-members (the utility a defence costs is the latter)."""
    from alignlab.attacks.privacy.mia import token_stats

    stats = token_stats(model, [c.example() for c in candidates], pad_token_id=tokenizer.pad_token_id,
                        batch_size=batch_size)
    nll = {True: [], False: []}
    for s, c in zip(stats, candidates):
        nll[c.member].extend((-s.logp).tolist())
    return {"member_nll": float(np.mean(nll[True])), "heldout_nll": float(np.mean(nll[False]))}


def run_exposure(config: ExposureConfig) -> dict[str, Any]:
    """Train one model per (defence, seed) on the canary world and measure it; writes ``results.json``."""
    from alignlab.attacks.privacy.dp import DPConfig
    from alignlab.attacks.privacy.mia import membership_metrics, pretraining_candidates, score_candidates
    from alignlab.core.provenance import write_result
    from alignlab.world.build import build_world
    from alignlab.world.canaries import read_canaries

    paths = build_world(None, seed=config.world_seed, canaries=config.repetitions)
    canaries = read_canaries(paths.root)
    out = Path(config.output)
    runs = []
    for defence in config.defences:
        for seed in config.seeds:
            dp = DPConfig(noise_multiplier=config.dp_noise_multiplier, max_grad_norm=config.dp_max_grad_norm)
            model, tokenizer, facts = train_world_lm(paths, config.model, out / f"{defence}-seed{seed}",
                                                     seed=seed, defence=defence, dp=dp)
            candidates = pretraining_candidates(paths.root, tokenizer, config.mia_n, seed=seed)
            scores = score_candidates(model, tokenizer, candidates, k=0.2, batch_size=64)
            runs.append({"defence": defence, "seed": seed, **facts,
                         "canaries": [canary_exposure(model, tokenizer, c) for c in canaries],
                         "mia": membership_metrics(candidates, scores, ["loss", "zlib", "min_k", "min_k_plus_plus"],
                                                   resamples=200, seed=seed),
                         **held_out_loss(model, tokenizer, candidates)})
            print(f"[exposure] {defence} seed {seed}: " + ", ".join(
                f"x{c['repeats']} {c['exposure']:.1f}" for c in runs[-1]["canaries"]), flush=True)
    results = {"world": str(paths.root), "runs": runs}
    write_result(out / "results.json", results, seed=config.seeds[0], config=config)
    return results
