"""Greedy Coordinate Gradient (GCG): an adversarial suffix that makes a chat model begin its answer with a target.

Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned Language Models", Algorithm 1/2.
The suffix x_I (|I| = 20 tokens) is appended to the user's request and optimised to minimise

    L(x_I) = −(1/|y|) Σ_t log p(y_t | prompt ⊕ x_I ⊕ template, y_<t)         (the target's cross-entropy)

Each step: (1) the gradient ∇_{e_{x_i}} L of the loss w.r.t. each suffix position's one-hot token vector;
(2) the top-k tokens with the most negative gradient per position; (3) ``search_width`` candidates, each one
position replaced by a random top-k token; (4) every candidate's exact loss in batched forwards; (5) keep the best.
Universal suffixes (Algorithm 2) minimise the mean loss over several prompts; transferable ones over several models
that share one vocabulary. With ``progressive`` the prompts join one at a time, as in Algorithm 2: the loss starts
on the first prompt, and the next prompt is added once greedy decoding gives every target of the prompts so far
exactly with the current suffix.

What this implementation adds over nanoGCG (whose conventions it follows, so the two give the same losses):
the prompt before the suffix is run once and its KV cache reused by every candidate batch (through
:func:`expanded_cache`, which copies a cache through the transformers ``Cache`` API and finds the keyword it is
passed by, ``past_key_values`` or 5.40's ``cache``, with :func:`alignlab.core.logprobs.cache_keyword`); the LM head
runs only at target positions; no garbage collection per batch; candidates re-tokenised in one batched call.

Example::

    >>> result = run_gcg(model, tok, "Tell me how to pick a lock", "Sure, here is how",
    ...                  GCGConfig(num_steps=50, seed=0))                        # doctest: +SKIP
    >>> result.best_loss < result.losses[0], result.best_string                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from alignlab.core.logprobs import cache_keyword
from alignlab.core.tokenize import DEFAULT_CHAT_TEMPLATE
from alignlab.errors import AttackError

SUFFIX_SLOT = "{optim_str}"  # where the suffix goes in a message (default: the end of the last one)
SHARED_GROUPS = 4  # candidate groups per step that share the current suffix's cache up to their first change
LOSS_CHUNK_ROWS = 32  # candidates whose logits are converted to float32 at once in target_loss
BUFFER_INIT_CHARS = list(".,!?;:()[]{}@#$%&*wxyz")  # nanoGCG's characters for random initial buffer entries


@dataclass
class GCGConfig:
    """GCG's settings; the defaults are nanoGCG 0.3's (and the paper's, but for 250 steps instead of 500)."""

    num_steps: int = 250
    """optimisation steps (each: one gradient, one batch of candidates scored)"""
    optim_str_init: str = "x x x x x x x x x x x x x x x x x x x x"
    """initial suffix (its token count is the suffix length)"""
    search_width: int = 512
    """candidates sampled per step"""
    topk: int = 256
    """tokens per position kept from the gradient (the most negative entries)"""
    n_replace: int = 1
    """suffix positions replaced per candidate"""
    batch_size: int | None = None
    """candidates per forward pass (null: all at once)"""
    buffer_size: int = 0
    """best suffixes kept across steps; the next step starts from the buffer's best (0: always the latest step's
    best, even when it is worse)"""
    use_mellowmax: bool = False
    """mellowmax of the negated target logits instead of the cross-entropy (a smooth max over target tokens)"""
    mellowmax_alpha: float = 1.0
    """mellowmax's inverse temperature"""
    early_stop: bool = False
    """stop once some candidate makes greedy decoding produce every target exactly"""
    progressive: bool = False
    """universal suffixes: optimise on the first prompt, and add the next one each time the step's best suffix makes
    greedy decoding produce every target so far exactly (Zou et al.'s Algorithm 2 schedule); false: all from the
    start"""
    use_prefix_cache: bool = True
    """run the prompt before the suffix once and reuse its KV cache for every candidate (false: recompute it)"""
    allow_non_ascii: bool = False
    """allow tokens whose text is not printable ASCII (special tokens are never allowed)"""
    filter_ids: bool = True
    """drop candidates whose suffix does not decode and re-encode to the same tokens"""
    add_space_before_target: bool = False
    """put a space before the target (for tokenizers that glue it to the next word)"""
    check_target: bool = True
    """refuse a target whose tokens change when encoded after the chat template (the model could never produce
    those tokens in that context)"""
    seed: int | None = None
    """seed of the candidate sampler (null: torch's global RNG)"""

    def __post_init__(self) -> None:
        if min(self.num_steps, self.search_width, self.topk, self.n_replace) < 1:
            raise AttackError("gcg: num_steps, search_width, topk and n_replace must all be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise AttackError(f"gcg.batch_size must be >= 1 or null, got {self.batch_size}")
        if self.buffer_size < 0 or self.mellowmax_alpha <= 0:
            raise AttackError("gcg.buffer_size must be >= 0 and gcg.mellowmax_alpha > 0")


@dataclass
class GCGResult:
    """What one GCG run found; ``losses[s]`` is step s's best candidate loss (nanoGCG's trajectory)."""

    best_loss: float
    best_string: str
    best_ids: list[int]
    losses: list[float]
    strings: list[str]
    """the suffix the next step starts from, after each step"""
    early_stopped: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    """wall time per phase: gradient, sample, filter, score"""
    prompts_used: list[int] = field(default_factory=list)
    """how many prompts (the first ones) each step's loss covered: all of them unless progressive"""


# ---------------------------------------------------------------------------------------------------------------
# Pure pieces: loss, sampler, filters


def mellowmax(t: torch.Tensor, alpha: float = 1.0, dim: int = -1) -> torch.Tensor:
    """mm_α(t) = (1/α)·(logsumexp(α·t) − log n): a smooth maximum (Asadi & Littman 2017).

    Example::

        >>> round(float(mellowmax(torch.tensor([1.0, 1.0, 1.0]))), 6)
        1.0
    """
    n = torch.tensor(t.shape[dim], dtype=t.dtype, device=t.device)
    return (torch.logsumexp(alpha * t, dim=dim) - torch.log(n)) / alpha


def target_loss(logits: torch.Tensor, target_ids: torch.Tensor, mellowmax_alpha: float | None = None) -> torch.Tensor:
    """Per-candidate loss from logits [B, T, vocab] that predict target_ids [T] → [B] (float32).

    Cross-entropy averaged over the T target tokens, −log p(y_t) = logsumexp(z) − z_{y_t}, or mellowmax over
    −z_{y_t} when ``mellowmax_alpha`` is set. The logsumexp runs in float32 a few rows at a time, so bf16 logits
    are never copied whole (that copy took a third of candidate scoring).
    """
    picked = logits.gather(-1, target_ids.expand(logits.shape[0], -1)[..., None]).squeeze(-1).float()  # [B, T]
    if mellowmax_alpha is not None:
        return mellowmax(-picked, mellowmax_alpha)
    lse = torch.cat([rows.float().logsumexp(-1) for rows in logits.split(LOSS_CHUNK_ROWS)])  # [B, T]
    return (lse - picked).mean(-1)


def sample_candidates(ids: torch.Tensor, grad: torch.Tensor, search_width: int, topk: int, n_replace: int,
                      not_allowed: torch.Tensor | None = None, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """``search_width`` copies of ``ids`` [n] with ``n_replace`` random positions each set to a random token among
    that position's ``topk`` most negative gradient entries (grad [n, vocab]) → [search_width, n].

    Draws are made in nanoGCG's order and shapes (positions from ``argsort(rand)``, then tokens from ``randint``),
    so the same generator state gives the same candidates.
    """
    grad = grad.clone()
    if not_allowed is not None and len(not_allowed):
        grad[:, not_allowed.to(grad.device)] = float("inf")
    top = (-grad).topk(topk, dim=1).indices  # [n, topk]
    n = len(ids)
    positions = torch.argsort(torch.rand((search_width, n), generator=generator, device=grad.device))[..., :n_replace]
    choice = torch.randint(0, topk, (search_width, n_replace, 1), generator=generator, device=grad.device)
    tokens = top[positions].gather(2, choice).squeeze(2)  # [W, n_replace]
    return ids.repeat(search_width, 1).scatter_(1, positions, tokens)


def disallowed_token_ids(tokenizer, vocab_rows: int, *, allow_non_ascii: bool = False) -> torch.Tensor:
    """Token ids a suffix may not use: special and added tokens, ids the tokenizer does not have (embedding rows
    beyond it), and unless ``allow_non_ascii`` every token whose text is not printable ASCII."""
    banned = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    banned |= set(range(len(tokenizer), vocab_rows))
    if not allow_non_ascii:
        texts = tokenizer.batch_decode([[i] for i in range(min(len(tokenizer), vocab_rows))])
        banned |= {i for i, text in enumerate(texts) if not (text.isascii() and text.isprintable())}
    return torch.tensor(sorted(banned), dtype=torch.long)


def retokenizes(tokenizer, candidates: torch.Tensor) -> torch.Tensor:
    """Which candidate suffixes [W, n] decode and re-encode to the same tokens → bool [W].

    A suffix that does not round-trip is not what the model would see once the text is sent as a prompt.
    """
    texts = tokenizer.batch_decode(candidates)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = candidates.tolist()
    return torch.tensor([again == row for again, row in zip(encoded, rows)], dtype=torch.bool)


# ---------------------------------------------------------------------------------------------------------------
# The KV-cache adapter: the only place that knows how transformers passes and copies a cache


def expanded_cache(cache, n: int, length: int | None = None):
    """A copy of a batch-1 transformers ``Cache``, cut to its first ``length`` positions and repeated to ``n`` rows
    (the original stays untouched: a forward pass appends to the cache it is given)."""
    copied = copy.deepcopy(cache)
    if length is not None and length < copied.get_seq_length():
        copied.crop(length - copied.get_seq_length())  # negative: positions to drop (4.x and 5.x agree on this)
    copied.reorder_cache(torch.zeros(n, dtype=torch.long, device=_cache_device(cache)))
    return copied


def _cache_device(cache) -> torch.device:
    layer = cache.layers[0]
    return layer.keys.device if getattr(layer, "keys", None) is not None else torch.device("cpu")


def cache_kwargs(model: nn.Module, cache) -> dict:
    """Keyword arguments that hand ``cache`` to ``model``'s forward, by whichever name this transformers uses."""
    return {cache_keyword(model): cache, "use_cache": True} if cache is not None else {}


# ---------------------------------------------------------------------------------------------------------------
# One objective: a (model, prompt, target) triple with its fixed embeddings and prefix cache


def check_chat_template(tokenizer, where: str = "") -> None:
    """Raise AttackError when ``tokenizer`` has no chat template, saying how to give it one."""
    if not getattr(tokenizer, "chat_template", None):
        raise AttackError(
            f"{where or 'the tokenizer'} has no chat template, so the attack cannot know how the model sees a user "
            "turn; give it one (tokenizer.chat_template = '...jinja...', or --set chat_template=FILE.jinja, or "
            "--set chat_template=default for alignlab's plain 'User:/Assistant:' template) or use a chat model")


def render_around_suffix(tokenizer, messages: Sequence[dict], *, placeholder: str = SUFFIX_SLOT) -> tuple[str, str]:
    """(text before the suffix, text after it) of the chat rendering of ``messages`` with the generation prompt."""
    messages = [dict(m) for m in messages]
    if not any(placeholder in m["content"] for m in messages):
        messages[-1]["content"] += placeholder
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(placeholder) != 1:
        raise AttackError(f"the prompt must hold the suffix slot {placeholder} exactly once")
    before, after = text.split(placeholder)
    return before, after


class Objective:
    """The loss of suffixes for one (model, prompt, target): the prompt's embeddings before and after the suffix,
    the target's, and the prefix KV cache."""

    def __init__(self, model: nn.Module, tokenizer, messages: Sequence[dict] | str, target: str, config: GCGConfig):
        check_chat_template(tokenizer)
        messages = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        before, after = render_around_suffix(tokenizer, messages)
        target = " " + target if config.add_space_before_target else target
        device = next(model.parameters()).device
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        before_ids, after_ids, target_ids = encode(before), encode(after), encode(target)
        if not target_ids:
            raise AttackError(f"the target {target!r} encodes to no tokens")
        if config.check_target and encode(after + target)[len(after_ids):] != target_ids:
            raise AttackError(
                f"the target {target!r} does not tokenise stably: after the chat template it becomes other tokens "
                "than on its own, so the model could never produce the tokens being optimised for; try "
                "add_space_before_target=true, another target, or check_target=false to optimise anyway")
        self.model, self.config = model, config
        self.mellowmax_alpha = config.mellowmax_alpha if config.use_mellowmax else None
        embed = model.get_input_embeddings()
        as_tensor = lambda ids: torch.tensor([ids], dtype=torch.long, device=device)  # noqa: E731  # [1, len]
        self.target_ids = as_tensor(target_ids)[0]  # [T]
        with torch.no_grad():
            self.before_embeds, self.after_embeds, self.target_embeds = (
                embed(as_tensor(ids)) for ids in (before_ids, after_ids, target_ids))  # [1, len, d]
            self.prefix_cache = None
            if config.use_prefix_cache and before_ids:
                self.prefix_cache = _new_cache(model)  # filled in place by the forward pass
                model(inputs_embeds=self.before_embeds, logits_to_keep=1, **cache_kwargs(model, self.prefix_cache))

    def suffix_cache(self, suffix_embeds: torch.Tensor):
        """The KV cache of the prompt and a whole suffix [1, n, d] (batch 1), or None without a prefix cache."""
        if self.prefix_cache is None:
            return None
        cache = copy.deepcopy(self.prefix_cache)
        self.model(inputs_embeds=suffix_embeds, logits_to_keep=1, **cache_kwargs(self.model, cache))
        return cache

    def logits(self, suffix_embeds: torch.Tensor, *, shared=None, start: int = 0) -> torch.Tensor:
        """Logits [B, T, vocab] predicting the target after each suffix's embeddings [B, n, d].

        With ``shared`` (a :meth:`suffix_cache` of a suffix whose first ``start`` tokens every row repeats), those
        positions come from the cache and only the rest of each suffix is computed.
        """
        b = suffix_embeds.shape[0]
        parts = [suffix_embeds[:, start:], self.after_embeds.expand(b, -1, -1), self.target_embeds.expand(b, -1, -1)]
        cache = None
        if self.prefix_cache is not None:
            base = self.prefix_cache if shared is None else shared
            cache = expanded_cache(base, b, self.prefix_cache.get_seq_length() + start)
        else:
            parts.insert(0, self.before_embeds.expand(b, -1, -1))
        t = len(self.target_ids)
        # logits_to_keep=T+1: the LM head runs at the last T+1 positions; the last predicts past the target
        out = self.model(inputs_embeds=torch.cat(parts, dim=1), logits_to_keep=t + 1, **cache_kwargs(self.model, cache))
        return out.logits[:, :-1]

    def losses(self, suffix_embeds: torch.Tensor, *, exact: bool = False, shared=None, start: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss [B], and with ``exact`` whether greedy decoding gives the whole target [B]) of each suffix."""
        logits = self.logits(suffix_embeds, shared=shared, start=start)
        matches = (logits.argmax(-1) == self.target_ids).all(-1) if exact else None
        return target_loss(logits, self.target_ids, self.mellowmax_alpha), matches


def _new_cache(model: nn.Module):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


# ---------------------------------------------------------------------------------------------------------------
# The attack


class GCG:
    """GCG over one or more (model, tokenizer) pairs sharing a vocabulary and one or more (prompt, target) pairs.

    The loss of a suffix is the mean over every model × prompt objective in use: every prompt from the start, or
    with ``config.progressive`` the first ones, one more each time the suffix works on all of them (Algorithm 2).
    """

    def __init__(self, models: Sequence[tuple[nn.Module, object]], config: GCGConfig):
        if not models:
            raise AttackError("gcg needs at least one model")
        self.models, self.config = list(models), config
        self.tokenizer = models[0][1]
        vocab = self.tokenizer.get_vocab()
        for i, (_, tok) in enumerate(self.models[1:], start=1):
            if tok.get_vocab() != vocab:
                raise AttackError(f"model {i}'s tokenizer has another vocabulary than model 0's; a transferable "
                                  "suffix needs models that share one tokenizer vocabulary")
        rows = min(m.get_input_embeddings().num_embeddings for m, _ in self.models)
        self.not_allowed = torch.cat([disallowed_token_ids(tok, rows, allow_non_ascii=config.allow_non_ascii)
                                      for _, tok in self.models]).unique()
        self.generator = None
        if config.seed is not None:
            self.generator = torch.Generator(device=next(models[0][0].parameters()).device).manual_seed(config.seed)
        self.seconds = {"gradient": 0.0, "sample": 0.0, "filter": 0.0, "score": 0.0}

    def run(self, prompts: Sequence[tuple[Sequence[dict] | str, str]], *, progress: bool = True) -> GCGResult:
        """Optimise one suffix for every (messages, target) in ``prompts`` on every model."""
        config, tok = self.config, self.tokenizer
        for model, _ in self.models:
            model.eval()
        every = [[Objective(model, t, messages, target, config) for model, t in self.models] for messages, target in
                 prompts]  # [prompt][model]
        used = 1 if config.progressive else len(every)
        self.objectives = [o for row in every[:used] for o in row]
        buffer = self.initial_buffer()
        ids = buffer[0][1]
        losses, strings, stopped, prompts_used = [], [], False, []
        for _ in tqdm(range(config.num_steps), desc="gcg", disable=not progress, leave=False):
            grad = self.timed("gradient", self.token_gradient, ids)
            with torch.no_grad():
                candidates = self.timed("sample", self.sample_candidates, ids, grad)
                if config.filter_ids:
                    keep = self.timed("filter", retokenizes, tok, candidates)
                    if not keep.any():
                        raise AttackError("no candidate suffix decodes and re-encodes to itself; set "
                                          "filter_ids=false or start from another optim_str_init")
                    candidates = candidates[keep.to(candidates.device)]
                candidates = candidates.unique(dim=0)  # the sampler draws with replacement: score each suffix once
                cand_losses, exact = self.timed("score", self.candidate_losses, candidates, ids)
            best = int(cand_losses.argmin())
            loss, best_ids = float(cand_losses[best]), candidates[best]
            losses.append(loss)
            if config.buffer_size == 0:
                buffer = [(loss, best_ids)]
            elif loss < buffer[-1][0] or len(buffer) < config.buffer_size:
                buffer = sorted(buffer[:config.buffer_size - 1] + [(loss, best_ids)], key=lambda e: e[0])
            ids = buffer[0][1]
            strings.append(tok.decode(ids))
            prompts_used.append(used)
            works = bool(exact[best])  # the step's best suffix gives every target in use exactly
            if config.progressive and works and used < len(every):
                used += 1  # the next prompt joins; the buffer's losses are re-scored on the larger set
                self.objectives = [o for row in every[:used] for o in row]
                with torch.no_grad():
                    rescored, _ = self.candidate_losses(torch.stack([e[1] for e in buffer]))
                buffer = sorted(zip(rescored.tolist(), [e[1] for e in buffer]), key=lambda e: e[0])
                ids = buffer[0][1]
            elif config.early_stop and bool(exact.any()) and used == len(every):
                stopped = True
                break
        # the best suffix among the steps that used the most prompts (losses over fewer prompts do not compare)
        last = [s for s, n in enumerate(prompts_used) if n == prompts_used[-1]]
        best_step = min(last, key=lambda s: losses[s])
        return GCGResult(best_loss=losses[best_step], best_string=strings[best_step],
                         best_ids=tok(strings[best_step], add_special_tokens=False)["input_ids"],
                         losses=losses, strings=strings, early_stopped=stopped, seconds=dict(self.seconds),
                         prompts_used=prompts_used)

    def timed(self, phase: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def initial_buffer(self) -> list[tuple[float, torch.Tensor]]:
        """[(loss, suffix ids [n])] sorted by loss: the initial suffix, plus random ones when the buffer is > 1."""
        tok, config = self.tokenizer, self.config
        device = self.objectives[0].target_ids.device
        init = torch.tensor(tok(config.optim_str_init, add_special_tokens=False)["input_ids"], device=device)
        if not len(init):
            raise AttackError("gcg.optim_str_init encodes to no tokens")
        entries = init[None]
        if config.buffer_size > 1:
            chars = torch.tensor([tok(c, add_special_tokens=False)["input_ids"][0] for c in BUFFER_INIT_CHARS],
                                 device=device)
            pick = torch.randint(0, len(chars), (config.buffer_size - 1, len(init)), generator=self.generator)
            entries = torch.cat([entries, chars[pick.to(device)]])
        with torch.no_grad():
            losses, _ = self.candidate_losses(entries)
        return sorted(zip(losses.tolist(), entries), key=lambda e: e[0])

    def token_gradient(self, ids: torch.Tensor) -> torch.Tensor:
        """∇ of the mean loss w.r.t. the one-hot suffix [n, vocab] (Zou et al., eq. 2's e_{x_i})."""
        rows = min(m.get_input_embeddings().num_embeddings for m, _ in self.models)
        one_hot = nn.functional.one_hot(ids, num_classes=rows).float().requires_grad_()  # [n, vocab]
        total = 0.0
        for objective in self.objectives:
            weight = objective.model.get_input_embeddings().weight[:rows]
            suffix = (one_hot.to(weight.dtype) @ weight)[None]  # [1, n, d]
            loss, _ = objective.losses(suffix)
            total = total + loss.sum() / len(self.objectives)
        (grad,) = torch.autograd.grad(total, one_hot)
        return grad

    def sample_candidates(self, ids: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        c = self.config
        return sample_candidates(ids, grad, c.search_width, c.topk, c.n_replace, self.not_allowed, self.generator)

    def candidate_losses(self, candidates: torch.Tensor, base: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss over objectives [W], and whether every objective's target is reproduced exactly [W] (checked
        only with early_stop or progressive: the argmax over the vocabulary costs a tenth of scoring).

        Candidates that copy the current suffix ``base`` [n] up to position i share its KV cache up to there
        (with the prefix cache on). They are split into ``SHARED_GROUPS`` groups by where they first change; each
        group runs from its earliest change on: with one position replaced that skips over a third of the suffix's
        tokens, in a few forwards (one per position would skip half, but pay a forward's fixed cost n times).
        """
        size = self.config.batch_size or len(candidates)
        loss = torch.zeros(len(candidates))
        exact = torch.ones(len(candidates), dtype=torch.bool)
        first_change = torch.zeros(len(candidates), dtype=torch.long)
        if base is not None and self.config.use_prefix_cache:
            first_change = (candidates != base).int().argmax(1).cpu()  # 0 also for a candidate equal to base
            # a few groups, each starting where its earliest member changes: most of the saving in a few forwards
            starts = torch.linspace(0, candidates.shape[1], SHARED_GROUPS + 1)[:-1].long().unique()
            first_change = starts[torch.searchsorted(starts, first_change, right=True) - 1]
        for objective in self.objectives:
            embed = objective.model.get_input_embeddings()
            shared = objective.suffix_cache(embed(base.to(embed.weight.device))[None]) if base is not None else None
            for start in first_change.unique().tolist():
                rows = (first_change == start).nonzero().squeeze(1)
                for lo in range(0, len(rows), size):
                    chunk = rows[lo:lo + size]
                    chunk_loss, chunk_exact = objective.losses(embed(candidates[chunk].to(embed.weight.device)),
                                                               exact=self.config.early_stop or self.config.progressive,
                                                               shared=shared, start=start)
                    loss[chunk] += chunk_loss.cpu() / len(self.objectives)
                    if chunk_exact is not None:
                        exact[chunk] &= chunk_exact.cpu()
        return loss, exact


def run_gcg(model: nn.Module, tokenizer, messages: Sequence[dict] | str, target: str,
            config: GCGConfig | None = None, *, progress: bool = True) -> GCGResult:
    """A suffix that makes ``model`` answer ``messages`` with ``target`` (one model, one prompt)."""
    return GCG([(model, tokenizer)], config or GCGConfig()).run([(messages, target)], progress=progress)


def give_chat_template(tokenizer, template: str) -> None:
    """Set ``tokenizer``'s chat template from ``template``: a Jinja file path, Jinja text, or "default" (alignlab's
    plain User:/Assistant: template)."""
    from pathlib import Path

    if template == "default":
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    elif "{%" in template or "{{" in template:
        tokenizer.chat_template = template
    elif Path(template).is_file():
        tokenizer.chat_template = Path(template).read_text(encoding="utf-8")
    else:
        raise AttackError(f"chat_template {template!r} is neither 'default', a Jinja template, nor a file")


__all__ = ["GCG", "GCGConfig", "GCGResult", "run_gcg", "sample_candidates", "retokenizes", "disallowed_token_ids",
           "target_loss", "mellowmax", "expanded_cache", "Objective", "give_chat_template", "check_chat_template"]
