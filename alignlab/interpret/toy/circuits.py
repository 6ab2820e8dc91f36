"""QK and OV circuits of attention-only transformers (Elhage et al. 2021, "A Mathematical Framework").

With row vectors (``x @ W``, TransformerLens's convention) a head reads and writes the residual stream through
two low-rank matrices:

- ``W_QK = W_Q W_Kᵀ`` ``[d_model, d_model]``: the attention score of query ``x_q`` on key ``x_k`` is
  ``x_q W_QK x_kᵀ / √d_head``;
- ``W_OV = W_V W_O`` ``[d_model, d_model]``: what the head writes when it attends to ``x`` is ``x W_OV``.

In token space (the direct path through embedding and unembedding):

- full QK circuit ``W_E W_QK W_Eᵀ`` ``[d_vocab (query), d_vocab (key)]``;
- full OV circuit ``W_E W_OV W_U`` ``[d_vocab (attended), d_vocab (logit)]``.

The **copying score** of a head is the eigenvalue positivity of its full OV circuit, ``Σ λᵢ / Σ |λᵢ|`` (real
part of the sum): near 1 when attending to a token raises that token's own logit (a copying head). The
non-zero eigenvalues of ``W_E W_V W_O W_U`` equal those of ``W_V W_O W_U W_E`` ``[d_head, d_head]`` (``AB`` and
``BA`` share them), so the small matrix is the one decomposed.

**Composition scores** between a head ``h₁`` of an earlier layer and ``h₂`` of a later one measure how much
``h₂`` reads what ``h₁`` writes, ``‖A B‖_F / (‖A‖_F ‖B‖_F)`` (0 when ``h₁`` writes into a subspace ``h₂``
does not read, at most 1):

- Q-composition ``A = W_OV^{h₁}, B = W_QK^{h₂}`` (h₁'s output feeds h₂'s queries);
- K-composition ``A = W_OV^{h₁}, B = (W_QK^{h₂})ᵀ`` (h₁'s output feeds h₂'s keys);
- V-composition ``A = W_OV^{h₁}, B = W_OV^{h₂}`` (h₁'s output feeds h₂'s values).

These scores are not 0 for unrelated heads: two random matrices of these shapes already score about
``1/√d_model`` (for ``A = L₁R₁``, ``B = L₂R₂`` with Gaussian factors ``[d_model, d_head]``, ``[d_head, d_model]``:
``E‖AB‖²_F = d³r²`` and ``E‖A‖²_F = E‖B‖²_F = d²r``, so the ratio is ``1/d`` whatever the rank ``r``).
Elhage et al. therefore read composition against the **random baseline**: the mean score of random matrices
of the heads' factor shapes (the score is scale-free, so the factors' norms do not change it). The scores are
reported both raw and as the excess over that baseline (:func:`random_composition_baseline`).

The induction circuit is a previous-token head in layer 0 whose output the induction head of layer 1 reads
through its keys: "the key is the token *after* an earlier copy of my token" — K-composition.

Example::

    >>> import torch
    >>> A, B = torch.zeros(4, 4), torch.zeros(4, 4)
    >>> A[0, 0], B[1, 1] = 1.0, 1.0        # A writes dimension 0, B reads only dimension 1
    >>> composition_score(A, B)
    0.0
"""

from __future__ import annotations

from typing import Any

import torch

from alignlab.interpret.toy.attention_only import AttentionOnly


def w_qk(model: AttentionOnly, layer: int) -> torch.Tensor:
    """``W_Q W_Kᵀ`` of every head of ``layer``: ``[n_heads, d_model, d_model]``."""
    attn = model.attn[layer]
    return attn.W_Q @ attn.W_K.transpose(-1, -2)


def w_ov(model: AttentionOnly, layer: int) -> torch.Tensor:
    """``W_V W_O`` of every head of ``layer``: ``[n_heads, d_model, d_model]``."""
    attn = model.attn[layer]
    return attn.W_V @ attn.W_O


@torch.no_grad()
def full_qk(model: AttentionOnly, layer: int) -> torch.Tensor:
    """Token-space QK circuits ``W_E W_QK W_Eᵀ``: ``[n_heads, d_vocab (query), d_vocab (key)]``."""
    return model.W_E @ w_qk(model, layer) @ model.W_E.T


@torch.no_grad()
def full_ov(model: AttentionOnly, layer: int) -> torch.Tensor:
    """Token-space OV circuits ``W_E W_OV W_U``: ``[n_heads, d_vocab (attended), d_vocab (logit)]``."""
    return model.W_E @ w_ov(model, layer) @ model.W_U


@torch.no_grad()
def copying_score(model: AttentionOnly, layer: int) -> torch.Tensor:
    """Eigenvalue positivity ``Re(Σλ) / Σ|λ|`` of each head's full OV circuit: ``[n_heads]`` in [-1, 1]."""
    attn = model.attn[layer]
    small = attn.W_O @ model.W_U @ model.W_E @ attn.W_V  # [n_heads, d_head, d_head]: the non-zero eigenvalues
    eig = torch.linalg.eigvals(small.double())
    return (eig.sum(-1).real / eig.abs().sum(-1)).float()


