"""Gradient inversion: recover a training batch from one step's gradient (DLG and TAG).

The attacker sees ``g = ∇_θ L(θ; x)`` for a batch ``x`` of ``B`` token sequences (as in federated learning)
and knows the model. It optimises dummy inputs so that their gradient matches:

    DLG (Zhu et al. 2019):     min_{e', y'}  Σ_layers ||∇_θ L(θ; e', y') − g||²
    TAG (Deng et al. 2021):    min_{e', y'}  Σ_layers ||∇_θ L(θ; e', y') − g||² + α ||∇_θ L(θ; e', y') − g||₁

where ``e'`` are dummy input embeddings ``[B, T, d]`` (text is discrete, so the search runs in embedding space,
as TAG and LAMP do) and ``y'`` dummy next-token label logits ``[B, T, V]`` (soft labels, ``softmax(y')``, as
DLG does for its labels). The input-embedding matrix's own gradient is left out of the match: dummy inputs that
are embeddings never reach it. Each dummy position is then read as the token whose embedding is nearest
(cosine). Adam replaces the papers' L-BFGS (more stable on these tiny models).

Scored against the true batch: the **token recovery rate** (bag of tokens: the share of true tokens recovered,
counted with multiplicity) and **ROUGE-1 / ROUGE-2** F1 of each recovered sequence against the true sequence it
is matched to (the batch's order is unknown to the attacker, so recovered and true sequences are paired by the
assignment that maximises ROUGE-1).

Example::

    >>> rouge_n([1, 2, 3, 4], [1, 2, 4, 3], 1), round(rouge_n([1, 2, 3, 4], [1, 2, 4, 3], 2), 3)
    (1.0, 0.333)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignlab.errors import AttackError

METHODS = ("dlg", "tag")


# ---- scoring: pure functions of token id lists ----------------------------------------------------------


def _ngrams(tokens: Sequence[int], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(reference: Sequence[int], candidate: Sequence[int], n: int) -> float:
    """ROUGE-N F1: n-gram overlap (with multiplicity) of ``candidate`` with ``reference``."""
    ref, cand = _ngrams(reference, n), _ngrams(candidate, n)
    overlap = sum((ref & cand).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(cand.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def token_recovery(true_batch: Sequence[Sequence[int]], recovered_batch: Sequence[Sequence[int]]) -> float:
    """Share of the batch's true tokens (a multiset over the batch) present in the recovered batch."""
    true, got = Counter(t for seq in true_batch for t in seq), Counter(t for seq in recovered_batch for t in seq)
    return sum((true & got).values()) / sum(true.values())


