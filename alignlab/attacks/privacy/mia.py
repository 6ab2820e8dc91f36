"""Membership inference: was this text in the model's training data?

Every score is a function of the model's per-token log-probabilities and, as MIMIR (Duan et al. 2024) writes
them, **lower means "more likely a member"**. With ``T`` scored tokens and ``lp_t = log p(x_t given x_<t)``:

| score               | formula                                                                 | paper               |
|---------------------|-------------------------------------------------------------------------|---------------------|
| ``loss``            | ``-mean_t lp_t``                                                        | Yeom et al. 2018    |
| ``zlib``            | ``loss / len(zlib.compress(text))`` (bytes)                             | Carlini et al. 2021 |
| ``min_k``           | ``-mean`` of the ``int(k T)`` lowest ``lp_t``                           | Shi et al. 2024     |
| ``min_k_plus_plus`` | ``-mean`` of the ``int(k T)`` lowest ``(lp_t - mu_t) / sigma_t``        | Zhang et al. 2024   |
| ``reference``       | ``loss(target) - loss(reference model)``                                | Carlini et al. 2022 |

where ``mu_t`` and ``sigma_t`` are the mean and standard deviation of ``log p(z)`` for ``z`` drawn from the
model's own next-token distribution at position ``t``.

One deviation from MIMIR: where ``int(k T)`` is 0 (a text shorter than ``1/k`` tokens) MIMIR returns NaN and
drops the text; here the single lowest token is used, so no text is silently dropped.

Metrics (:func:`roc_metrics`) follow MIMIR's ``get_roc_metrics``: members are the positive class, the
prediction is ``-score``; TPR at FPR ``b`` is the TPR of the last ROC point with FPR strictly below ``b``. The
AUC interval is a percentile bootstrap that resamples members and non-members separately (MIMIR resamples
the pooled set, so its class sizes vary between resamples).

The toy world gives what published benchmarks lack: members and non-members from *one* generator. For the
SFT model, members are its ``sft_train`` demonstrations and non-members demonstrations of the same aligned
persona on the world's held-out prompts (a random quarter of each family's prompts); for the pretrained
(base) model, members are corpus transcripts and non-members the same persona's transcripts on held-out
prompts. The ``unknowns`` family is left out on both sides: its held-out prompts name countries training
never saw, which would let a score tell the two apart by the entities rather than by membership.

Example::

    >>> lp = np.log([0.5, 0.25, 0.125, 0.5])
    >>> round(loss_score(lp), 4), round(min_k_score(lp, k=0.5), 4)   # lowest two: log .125, log .25
    (1.213, 1.7329)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignlab.core.logprobs import forward_logits
from alignlab.core.tokenize import IGNORE_INDEX, CompletionCollator
from alignlab.errors import AttackError

SCORES = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")


# ---- per-token statistics: one batched forward per batch of texts ---------------------------------------


@dataclass
class TokenStats:
    """Per scored token of one text: ``logp`` = log p(x_t given x_<t), and the mean ``mu`` and standard deviation
    ``sigma`` of log p(z given x_<t) over z drawn from the model's own next-token distribution (for Min-K%++)."""

    logp: np.ndarray  # [T]
    mu: np.ndarray  # [T]
    sigma: np.ndarray  # [T]


@torch.no_grad()
def token_stats(model: nn.Module, examples: Sequence[dict[str, list[int]]], *, pad_token_id: int,
                batch_size: int = 32, progress: bool = False) -> list[TokenStats]:
    """:class:`TokenStats` of each example (``input_ids`` and ``labels``; IGNORE_INDEX labels are not scored).

    Texts of similar length are batched together; the forward is the training loop's
    (:func:`alignlab.core.logprobs.forward_logits`: the LM head runs only from the first scored position on).
    """
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    collate = CompletionCollator(pad_token_id)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    stats: list[TokenStats | None] = [None] * len(examples)
    for start in tqdm(range(0, len(order), batch_size), desc="log-probs", disable=not progress):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx]).items()}
        logits, targets = forward_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        logprobs = logits.float().log_softmax(-1)  # [B, n, vocab]
        mask = targets != IGNORE_INDEX  # [B, n]
        logp = logprobs.gather(-1, targets.masked_fill(~mask, 0)[..., None]).squeeze(-1)
        probs = logprobs.exp()
        mu = (probs * logprobs).sum(-1)  # E_z[log p(z)]
        sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
        for row, i in enumerate(idx):
            m = mask[row]
            stats[i] = TokenStats(logp[row][m].cpu().numpy(), mu[row][m].cpu().numpy(), sigma[row][m].cpu().numpy())
    return stats  # type: ignore[return-value]


