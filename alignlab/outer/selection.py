"""Small-data SFT: choose which few demonstrations to train on (LIMA-style curation, automatic selection).

LIMA (Zhou et al. 2023) argues that a model learns an assistant's style from a few diverse examples. The
selection studies that followed embed every candidate example, cluster the embeddings (k-means) and then pick
examples that cover the space: KCenterGreedy (Sener & Savarese 2018, "core-set" selection) repeatedly takes the
example farthest from everything chosen so far,

    s_{t+1} = argmax_i min_{j ∈ S_t} ‖e_i − e_j‖₂

which is a 2-approximation of the k-center problem (minimise the largest distance from any example to its
nearest chosen one). ``kmeans`` takes, per cluster, the example nearest its centroid; ``kmeans_kcenter`` (the
reading notes' recipe) runs KCenterGreedy inside each k-means cluster, with each cluster's share of the budget
proportional to its size; ``random`` is the baseline every selector must beat.

Embeddings are the mean of the model's last hidden states over an example's tokens (prompt and answer), from any
causal LM: by default the model that will be fine-tuned.

Example::

    >>> import torch
    >>> points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [0.0, 9.0]])
    >>> kcenter_greedy(points, 3, first=0)
    [0, 4, 3]
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch

from alignlab.core.records import ConversationRecord
from alignlab.errors import DataError

SELECTORS = ("random", "kcenter", "kmeans", "kmeans_kcenter")


def kcenter_greedy(embeddings: torch.Tensor, k: int, *, first: int = 0,
                   chosen: list[int] | None = None) -> list[int]:
    """Indices of ``k`` rows chosen farthest-first (the first is ``first``, or continue from ``chosen``)."""
    n = embeddings.shape[0]
    if not 0 < k <= n:
        raise DataError(f"cannot choose {k} of {n} examples")
    picked = list(chosen) if chosen else [first]
    # distance of every row to its nearest picked row, updated with one row of distances per pick; a picked row
    # is never picked again (duplicate examples sit at distance 0 from each other: the next unpicked one is taken)
    nearest = torch.cdist(embeddings, embeddings[picked]).min(dim=1).values
    nearest[picked] = -1.0
    while len(picked) < k:
        i = int(torch.argmax(nearest))
        picked.append(i)
        nearest = torch.minimum(nearest, torch.cdist(embeddings, embeddings[i : i + 1]).squeeze(1))
        nearest[picked] = -1.0
    return picked[:k]


def kmeans_labels(embeddings: torch.Tensor, clusters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cluster of each row, centroids) by k-means (scikit-learn's, k-means++ start)."""
    from sklearn.cluster import KMeans

    fit = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(embeddings.double().numpy())
    return torch.from_numpy(fit.labels_).long(), torch.from_numpy(fit.cluster_centers_).to(embeddings.dtype)


def select_indices(embeddings: torch.Tensor, k: int, selector: str, *, seed: int = 0,
                   clusters: int | None = None) -> list[int]:
    """``k`` example indices by ``selector`` (one of :data:`SELECTORS`); deterministic given ``seed``.

    Example::

        >>> emb = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
        >>> sorted(select_indices(emb, 5, "random", seed=1)) == sorted(select_indices(emb, 5, "random", seed=1))
        True
    """
    n = embeddings.shape[0]
    if selector not in SELECTORS:
        raise DataError(f"unknown selector {selector!r}; choose one of {', '.join(SELECTORS)}")
    if not 0 < k <= n:
        raise DataError(f"cannot choose {k} of {n} examples")
    rng = random.Random(seed)
    if selector == "random":
        return rng.sample(range(n), k)
    if selector == "kcenter":
        return kcenter_greedy(embeddings, k, first=rng.randrange(n))
    if selector == "kmeans" and clusters not in (None, k):
        raise DataError(f"selector kmeans takes the example nearest each of k clusters, so clusters must equal the "
                        f"budget ({k}), got {clusters}; use kmeans_kcenter for fewer clusters")
    labels, centroids = kmeans_labels(embeddings, min(clusters or k, n), seed)
    if selector == "kmeans":  # the example nearest each centroid (k clusters → k examples)
        picked: list[int] = []
        for c in range(centroids.shape[0]):
            # its own unpicked member nearest the centroid; with duplicate data a cluster may have none left, then
            # the nearest unpicked example anywhere
            distance = torch.cdist(centroids[c : c + 1], embeddings).squeeze(0) + 1e9 * (labels != c)
            distance[picked] = float("inf")
            picked.append(int(distance.argmin()))
        return picked
    # kmeans_kcenter: each cluster gets a share of k proportional to its size (largest remainders), filled
    # farthest-first from the example nearest its centroid
    members = [torch.nonzero(labels == c).squeeze(1) for c in range(centroids.shape[0])]
    exact = [k * len(m) / n for m in members]
    quota = [int(q) for q in exact]
    for c in sorted(range(len(members)), key=lambda c: exact[c] - quota[c], reverse=True)[: k - sum(quota)]:
        quota[c] += 1
    picked = []
    for c, rows in enumerate(members):
        if quota[c] == 0:
            continue
        local = embeddings[rows]
        start = int(torch.cdist(centroids[c : c + 1], local).argmin())
        picked += [int(rows[i]) for i in kcenter_greedy(local, min(quota[c], len(rows)), first=start)]
    return picked


