"""Attention-head scores: how much of each head's attention goes where a previous-token, duplicate-token or
induction head would attend (Olsson et al. 2022, "In-context learning and induction heads").

A *detection pattern* ``D[q, k]`` (1 where the head type attends, 0 elsewhere) is compared with each head's
attention pattern ``A[q, k]``, with TransformerLens's ``detect_head`` measures:

- ``"mul"``: ``Σ A·D / Σ A``, the fraction of the head's attention on the expected keys. Rows without any
  target (the first repeat of a sequence) still count in the denominator, so a perfect induction head on
  ``[BOS, r, r]`` scores only about one half; ``exclude_bos=True`` (zero the attention to position 0 before
  scoring) makes a head that parks its spare attention on BOS score 1.
- ``"abs"``: ``1 - n · mean|A - D|`` over the ``n × n`` matrix (TransformerLens rounds it to 3 decimals;
  here it is not rounded).

Scores of a batch are the mean over its rows (TransformerLens's list-of-prompts form). Inputs are unpadded
token ids: padding would shift positions and is refused by the same-length requirement of a tensor.

Example:
    >>> induction_pattern(torch.tensor([1, 7, 8, 7, 8])).tolist()[3:]
    [[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alignlab.errors import InterpretError
from alignlab.interpret.hooks import run_with_cache

HEAD_KINDS = ("previous_token", "duplicate_token", "induction")


def previous_token_pattern(tokens: Tensor) -> Tensor:
    """``[p, p]``: position q attends to q - 1."""
    n = tokens.shape[-1]
    return torch.diag(torch.ones(n - 1), -1)


def duplicate_token_pattern(tokens: Tensor) -> Tensor:
    """``[p, p]``: position q attends to earlier positions holding the same token."""
    same = (tokens.unsqueeze(-1) == tokens.unsqueeze(-2)).float()
    return torch.tril(same, -1)


def induction_pattern(tokens: Tensor) -> Tensor:
    """``[p, p]``: position q attends to the token *after* an earlier occurrence of its own token (k - 1 is a
    duplicate of q), the pattern that lets a head copy what followed last time."""
    duplicates = duplicate_token_pattern(tokens)
    shifted = torch.zeros_like(duplicates)
    shifted[:, 1:] = duplicates[:, :-1]
    return torch.tril(shifted)


PATTERNS = {"previous_token": previous_token_pattern, "duplicate_token": duplicate_token_pattern,
            "induction": induction_pattern}


def score_patterns(patterns: Tensor, detection: Tensor, *, exclude_bos: bool = False,
                   exclude_current_token: bool = False, error_measure: str = "mul") -> Tensor:
    """Scores of attention patterns ``[..., q, k]`` against a detection pattern ``[q, k]`` (broadcast);
    returns ``[...]``. Never modifies ``patterns``."""
    n = patterns.shape[-1]
    keep = torch.ones(n, n, dtype=torch.bool, device=patterns.device)
    if exclude_bos:
        keep[:, 0] = False
    if exclude_current_token:
        keep.fill_diagonal_(False)
    if error_measure == "mul":
        attention = patterns * keep
        return (attention * detection).sum((-2, -1)) / attention.sum((-2, -1))
    if error_measure == "abs":
        difference = (patterns - detection).abs() * keep
        return 1 - difference.mean((-2, -1)) * n
    raise InterpretError(f"error_measure must be 'mul' or 'abs', got '{error_measure}'")


def head_scores(model: nn.Module, input_ids: Tensor, kind: str | Tensor, *, exclude_bos: bool = False,
                exclude_current_token: bool = False, error_measure: str = "mul") -> Tensor:
    """``[layers, heads]`` score of every head for ``kind`` (one of :data:`HEAD_KINDS`, or a detection
    pattern ``[p, p]``) on ``input_ids`` ``[b, p]`` (or ``[p]``), averaged over the batch."""
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    if isinstance(kind, str) and kind not in PATTERNS:
        raise InterpretError(f"unknown head kind '{kind}'; use one of {', '.join(HEAD_KINDS)} or a pattern tensor")
    _, cache = run_with_cache(model, ids, names=lambda name: name.endswith("attn.hook_pattern"))
    patterns = cache.stack("attn.hook_pattern").float()  # [layers, b, heads, q, k]
    if isinstance(kind, str):  # one detection pattern per row: [b, 1, q, k] against [layers, b, heads, q, k]
        detection = torch.stack([PATTERNS[kind](row) for row in ids.cpu()]).unsqueeze(1)
    else:
        detection = kind.float()
    scores = score_patterns(patterns, detection.to(patterns.device), exclude_bos=exclude_bos,
                            exclude_current_token=exclude_current_token, error_measure=error_measure)
    return scores.mean(1)  # [layers, heads]


def repeated_tokens(batch: int, length: int, vocab_size: int, *, bos: int | None = None, seed: int = 0,
                    low: int = 0) -> Tensor:
    """``[batch, 2·length (+1)]`` random tokens repeated once (``[BOS] r r``), the standard induction probe:
    on the second copy an induction head attends to the token after the current token's first occurrence."""
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(low, vocab_size, (batch, length), generator=generator)
    ids = torch.cat([half, half], dim=1)
    return ids if bos is None else torch.cat([torch.full((batch, 1), bos), ids], dim=1)