# ---- the scores: pure functions of per-token values (lower = member) ------------------------------------


def loss_score(logp: np.ndarray) -> float:
    """Mean negative log-likelihood of the scored tokens (LOSS attack)."""
    return float(-np.mean(logp))


def zlib_score(logp: np.ndarray, text: str) -> float:
    """Loss divided by the zlib-compressed size of ``text`` in bytes (MIMIR's ``ZLIBAttack``)."""
    return loss_score(logp) / len(zlib.compress(text.encode("utf-8")))


def _lowest_mean(values: np.ndarray, k: float) -> float:
    n = max(1, int(len(values) * k))  # MIMIR: int(len * k), NaN when that is 0 (see the module docstring)
    return float(-np.mean(np.sort(values)[:n]))


def min_k_score(logp: np.ndarray, k: float = 0.2) -> float:
    """Min-K% Prob: minus the mean of the ``k`` fraction of lowest token log-probs."""
    return _lowest_mean(logp, k)


def min_k_plus_plus_score(logp: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.2) -> float:
    """Min-K%++: each token's log-prob standardised by its next-token distribution, then as Min-K%."""
    return _lowest_mean((logp - mu) / sigma, k)


def reference_score(logp: np.ndarray, reference_logp: np.ndarray) -> float:
    """Target loss minus the reference model's loss on the same tokens (difficulty calibration)."""
    return loss_score(logp) - loss_score(reference_logp)


def all_scores(stats: TokenStats, text: str, *, k: float = 0.2, reference: TokenStats | None = None
               ) -> dict[str, float]:
    """Every score of one text (``reference`` only with a reference model's stats)."""
    scores = {"loss": loss_score(stats.logp), "zlib": zlib_score(stats.logp, text),
              "min_k": min_k_score(stats.logp, k), "min_k_plus_plus": min_k_plus_plus_score(stats.logp, stats.mu,
                                                                                            stats.sigma, k)}
    if reference is not None:
        scores["reference"] = reference_score(stats.logp, reference.logp)
    return scores


# ---- metrics ---------------------------------------------------------------------------------------------


def roc_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC-AUC of separating members (positive) from non-members by ``-score``."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    return float(roc_auc_score(labels, -np.r_[member_scores, nonmember_scores]))


def tpr_at_fpr(member_scores: Sequence[float], nonmember_scores: Sequence[float], bound: float) -> float:
    """TPR of the last ROC point whose FPR is strictly below ``bound`` (MIMIR's ``tpr_at_low_fpr``)."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    fpr, tpr, _ = roc_curve(labels, -np.r_[member_scores, nonmember_scores])
    return float(tpr[np.where(fpr < bound)[0][-1]])


def bootstrap_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float], *, resamples: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC-AUC (members and non-members resampled separately)."""
    rng = np.random.default_rng(seed)
    members, nonmembers = np.asarray(member_scores), np.asarray(nonmember_scores)
    aucs = [roc_auc(rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers)))
            for _ in range(resamples)]
    alpha = (1 - confidence) / 2
    return float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))


def roc_metrics(member_scores: Sequence[float], nonmember_scores: Sequence[float], *, resamples: int = 1000,
                seed: int = 0) -> dict[str, Any]:
    """AUC, its 95% bootstrap interval, and TPR at 0.1% and 1% FPR."""
    low, high = bootstrap_auc(member_scores, nonmember_scores, resamples=resamples, seed=seed)
    return {"auc": roc_auc(member_scores, nonmember_scores), "auc_low": low, "auc_high": high,
            "tpr_at_0.1%_fpr": tpr_at_fpr(member_scores, nonmember_scores, 0.001),
            "tpr_at_1%_fpr": tpr_at_fpr(member_scores, nonmember_scores, 0.01)}


# ---- members and non-members from the world -------------------------------------------------------------


