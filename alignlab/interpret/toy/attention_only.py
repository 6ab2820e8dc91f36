"""Attention-only transformers and the induction-head phase change (Olsson et al. 2022, Elhage et al. 2021).

The model is the one of "A Mathematical Framework for Transformer Circuits": token and position embeddings,
``n_layers`` blocks of ``n_heads`` attention heads (optionally an MLP) adding into the residual stream, an
unembedding. No LayerNorm and no biases, so every circuit is a product of weight matrices (``circuits.py``).
Weights use TransformerLens's shapes: ``W_Q, W_K, W_V: [n_heads, d_model, d_head]``, ``W_O: [n_heads, d_head,
d_model]``, row vectors (``x @ W``).

By default it trains on periodic sequences of random tokens (a random segment repeated; the period varies between
sequences), the cleanest data on which induction heads form: once the segment repeats, the only way to predict
the next token is to find the previous occurrence of the current token and copy what followed it. Because the
period varies, no head can find that token by position alone (with a fixed period a one-layer model learns a
positional "attend ``period - 1`` back" head that imitates an induction head). The measurements, per evaluation
step:

- **in-context-learning score** (Olsson et al., §"in-context learning score"): the loss at a late position
  minus the loss at an early one, averaged over a batch; it drops below zero when the model uses its context;
- **induction score** of each head: its mean attention from each repeated token to the token after that
  token's previous occurrence (1 for a perfect induction head);
- **previous-token score**: its mean attention to the preceding position.

With ``data="world"`` it trains instead on windows of the toy world's pretraining corpus (its tokenizer's
vocabulary), as Olsson et al. trained on natural text: loss and ICL score are then measured on held-out corpus
windows (late = last token, early = token ``n_ctx // 8``), while the head scores are still measured on repeated
random tokens, where an induction head is unambiguous.

The *formation step* is the first evaluation step at which some head's induction score reaches
``formation_threshold``: the phase change, visible at the same step as a drop in loss and ICL score.

Example::

    >>> model = AttentionOnly(AttnOnlyConfig(n_layers=2, d_model=32, n_heads=2, d_head=8, d_vocab=16, n_ctx=16))
    >>> tokens, periods = repeated_tokens(4, 16, 16, torch.Generator().manual_seed(0))
    >>> logits, patterns = model(tokens, return_patterns=True)
    >>> logits.shape, patterns[0].shape
    (torch.Size([4, 16, 16]), torch.Size([4, 2, 16, 16]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.errors import InterpretError


@dataclass
class AttnOnlyConfig:
    """Shape of an attention-only transformer."""

    n_layers: int = 2
    """attention blocks (1 cannot form an induction head; 2 can)"""
    n_heads: int = 4
    """heads per block"""
    d_model: int = 64
    """residual stream width"""
    d_head: int = 16
    """width of each head's query, key and value"""
    d_vocab: int = 64
    """vocabulary size"""
    n_ctx: int = 32
    """context length (a random segment of n_ctx / 4 to n_ctx / 2 tokens, repeated to fill it)"""
    d_mlp: int = 0
    """MLP width in each block; 0 = attention only"""

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model", "d_head", "d_vocab", "n_ctx"):
            if getattr(self, name) < 1:
                raise InterpretError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_ctx < 8:
            raise InterpretError(f"n_ctx must be >= 8 (a segment of n_ctx / 4 or more, repeated), got {self.n_ctx}")


class Attention(nn.Module):
    """Causal multi-head attention as a sum of independent heads (Elhage et al. §"attention heads")."""

    def __init__(self, cfg: AttnOnlyConfig):
        super().__init__()
        shape_in, std = (cfg.n_heads, cfg.d_model, cfg.d_head), 1 / math.sqrt(cfg.d_model)
        self.W_Q = nn.Parameter(torch.randn(shape_in) * std)
        self.W_K = nn.Parameter(torch.randn(shape_in) * std)
        self.W_V = nn.Parameter(torch.randn(shape_in) * std)
        self.W_O = nn.Parameter(torch.randn(cfg.n_heads, cfg.d_head, cfg.d_model) / math.sqrt(cfg.d_head))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: [batch, pos, d_model]
        q = torch.einsum("bpd,hde->bhpe", x, self.W_Q)
        k = torch.einsum("bpd,hde->bhpe", x, self.W_K)
        v = torch.einsum("bpd,hde->bhpe", x, self.W_V)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [batch, head, query, key]
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = pattern @ v  # [batch, head, pos, d_head]
        return torch.einsum("bhpe,hed->bpd", z, self.W_O), pattern