@torch.no_grad()
def embed_records(model, tokenizer, records: list[ConversationRecord], *, batch_size: int = 32,
                  max_length: int = 256) -> torch.Tensor:
    """Mean of the last hidden states over each example's tokens (its chat-rendered prompt and answer) → [n, d]."""
    from alignlab.core.tokenize import encode_completion

    model.eval()
    out = []
    for lo in range(0, len(records), batch_size):
        rows = [encode_completion(tokenizer, r.prompt, r.completion, max_length=max_length)["input_ids"]
                for r in records[lo : lo + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
        out.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    return torch.cat(out)


@dataclass
class SelectConfig:
    """Choose a subset of SFT demonstrations and write it as JSONL in TRL's conversational prompt/completion
    format (any input format alignlab reads: HH-RLHF transcripts, messages, prompt/completion, Parquet ...)."""

    data: str = ""
    """demonstrations to choose from (any conversation format alignlab reads)"""
    output: str = "selected.jsonl"
    """where the chosen rows go (JSONL, one conversation per line); an existing file is never overwritten"""
    model: str = ""
    """causal LM whose hidden states embed the examples (usually the model you will fine-tune)"""
    selector: Literal["random", "kcenter", "kmeans", "kmeans_kcenter"] = "kmeans_kcenter"
    """how to choose: random, KCenterGreedy, nearest-to-centroid k-means, or KCenterGreedy within k-means clusters"""
    fraction: float = 0.05
    """share of the examples to keep (ignored when count > 0)"""
    count: int = 0
    """number of examples to keep (0: use fraction)"""
    clusters: int = 0
    """k-means clusters of kmeans_kcenter (0: √count); kmeans always uses one cluster per chosen example"""
    seed: int = 0
    """random seed (random selection, the first KCenterGreedy pick, k-means initialisation)"""
    max_length: int = 256
    """tokens per example when embedding"""
    batch_size: int = 32
    """examples per forward when embedding"""

    def budget(self, n: int) -> int:
        k = self.count if self.count > 0 else max(1, round(self.fraction * n))
        if not 0 < k <= n:
            raise DataError(f"asked for {k} of {n} examples", source=self.data, field="count/fraction")
        return k


def select_records(config: SelectConfig, records: list[ConversationRecord], embeddings: torch.Tensor | None = None,
                   *, model=None, tokenizer=None) -> list[int]:
    """Indices of the chosen records (embedding them with ``model`` unless ``embeddings`` or ``random``)."""
    k = config.budget(len(records))
    if config.selector == "random":
        return select_indices(torch.zeros(len(records), 1), k, "random", seed=config.seed)
    if embeddings is None:
        from alignlab.core.models import load_causal_lm, load_tokenizer

        tokenizer = tokenizer or load_tokenizer(config.model)
        model = model or load_causal_lm(config.model)
        embeddings = embed_records(model, tokenizer, records, batch_size=config.batch_size,
                                   max_length=config.max_length)
    clusters = k if config.selector == "kmeans" else config.clusters or max(1, round(k ** 0.5))
    return select_indices(embeddings, k, config.selector, seed=config.seed, clusters=clusters)


def select_data(config: SelectConfig) -> list[int]:
    """Read ``config.data``, choose, write the chosen rows to ``config.output``; returns their indices.

    Example::

        >>> select_data(SelectConfig(data="sft.jsonl", model="runs/base", fraction=0.05))   # doctest: +SKIP
    """
    import json
    from pathlib import Path

    from alignlab.core.io import atomic_write_text
    from alignlab.core.readers import read_records

    if not config.data:
        raise DataError("no data to choose from (use --data PATH)", field="data")
    if config.selector != "random" and not config.model:
        raise DataError(f"selector {config.selector} embeds the examples with a model: give --model", field="model")
    out = Path(config.output)
    if out.exists():
        raise DataError(f"{out} exists; alignlab never overwrites a file it did not write this run", field="output")
    records = read_records(config.data, "conversation")
    chosen = select_records(config, records)
    rows = [{"prompt": records[i].prompt, "completion": [{"role": "assistant", "content": records[i].completion}]}
            for i in sorted(chosen)]
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    return chosen
