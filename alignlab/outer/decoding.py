"""Decoding-time alignment: steer a frozen model while it generates, without training it.

- **DExperts** (Liu et al. 2021, "DExperts: Decoding-Time Controlled Text Generation with Experts and
  Anti-Experts", Eq. 1): at every step the next-token logits are

      z̃_t = top-p(z_t^base) + α (z_t^expert − z_t^anti)

  where the expert was tuned on desirable text and the anti-expert on undesirable text (toxic, harmful): tokens
  the anti-expert likes more than the expert lose probability. As in the authors' code (``filter_p=0.9``), the
  base logits are first cut to their nucleus, so the experts only reorder tokens the base model finds plausible. :class:`LogitArithmetic` is the general form, a
  weighted sum of any models' logits, decoded in lockstep by the one generator (each model keeps its own KV
  cache), so sampling, stop strings, seeds and timeouts work as for a single model.
- **Anti-expert re-ranking** (Xu et al.'s detoxification by re-ranking): sample N answers from the model and
  keep the one the anti-expert likes least relative to the model, ``argmin_i log π_anti(y_i|x) − log π(y_i|x)``.

All models must share one tokenizer (the same vocabulary).

Example::

    >>> from alignlab.core.generation import GenerationConfig, generate
    >>> steered = dexperts(base, expert, anti, alpha=1.0)                       # doctest: +SKIP
    >>> generate(steered, tokenizer, prompts, GenerationConfig()).texts          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import nn

from alignlab.core.generation import GenerationConfig, generate, kv_cache, nucleus
from alignlab.core.logprobs import cache_keyword
from alignlab.errors import ModelError


class MultiCache:
    """One KV cache per model of a :class:`LogitArithmetic`, reordered together."""

    def __init__(self, caches: list):
        self.caches = caches

    def reorder_cache(self, index: torch.Tensor) -> None:
        for cache in self.caches:
            cache.reorder_cache(index)


class LogitArithmetic(nn.Module):
    """A causal LM whose logits are ``Σ_i w_i · z_i`` over its models (the first is the base, weight 1).

    It takes the keywords the generator passes to a transformers model and returns an object with ``logits``;
    its ``new_kv_cache`` gives each model its own cache.
    """

    def __init__(self, base: nn.Module, others: Sequence[tuple[nn.Module, float]], *, base_top_p: float = 1.0):
        super().__init__()
        if not 0.0 < base_top_p <= 1.0:
            raise ModelError(f"base_top_p must be in (0, 1], got {base_top_p}")
        self.base_top_p = base_top_p
        vocab = {m.config.vocab_size for m in (base, *[m for m, _ in others])}
        if len(vocab) != 1:
            raise ModelError(f"decoding-time experts must share one vocabulary; got sizes {sorted(vocab)}")
        self.models = nn.ModuleList([base, *[m for m, _ in others]])
        self.weights = [1.0, *[float(w) for _, w in others]]
        self.config = base.config
        self.generation_config = getattr(base, "generation_config", None)

    def new_kv_cache(self, capacity: int) -> MultiCache:
        return MultiCache([kv_cache(m, capacity) for m in self.models])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: MultiCache | None = None,
                use_cache: bool = True, logits_to_keep: int = 0) -> SimpleNamespace:
        logits = None
        caches = past_key_values.caches if past_key_values is not None else [None] * len(self.models)
        for model, weight, cache in zip(self.models, self.weights, caches):
            extra = {cache_keyword(model): cache} if cache is not None else {}
            z = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=use_cache, logits_to_keep=logits_to_keep, **extra).logits.float()
            if logits is None and self.base_top_p < 1.0:  # the base model's nucleus; the rest is never sampled
                z = nucleus(z, self.base_top_p)
            logits = weight * z if logits is None else logits + weight * z
        return SimpleNamespace(logits=logits)


def dexperts(base: nn.Module, expert: nn.Module | None, anti_expert: nn.Module, alpha: float, *,
             base_top_p: float = 0.9) -> LogitArithmetic:
    """DExperts' ``top-p(z_base) + α (z_expert − z_anti)``; without an expert, ``top-p(z_base) − α z_anti``
    (anti-only). ``base_top_p=1`` keeps every base token."""
    others = ([(expert, alpha)] if expert is not None else []) + [(anti_expert, -alpha)]
    return LogitArithmetic(base, others, base_top_p=base_top_p)


def rerank_by_anti_expert(model: nn.Module, anti_expert: nn.Module, tokenizer, prompts: list, *, n: int,
                          config: GenerationConfig) -> list[str]:
    """For each prompt (chat messages), sample ``n`` answers from ``model`` and return the one with the lowest
    ``log π_anti(y|x) − log π(y|x)``: the answer the anti-expert likes least, relative to the model itself."""
    from alignlab.core.generation import encode_prompts
    from alignlab.world.model_eval import answer_logprobs

    encoded = encode_prompts(tokenizer, prompts)
    repeated = [ids for ids in encoded for _ in range(n)]  # prompt i's samples at rows i·n … i·n + n − 1
    out = generate(model, tokenizer, repeated, config)
    pad = tokenizer.pad_token_id
    own = answer_logprobs(model, repeated, out.completion_ids, pad_token_id=pad)
    anti = answer_logprobs(anti_expert, repeated, out.completion_ids, pad_token_id=pad)
    best = (anti - own).view(len(prompts), n).argmin(dim=1)
    return [out.texts[i * n + int(b)] for i, b in enumerate(best)]