def matched_rouge(true_batch: Sequence[Sequence[int]], recovered_batch: Sequence[Sequence[int]]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-2 F1 after pairing recovered with true sequences to maximise ROUGE-1."""
    from scipy.optimize import linear_sum_assignment

    r1 = np.array([[rouge_n(t, r, 1) for r in recovered_batch] for t in true_batch])
    rows, cols = linear_sum_assignment(-r1)
    return {"rouge1": float(r1[rows, cols].mean()),
            "rouge2": float(np.mean([rouge_n(true_batch[i], recovered_batch[j], 2) for i, j in zip(rows, cols)]))}


# ---- the attack ------------------------------------------------------------------------------------------


def matched_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable parameter except the input embeddings (dummy embeddings never reach those)."""
    embedding = model.get_input_embeddings().weight
    return [p for p in model.parameters() if p.requires_grad and p is not embedding]


def observed_gradient(model: nn.Module, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """What the attacker sees: the gradient of one step's mean next-token loss on the batch ``input_ids``."""
    loss = model(input_ids=input_ids, labels=input_ids).loss
    return [g.detach() for g in torch.autograd.grad(loss, matched_parameters(model))]


def gradient_distance(dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor], method: str,
                      tag_alpha: float = 0.01) -> torch.Tensor:
    """DLG's squared L2 distance, or TAG's L2 + α·L1, summed over parameter tensors."""
    l2 = sum(((d - t) ** 2).sum() for d, t in zip(dummy, target))
    if method == "dlg":
        return l2
    return l2 + tag_alpha * sum((d - t).abs().sum() for d, t in zip(dummy, target))


def soft_label_loss(model: nn.Module, embeds: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of dummy embeddings [B, T, d] against soft labels softmax(label_logits)
    [B, T, V] (position t's label is the token at t+1, as in the true loss)."""
    logits = model(inputs_embeds=embeds).logits[:, :-1]  # [B, T-1, V]
    targets = label_logits[:, 1:].softmax(-1)
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def invert(model: nn.Module, target_grads: list[torch.Tensor], batch_size: int, length: int, *, method: str = "tag",
           steps: int = 150, lr: float = 0.1, tag_alpha: float = 0.01, seed: int = 0) -> list[list[int]]:
    """Recover ``batch_size`` sequences of ``length`` tokens from ``target_grads`` (see the module docstring)."""
    if method not in METHODS:
        raise AttackError(f"unknown gradient inversion method {method!r}; valid: {', '.join(METHODS)}")
    model.set_attn_implementation("eager")  # the attack differentiates a gradient: CPU SDPA has no double backward
    embedding = model.get_input_embeddings().weight.detach()  # [V, d]
    gen = torch.Generator().manual_seed(seed)
    embeds = (torch.randn(batch_size, length, embedding.shape[1], generator=gen) * embedding.std()).requires_grad_()
    label_logits = torch.randn(batch_size, length, embedding.shape[0], generator=gen).requires_grad_()
    optimizer = torch.optim.Adam([embeds, label_logits], lr=lr)
    params = matched_parameters(model)
    for _ in range(steps):
        optimizer.zero_grad()
        dummy = torch.autograd.grad(soft_label_loss(model, embeds, label_logits), params, create_graph=True)
        gradient_distance(dummy, target_grads, method, tag_alpha).backward()
        optimizer.step()
    # nearest token by cosine similarity, position by position
    similarity = torch.nn.functional.normalize(embeds.detach(), dim=-1) @ torch.nn.functional.normalize(embedding,
                                                                                                         dim=-1).T
    return similarity.argmax(-1).tolist()


@dataclass
class InversionConfig:
    """DLG and TAG on one training step's gradient of a world model: recovery versus batch size."""

    model: str | None = None
    """victim model (null: the world's base model)"""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """dlg and/or tag"""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4])
    """batch sizes of the step attacked"""
    length: int = 10
    """tokens per sequence (world SFT texts cut to this length)"""
    steps: int = 150
    """optimisation steps of the attack"""
    lr: float = 0.1
    """Adam learning rate of the dummy inputs"""
    tag_alpha: float = 0.01
    """TAG's L1 weight"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds: which training texts form the batch, and the dummy initialisation"""
    world_seed: int = 0
    """world seed"""
    output: str = "runs/invert"
    """directory for results.json"""

    def __post_init__(self) -> None:
        bad = set(self.methods) - set(METHODS)
        if bad:
            raise AttackError(f"unknown gradient inversion method(s) {sorted(bad)}; valid: {', '.join(METHODS)}")


def run_inversion(config: InversionConfig) -> dict[str, Any]:
    """Attack a step on batches of world SFT texts for each (method, batch size, seed); writes ``results.json``."""
    from tqdm.auto import tqdm

    from alignlab.attacks.privacy.mia import load_model_and_tokenizer
    from alignlab.core.provenance import write_result
    from alignlab.world.base_model import build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World

    paths = build_world(None, seed=config.world_seed, verbose=False)
    model_path = config.model or str(build_base_model(paths, verbose=False))
    model, tokenizer = load_model_and_tokenizer(model_path)
    for p in model.parameters():
        p.requires_grad_(True)
    records = World(config.world_seed, paths.size).sft_records(500)
    texts = [tokenizer.apply_chat_template([*r.prompt, {"role": "assistant", "content": r.completion}],
                                           tokenize=False) for r in records]
    encoded = [ids for ids in (tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts)
               if len(ids) >= config.length]
    runs = []
    plan = [(m, b, s) for m in config.methods for b in config.batch_sizes for s in config.seeds]
    for method, batch_size, seed in tqdm(plan, desc="inversion"):
        rng = np.random.default_rng(seed)
        batch = [encoded[i][:config.length] for i in rng.choice(len(encoded), batch_size, replace=False)]
        target = observed_gradient(model, torch.tensor(batch))
        recovered = invert(model, target, batch_size, config.length, method=method, steps=config.steps,
                           lr=config.lr, tag_alpha=config.tag_alpha, seed=seed)
        runs.append({"method": method, "batch_size": batch_size, "seed": seed,
                     "token_recovery": token_recovery(batch, recovered), **matched_rouge(batch, recovered),
                     "example_true": tokenizer.decode(batch[0]), "example_recovered": tokenizer.decode(recovered[0])})
    results = {"model": model_path, "runs": runs}
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    write_result(out / "results.json", results, seed=config.seeds[0], config=config)
    return results