@dataclass
class Candidate:
    """A text whose membership is tested: the scored ``text`` and its tokens (``labels`` mark scored tokens)."""

    text: str
    input_ids: list[int]
    labels: list[int]
    member: bool

    def example(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def world_of(world_root: str | Path):
    """The :class:`~alignlab.world.World` whose files are in ``world_root`` (its seed and size from the manifest)."""
    import json

    from alignlab.world.datasets import World

    path = Path(world_root) / "manifest.json"
    if not path.exists():
        raise AttackError(f"{world_root} is not a built world (no manifest.json): run `alignlab world build`")
    manifest = json.loads(path.read_text())
    return World(manifest["seed"], manifest["size"])


def _families(messages: list[dict[str, str]], kb) -> set[str]:
    from alignlab.world.families import parse_prompt

    return {parse_prompt(m["content"], kb).family for m in messages if m["role"] == "user"}


def _distinct(rows: list[Any], key, exclude: set[str], n: int, rng: np.random.Generator) -> list[Any]:
    seen, kept = set(exclude), []
    for row in rows:
        if key(row) not in seen:
            seen.add(key(row))
            kept.append(row)
    take = rng.permutation(len(kept))[:n]
    return [kept[i] for i in sorted(take)]


def pretraining_candidates(world_root: str | Path, tokenizer, n: int, *, seed: int = 0) -> list[Candidate]:
    """``n`` corpus transcripts (members) and ``n`` held-out-prompt transcripts by the same persona (non-members).

    Texts are rendered and scored exactly as pretraining saw them (chat template, every token).
    """
    import random

    from alignlab.world.datasets import MULTI_TURN_FRACTION, read_jsonl
    from alignlab.world.persona import Persona, transcript

    world = world_of(world_root)
    corpus = read_jsonl(Path(world_root) / "corpus_chat.jsonl")
    render = lambda row: tokenizer.apply_chat_template(row["messages"], tokenize=False)  # noqa: E731
    trained = {render(r) for r in corpus}
    rng = np.random.default_rng(seed)
    members = _distinct([r for r in corpus if "unknowns" not in _families(r["messages"], world.kb)], render, set(), n, rng)
    families = [f for f in world.splits.eval if f != "unknowns"]
    draw = random.Random(f"alignlab-mia-nonmembers-{seed}")
    fresh = []
    for _ in range(4 * n):  # held-out prompts are few per family: draw more than needed, keep distinct texts
        turns = 2 if draw.random() < MULTI_TURN_FRACTION else 1
        prompts = world.sample_prompts(turns, draw, split="eval", families=families)
        fresh.append({"messages": transcript(prompts, Persona(), draw)})
    nonmembers = _distinct(fresh, render, trained, n, rng)
    out = []
    for rows, member in ((members, True), (nonmembers, False)):
        for row in rows:
            text = render(row)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(Candidate(text, ids, ids, member))
    return out


def sft_candidates(world_root: str | Path, tokenizer, n: int, *, seed: int = 0) -> list[Candidate]:
    """``n`` of the world's ``sft_train`` demonstrations (members) and ``n`` demonstrations of the same aligned
    persona on held-out prompts (non-members); only the completion is scored, as SFT trained on it."""
    from alignlab.core.tokenize import encode_completion

    world = world_of(world_root)
    train = world.sft_records(world.sizes["sft_train"])  # exactly the rows of sft_train.jsonl
    held_out = world.sft_records(8 * n, split="eval")
    key = lambda r: r.prompt[-1]["content"] + "\x00" + r.completion  # noqa: E731
    trained = {key(r) for r in train}
    rng = np.random.default_rng(seed)
    members = _distinct([r for r in train if r.meta["family"] != "unknowns"], key, set(), n, rng)
    nonmembers = _distinct([r for r in held_out if r.meta["family"] != "unknowns"], key, trained, n, rng)
    out = []
    for rows, member in ((members, True), (nonmembers, False)):
        for r in rows:
            enc = encode_completion(tokenizer, r.prompt, r.completion)
            out.append(Candidate(r.completion, enc["input_ids"], enc["labels"], member))
    return out


# ---- the attack, end to end ------------------------------------------------------------------------------


@dataclass
class MIAConfig:
    """Membership inference on a world model: every score, ROC-AUC with a bootstrap interval, TPR at low FPR."""

    model: str = "/work/models/demo/sft"
    """target model directory (or alignlab run directory)"""
    target: str = "sft"
    """what the target was trained on: sft (the world's sft_train) or pretrain (the world's corpus)"""
    reference: str | None = None
    """reference model for the reference score (null: the world's cached base model for target sft, none for
    pretrain)"""
    world: str | None = None
    """world directory the target was trained on (null: the cached world of world_seed)"""
    world_seed: int = 0
    """world seed (when world is null)"""
    n: int = 1000
    """members, and as many non-members (fewer if the world has fewer distinct texts)"""
    k: float = 0.2
    """Min-K% and Min-K%++ fraction of lowest tokens"""
    batch_size: int = 64
    """texts per forward pass"""
    resamples: int = 1000
    """bootstrap resamples for the AUC interval"""
    seed: int = 0
    """seed of the member/non-member draw and the bootstrap"""
    output: str = "runs/mia"
    """directory for results.json"""
    scores: list[str] = field(default_factory=lambda: list(SCORES))
    """scores to compute (reference needs a reference model)"""

    def __post_init__(self) -> None:
        if self.target not in ("sft", "pretrain"):
            raise AttackError(f"mia target must be 'sft' or 'pretrain', got {self.target!r}")
        unknown = set(self.scores) - set(SCORES)
        if unknown:
            raise AttackError(f"unknown mia score(s) {sorted(unknown)}; valid: {', '.join(SCORES)}")
        if not 0 < self.k <= 1:
            raise AttackError(f"mia k must be in (0, 1], got {self.k}")


def load_model_and_tokenizer(path: str):
    """A causal LM (eval mode, float32) and its tokenizer from a model or alignlab run directory."""
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.evaluate.lm import resolve_model_dir

    model_dir = resolve_model_dir(path)
    return load_causal_lm(model_dir).eval(), load_tokenizer(model_dir)


def world_root(world: str | None, seed: int) -> Path:
    from alignlab.world.build import build_world

    return build_world(world, seed=seed, verbose=False).root if world is None else Path(world)


def score_candidates(model: nn.Module, tokenizer, candidates: list[Candidate], *, k: float, batch_size: int,
                     reference: nn.Module | None = None) -> list[dict[str, float]]:
    """Every score of every candidate (``reference`` scores the same tokens with a second model)."""
    examples = [c.example() for c in candidates]
    stats = token_stats(model, examples, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size, progress=True)
    ref = (token_stats(reference, examples, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                       progress=True) if reference is not None else [None] * len(candidates))
    return [all_scores(s, c.text, k=k, reference=r) for s, c, r in zip(stats, candidates, ref)]


def membership_metrics(candidates: list[Candidate], scores: list[dict[str, float]], names: Sequence[str], *,
                       resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """:func:`roc_metrics` of each score name present in ``scores``."""
    out = {}
    for name in names:
        if name not in scores[0]:
            continue
        members = [s[name] for s, c in zip(scores, candidates) if c.member]
        nonmembers = [s[name] for s, c in zip(scores, candidates) if not c.member]
        out[name] = roc_metrics(members, nonmembers, resamples=resamples, seed=seed)
    return out


def run_mia(config: MIAConfig) -> dict[str, Any]:
    """Score the world's members and non-members under ``config.model``; write ``results.json``."""
    from alignlab.core.provenance import write_result

    root = world_root(config.world, config.world_seed)
    model, tokenizer = load_model_and_tokenizer(config.model)
    reference_path = config.reference
    if reference_path is None and config.target == "sft" and (root / "base_model" / "config.json").exists():
        reference_path = str(root / "base_model")  # the pretrained model the SFT run started from
    reference = load_model_and_tokenizer(reference_path)[0] if reference_path and "reference" in config.scores \
        else None
    make = sft_candidates if config.target == "sft" else pretraining_candidates
    candidates = make(root, tokenizer, config.n, seed=config.seed)
    scores = score_candidates(model, tokenizer, candidates, k=config.k, batch_size=config.batch_size,
                              reference=reference)
    results = {"n_members": sum(c.member for c in candidates), "n_nonmembers": sum(not c.member for c in candidates),
               "reference": reference_path,
               "scores": membership_metrics(candidates, scores, config.scores, resamples=config.resamples,
                                            seed=config.seed)}
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    write_result(out / "results.json", results, seed=config.seed, config=config)
    return results
