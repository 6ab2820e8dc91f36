"""Log-probabilities of given tokens, without a materialised full-vocabulary log-softmax copy.

log π(y_t | y_<t) = z_{y_t} − logsumexp(z): gather one logit per position and subtract the row's
logsumexp, taken in fp32 a block of rows at a time. The backward writes the gradient
∂/∂z_v = g·(1[v = y] − softmax(z)_v) block by block too, so no [batch, seq, vocab] temporary is made
besides the gradient itself, in any precision.

Example::

    >>> logits = torch.randn(2, 5, 11)
    >>> labels = torch.randint(0, 11, (2, 5))
    >>> torch.allclose(selective_log_softmax(logits, labels),
    ...                logits.log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1), atol=1e-6)
    True
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.tokenize import IGNORE_INDEX

BLOCK_ROWS = 16
"""rows of logits per block: 16 rows of a 32k vocabulary in fp32 are 2 MB, about one core's L2 cache"""


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log_softmax(z)[y] over rows [n, vocab] → [n] (fp32), one cache-sized block of rows at a time.

    autograd's own path (gather, logsumexp, their backwards) passes over the whole [n, vocab] tensor several
    times and allocates temporaries of its size; here each block is read while it sits in cache: the
    forward keeps only each row's logsumexp, the backward makes the block's gradient −g·exp(z − lse) and adds
    g at the picked token, in fp32, before writing it in the logits' dtype.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        lse = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
        for lo in range(0, rows.shape[0], BLOCK_ROWS):
            lse[lo:lo + BLOCK_ROWS] = torch.logsumexp(rows[lo:lo + BLOCK_ROWS].float(), dim=-1)
        ctx.save_for_backward(rows, index, lse)
        return rows.gather(-1, index[:, None]).squeeze(-1).float() - lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rows, index, lse = ctx.saved_tensors
        out = torch.empty_like(rows, memory_format=torch.contiguous_format)
        for lo in range(0, rows.shape[0], BLOCK_ROWS):
            hi = lo + BLOCK_ROWS
            g = grad[lo:hi, None].float()
            block = (rows[lo:hi].float() - lse[lo:hi, None]).exp_().mul_(-g)  # −g · softmax(z)
            out[lo:hi] = block.scatter_add_(-1, index[lo:hi, None], g)  # + g at the picked token
        return out, None


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] for logits [..., vocab] and index [...] → [...] (fp32).

    Pass the model's logits unsliced where you can (pad ``index`` and drop the extra outputs instead): a
    sliced view has to be copied, and its gradient expanded back to the full tensor."""
    rows = logits.reshape(-1, logits.shape[-1])
    return _SelectiveLogSoftmax.apply(rows, index.reshape(-1)).view(index.shape)


def first_label_position(labels: torch.Tensor) -> int:
    """The earliest position (over the batch) whose next token is a label; logits before it are unused."""
    active = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    return int(active[0]) if len(active) else labels.shape[1] - 1


def forward_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict label positions, and those labels: ([batch, n, vocab], [batch, n]).

    Prompt positions never carry a loss, so the LM head (often the largest matmul of a small model)
    runs only from the first completion position on, via ``logits_to_keep``.
    """
    start = first_label_position(labels)
    keep = input_ids.shape[1] - start  # positions start .. T-1 (the last predicts nothing, dropped below)
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1]  # [batch, keep-1, vocab]: position p predicts token p+1
    return logits, labels[:, start + 1:]


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the label tokens and their mask, both [batch, n] (n ≤ seq − 1)."""
    logits, targets = forward_logits(model, input_ids, attention_mask, labels)
    mask = targets != IGNORE_INDEX
    logps = selective_log_softmax(logits, targets.masked_fill(~mask, 0))
    return logps * mask, mask


def sequence_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_t log π(y_t | ·) over completion tokens, and completion lengths: ([batch], [batch])."""
    logps, mask = token_logprobs(model, input_ids, attention_mask, labels)
    return logps.sum(-1), mask.sum(-1)


def shared_prefix_logits(model: nn.Module, batch: dict[str, torch.Tensor], *, output_hidden_states: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (and optionally last hidden states) of a :func:`~alignlab.core.tokenize.shared_prefix_batch`.

    Pass 1 runs each prompt (minus its last token) once and keeps its KV cache; the cache rows are then
    repeated per completion (``prompt_index``) — an index_select, so gradients of every completion flow
    back into the one prompt computation — and pass 2 runs ``[last prompt token, completion]`` on top.
    Returns logits [n, width, vocab] where ``[:, t]`` predicts completion token t, exactly the ordinary
    layout's logits from the prompt's last position on, and the hidden states at the same positions
    [n, width, hidden] (for value heads) when asked.
    """
    from transformers import DynamicCache

    prompt_mask = batch["prompt_mask"]  # [prompts, P−1]
    cached = {}
    if prompt_mask.shape[1]:
        cache = DynamicCache()
        key = cache_keyword(model)
        # logits_to_keep=1: pass 1 needs only the cache; its one LM-head row is discarded
        model(input_ids=batch["prompt_ids"], attention_mask=prompt_mask, use_cache=True, logits_to_keep=1,
              **{key: cache})
        cache.reorder_cache(batch["prompt_index"])  # [prompts, ...] → [n, ...]: each completion's own prompt
        cached = {key: cache, "use_cache": True}
    attention = torch.cat([prompt_mask[batch["prompt_index"]], batch["attention_mask"]], dim=1)  # [n, P−1 + width]
    out = model(input_ids=batch["input_ids"], attention_mask=attention, position_ids=batch["position_ids"],
                output_hidden_states=output_hidden_states, **cached)
    return out.logits, (out.hidden_states[-1] if output_hidden_states else None)


def cache_keyword(model: nn.Module) -> str:
    """The keyword a transformers model takes its KV cache by: ``cache`` (5.24 on) or ``past_key_values``."""
    inner = getattr(model, "module", model)  # DDP
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def shared_token_logprobs(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs` for a shared-prefix batch: per-token log-probs and mask, both [n, width − 1]."""
    logits, _ = shared_prefix_logits(model, batch)  # [n, width, vocab]: the last position predicts nothing
    targets = batch["labels"]
    mask = targets != IGNORE_INDEX
    index = F.pad(targets.masked_fill(~mask, 0), (0, 1))  # a dummy target for the last position, dropped below
    logps = selective_log_softmax(logits, index)[:, :-1]
    return logps * mask, mask


def pair_logprobs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Chosen and rejected sequence log-probs, computed together.

    ``batch`` is either :class:`~alignlab.core.tokenize.PairCollator`'s [chosen; rejected] rows or
    :class:`~alignlab.core.tokenize.SharedPrefixPairCollator`'s (each prompt computed once for both answers);
    both give the same numbers. Returns ``chosen_logp``, ``rejected_logp``,
    ``chosen_len``, ``rejected_len`` (each [batch]).
    """
    if "prompt_ids" in batch:
        logps, mask = shared_token_logprobs(model, batch)  # [2B, width − 1]: chosen rows first, then rejected
        logp, length = logps.sum(-1), mask.sum(-1)
    else:
        logp, length = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    n = logp.shape[0] // 2
    return {"chosen_logp": logp[:n], "rejected_logp": logp[n:], "chosen_len": length[:n],
            "rejected_len": length[n:]}