def composition_score(A: torch.Tensor, B: torch.Tensor) -> float:
    """Elhage et al.'s composition score ``‖A B‖_F / (‖A‖_F ‖B‖_F)`` of one writer ``A`` and one reader ``B``."""
    return float(torch.linalg.matrix_norm(A @ B) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B)))


@torch.no_grad()
def random_composition_baseline(d_model: int, d_head: int, draws: int = 200, seed: int = 0) -> float:
    """Elhage et al.'s baseline: the mean composition score of ``draws`` pairs of random low-rank matrices
    ``A = L₁R₁``, ``B = L₂R₂`` with standard Gaussian factors of the heads' shapes (``L: [d_model, d_head]``,
    ``R: [d_head, d_model]``, the shape of every ``W_OV`` and ``W_QK``); about ``1/√d_model`` (module docstring).

    Example::

        >>> baseline = random_composition_baseline(64, 16)       # d_model 64, d_head 16
        >>> abs(baseline * 64 ** 0.5 - 1) < 0.05                  # about 1 / sqrt(d_model)
        True
    """
    generator = torch.Generator().manual_seed(seed)

    def low_rank() -> torch.Tensor:  # [draws, d_model, d_model] of rank d_head
        left = torch.randn(draws, d_model, d_head, generator=generator, dtype=torch.float64)
        return left @ torch.randn(draws, d_head, d_model, generator=generator, dtype=torch.float64)

    A, B = low_rank(), low_rank()
    scores = torch.linalg.matrix_norm(A @ B) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B))
    return float(scores.mean())


@torch.no_grad()
def composition_scores(model: AttentionOnly, early: int = 0, late: int = 1) -> dict[str, list[list[float]]]:
    """Q-, K- and V-composition of every head of layer ``early`` (rows) into every head of ``late`` (columns)."""
    ov, qk, ov_late = w_ov(model, early), w_qk(model, late), w_ov(model, late)
    readers = {"q": qk, "k": qk.transpose(-1, -2), "v": ov_late}
    return {kind: [[composition_score(ov[h1], reader[h2]) for h2 in range(reader.shape[0])]
                   for h1 in range(ov.shape[0])] for kind, reader in readers.items()}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's correlation of two equal-length lists (None when either is constant)."""
    x, y = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = float(x.norm() * y.norm())
    return float(x @ y) / denominator if denominator > 0 else None


def composition_correlation(previous_token: list[list[float]], induction: list[list[float]],
                            scores: dict[str, list[list[float]]], threshold: float) -> tuple[list[int], dict]:
    """The layer-1 heads whose induction score reaches ``threshold`` (else the best one), and for Q, K and V the
    correlation across layer-0 heads between their previous-token score and their mean composition into those
    heads (``scores`` as from :func:`composition_scores`)."""
    readers = [h for h, score in enumerate(induction[1]) if score >= threshold] or [max(
        range(len(induction[1])), key=lambda h: induction[1][h])]
    return readers, {kind: pearson(previous_token[0], [sum(row[h] for h in readers) / len(readers)
                                                       for row in scores[kind]]) for kind in "qkv"}


def induction_circuit(model: AttentionOnly, previous_token: list[list[float]], induction: list[list[float]],
                      threshold: float = 0.3) -> dict[str, Any]:
    """Identify the previous-token head (layer 0, highest previous-token score) → induction head (layer 1,
    highest induction score) pair, with its Q/K/V-composition, whether K-composition is the strongest link
    from that previous-token head into the induction head and the induction head's strongest K-composition.

    When the work is shared (several layer-0 heads attend to the previous token, several layer-1 heads are
    induction heads), one pair says little, so also: across layer-0 heads, the correlation between the
    previous-token score and the mean Q-, K- and V-composition into the layer-1 heads scoring at least
    ``threshold`` (the mechanism predicts a positive correlation for K only)."""
    prev = max(range(len(previous_token[0])), key=lambda h: previous_token[0][h])
    ind = max(range(len(induction[1])), key=lambda h: induction[1][h])
    scores = composition_scores(model, 0, 1)
    baseline = random_composition_baseline(model.cfg.d_model, model.cfg.d_head)
    k_col = [row[ind] for row in scores["k"]]
    readers, correlation = composition_correlation(previous_token, induction, scores, threshold)
    return {"previous_token_head": [0, prev], "induction_head": [1, ind],
            "previous_token_score": previous_token[0][prev], "induction_score": induction[1][ind],
            "q_composition": scores["q"][prev][ind], "k_composition": scores["k"][prev][ind],
            "v_composition": scores["v"][prev][ind],
            "composition_baseline": baseline,
            **{f"{kind}_composition_above_baseline": scores[kind][prev][ind] - baseline for kind in "qkv"},
            "k_composition_other_heads": [k for h, k in enumerate(k_col) if h != prev],
            "k_is_strongest_link": scores["k"][prev][ind] >= max(scores["q"][prev][ind], scores["v"][prev][ind]),
            "previous_token_head_is_top_k_writer": max(k_col) == k_col[prev],
            "copying_score_induction_head": float(copying_score(model, 1)[ind]),
            "induction_heads": readers,
            "previous_token_vs_composition_correlation": correlation,
            "scores": scores}