class AttentionOnly(nn.Module):
    """Embed → (attention [+ MLP]) × n_layers, each adding into the residual stream → unembed."""

    def __init__(self, cfg: AttnOnlyConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model) / math.sqrt(cfg.d_model))
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model) / math.sqrt(cfg.d_model))
        self.attn = nn.ModuleList(Attention(cfg) for _ in range(cfg.n_layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), nn.GELU(), nn.Linear(cfg.d_mlp, cfg.d_model))
            for _ in range(cfg.n_layers if cfg.d_mlp else 0))
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.d_vocab) / math.sqrt(cfg.d_model))

    def forward(self, tokens: torch.Tensor, *, return_patterns: bool = False) -> Any:
        """Logits ``[batch, pos, d_vocab]``; with ``return_patterns`` also each layer's ``[batch, head, q, k]``."""
        resid = self.W_E[tokens] + self.W_pos[: tokens.shape[1]]
        patterns = []
        for layer, attn in enumerate(self.attn):
            out, pattern = attn(resid)
            resid = resid + out
            if self.cfg.d_mlp:
                resid = resid + self.mlp[layer](resid)
            patterns.append(pattern)
        logits = resid @ self.W_U
        return (logits, patterns) if return_patterns else logits


def repeated_tokens(batch: int, n_ctx: int, d_vocab: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``[batch, n_ctx]`` periodic sequences: a segment of uniform random tokens, of a length (the period) drawn
    per sequence from ``[n_ctx // 4, n_ctx // 2]``, repeated to fill the context. Returns tokens and ``[batch]``
    periods."""
    periods = torch.randint(n_ctx // 4, n_ctx // 2 + 1, (batch,), generator=generator)
    segments = torch.randint(0, d_vocab, (batch, n_ctx), generator=generator)
    positions = torch.arange(n_ctx) % periods[:, None]  # [batch, n_ctx]: where in its segment each token is
    return segments.gather(1, positions), periods


# ---- scores (pure functions of attention patterns and per-token losses) ------------------------------------

def induction_score(pattern: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """Per-head induction score of ``pattern [batch, head, q, k]`` on sequences that repeat with ``periods [batch]``.

    Query ``q ≥ period`` holds the same token as ``q - period``; an induction head attends to the token that
    followed that earlier occurrence, ``q - period + 1``. Score = mean of ``pattern[q, q - period + 1]`` over
    those queries only (rows without a target do not count, so a perfect head scores exactly 1 — the
    denominator TransformerLens's ``detect_head`` gets right only with ``exclude_bos``). Returns ``[head]``.
    """
    n_ctx = pattern.shape[-2]
    queries = torch.arange(n_ctx, device=pattern.device)
    targets = queries - periods[:, None] + 1  # [batch, q]
    valid = targets >= 1  # q >= period
    index = targets.clamp(min=0)[:, None, :, None].expand(-1, pattern.shape[1], -1, 1)
    on_target = pattern.gather(-1, index).squeeze(-1)  # [batch, head, q]
    weights = valid[:, None, :].to(pattern.dtype)
    return (on_target * weights).sum(dim=(0, -1)) / weights.sum(dim=(0, -1))


def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """Per-head mean attention from each position ``q ≥ 1`` to ``q - 1``; ``pattern [batch, head, q, k]`` →
    ``[head]``."""
    queries = torch.arange(1, pattern.shape[-2], device=pattern.device)
    return pattern[..., queries, queries - 1].mean(dim=(0, -1))


def token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy at each position: ``[batch, pos - 1]`` (position p predicts token p + 1)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(
        tokens.shape[0], -1)


def icl_score(losses: torch.Tensor, early: int, late: int) -> float:
    """Olsson et al.'s in-context-learning score: mean loss at token ``late`` minus mean loss at token ``early``
    (``losses [batch, pos]`` as from :func:`token_losses`). Negative when later tokens are predicted better."""
    if not 0 <= early < late < losses.shape[1]:
        raise InterpretError(f"icl_score needs 0 <= early < late < {losses.shape[1]}, got {early}, {late}")
    return float(losses[:, late].detach().mean() - losses[:, early].detach().mean())


# ---- training --------------------------------------------------------------------------------------------

@dataclass
class InductionConfig:
    """The induction-head phase-change experiment: model shape, training budget and measurement."""

    model: AttnOnlyConfig = field(default_factory=AttnOnlyConfig)
    """the attention-only transformer"""
    steps: int = 1500
    """optimiser steps"""
    batch_size: int = 64
    """sequences per step"""
    lr: float = 3e-3
    """AdamW learning rate"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    eval_every: int = 50
    """steps between measurements of loss, ICL score and per-head scores"""
    eval_batch: int = 256
    """sequences per measurement (a fixed batch, the same at every step)"""
    formation_threshold: float = 0.3
    """induction score at which a head counts as formed (a one-layer model stays near 0.1)"""
    data: Literal["repeated", "world"] = "repeated"
    """training text: periodic random tokens, or windows of the toy world's pretraining corpus"""
    world_seed: int = 0
    """which world's corpus (data = world)"""
    seed: int = 0
    """random seed (weights and data)"""


def world_token_stream(world_seed: int) -> tuple[torch.Tensor, int]:
    """The world's pretraining corpus (chat transcripts and knowledge-base documents, in file order) tokenised
    into one stream, and the tokenizer's vocabulary size."""
    from alignlab.core.models import load_tokenizer
    from alignlab.world.base_model import corpus_examples
    from alignlab.world.build import build_world

    paths = build_world(seed=world_seed, verbose=False)
    tokenizer = load_tokenizer(str(paths.tokenizer))
    stream = [token for example in corpus_examples(paths, tokenizer) for token in example["input_ids"]]
    return torch.tensor(stream), len(tokenizer)


def text_windows(stream: torch.Tensor, batch: int, n_ctx: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch, n_ctx]`` windows of ``stream`` at uniform random offsets."""
    starts = torch.randint(0, len(stream) - n_ctx, (batch,), generator=generator)
    return stream[starts[:, None] + torch.arange(n_ctx)]


@torch.no_grad()
def measure(model: AttentionOnly, tokens: torch.Tensor, periods: torch.Tensor,
            text: torch.Tensor | None = None) -> dict[str, Any]:
    """Loss, ICL score and per-layer, per-head induction and previous-token scores.

    The head scores come from the repeated ``tokens``. Loss and ICL score come from ``text`` when given (late =
    the last token, early = token ``n_ctx // 8``), else from ``tokens`` (early = the last token no sequence can
    have seen repeated, since the shortest period is ``n_ctx // 4``), so late minus early measures what the
    context adds."""
    logits, patterns = model(tokens, return_patterns=True)
    if text is None:
        losses, early = token_losses(logits, tokens), tokens.shape[1] // 4 - 2
    else:
        losses, early = token_losses(model(text), text), text.shape[1] // 8
    return {"loss": float(losses.mean()), "icl_score": icl_score(losses, early=early, late=losses.shape[1] - 1),
            "induction": [induction_score(p, periods).tolist() for p in patterns],
            "previous_token": [previous_token_score(p).tolist() for p in patterns]}


def formation_step(history: list[dict[str, Any]], threshold: float) -> int | None:
    """The first measured step at which some head's induction score reaches ``threshold`` (None if never)."""
    for row in history:
        if max(max(layer) for layer in row["induction"]) >= threshold:
            return row["step"]
    return None


def train_induction(config: InductionConfig, *, progress: bool = False) -> tuple[AttentionOnly, list[dict[str, Any]]]:
    """Train a fresh model on ``config.data``; returns it and a measurement every ``eval_every`` steps."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    cfg, data = config.model, torch.Generator().manual_seed(config.seed + 1)
    eval_generator = torch.Generator().manual_seed(10_000 + config.seed)
    if config.data == "world":
        stream, vocab = world_token_stream(config.world_seed)
        cfg = replace(cfg, d_vocab=vocab)
        held_out = len(stream) * 95 // 100  # the last 5% of the corpus is never trained on
        train_stream, eval_text = stream[:held_out], text_windows(stream[held_out:], config.eval_batch, cfg.n_ctx,
                                                                  eval_generator)
    else:
        eval_text = None
    model = AttentionOnly(cfg)
    eval_tokens = repeated_tokens(config.eval_batch, cfg.n_ctx, cfg.d_vocab, eval_generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = [{"step": 0, "train_loss": None, **measure(model, *eval_tokens, eval_text)}]
    for step in tqdm(range(1, config.steps + 1), desc=f"induction L{cfg.n_layers}", disable=not progress):
        if config.data == "world":
            tokens = text_windows(train_stream, config.batch_size, cfg.n_ctx, data)
        else:
            tokens, _ = repeated_tokens(config.batch_size, cfg.n_ctx, cfg.d_vocab, data)
        loss = token_losses(model(tokens), tokens).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            history.append({"step": step, "train_loss": loss.item(), **measure(model, *eval_tokens, eval_text)})
    return model, history
