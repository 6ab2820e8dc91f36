"""The LM interface every evaluation runs on, and its local `transformers` backend.

An :class:`LM` answers three kinds of request, as lm-evaluation-harness defines them:

- ``loglikelihood([(context, continuation), ...])`` → ``[(log p(continuation | context), is_greedy), ...]``
- ``loglikelihood_rolling([text, ...])`` → ``[log p(text), ...]`` (the whole text, in windows if long)
- ``generate([prompt, ...], stop=..., max_tokens=...)`` → ``[completion, ...]``; a prompt is a string or
  a list of chat messages (rendered with the tokenizer's chat template).

:class:`HuggingFaceLM` tokenises exactly as the harness's ``HFLM`` does, so the numbers match it:
an empty context becomes the BOS token (EOS if there is no BOS), and trailing spaces of a context move
to the continuation. It is faster for four reasons, each measured in ``benchmarks/loglik_vs_lmeval.py``:

1. Requests whose token sequences share a prefix (a multiple-choice question's choices, the two
   sentences of a CrowS-Pairs pair, sentences that start alike) go through the model as one *trie*
   row: every shared token once, each token attending to its ancestors only (a 4-D attention mask)
   at its own position. The log-probs are those of separate forwards; the compute is not.
2. The tokens that *every* input of a call starts with (the BOS token, at least) go through the model
   once, and every row attends to their cached keys and values instead of recomputing them.
3. Only the positions that predict continuation tokens are projected onto the vocabulary
   (``logits_to_keep``), and log p = logit[token] − logsumexp(logits): no full log-softmax copy; one
   max pass serves both the greedy check and logsumexp's shift.
4. Identical requests are computed once.

Example::

    >>> lm = HuggingFaceLM("runs/sft", batch_size=16)                       # doctest: +SKIP
    >>> lm.loglikelihood([("The capital of Zorbia is", " Vell")])           # doctest: +SKIP
    [(-3.2, True)]
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignlab.core.generation import (
    GenerationConfig,
    GenerationOutput,
    VLLMEngine,
    eos_token_ids,
    generate,
)
from alignlab.core.logprobs import cache_keyword
from alignlab.core.tokenize import common_prefix_length
from alignlab.errors import EvalError
from alignlab.evaluate.interface import LM, HarnessEncoder, Prompt, cut_at_stop  # noqa: F401 (re-exported)


def load_lm(spec: str | LM, *, http: Any = None, **kwargs: Any) -> LM:
    """An LM from a model path / alignlab run dir, or a server URL ``http[s][+chat|+completions]://host:port/v1[#model]``.

    A plain ``http://`` URL sends chat messages to ``/chat/completions`` and everything else to
    ``/completions``; ``+chat`` or ``+completions`` names a server that has only one of them. ``http`` is an
    :class:`~alignlab.evaluate.http_lm.HTTPOptions` (timeout, retries, concurrency); ``kwargs`` go to
    :class:`HuggingFaceLM`.

    Example::

        >>> lm = load_lm("http+chat://127.0.0.1:8000/v1#tiny")          # doctest: +SKIP
    """
    if isinstance(spec, LM):
        return spec
    if spec.split("://", 1)[0] in ("http", "https", "http+chat", "https+chat", "http+completions",
                                   "https+completions"):
        from alignlab.evaluate.http_lm import open_url

        return open_url(spec, http)
    return HuggingFaceLM(spec, **kwargs)


def resolve_model_dir(path: str) -> str:
    """A model directory from a model path or an alignlab run dir (its ``final``/``model`` subfolder)."""
    root = Path(path).expanduser()
    if not root.exists() or any((root / f).exists() for f in ("config.json", "adapter_config.json")):
        return path  # a hub name, or a model directory; load_causal_lm reports a missing path
    for sub in ("final", "model", "policy"):
        if (root / sub / "config.json").exists():
            return str(root / sub)
    raise EvalError(
        f"'{path}' is neither a model directory (no config.json) nor a run directory with a "
        "final/, model/ or policy/ subfolder holding one"
    )


@dataclass
class _Row:
    """One model input row: a token trie holding several requests' inputs, each node stored once."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # depth in the trie = position in its sequence
    parent: list[int] = field(default_factory=list)  # column of the previous token, -1 at the root
    # (request id, the row column of each of its input tokens)
    members: list[tuple[int, list[int]]] = field(default_factory=list)


@dataclass
class _Prefix:
    """The first ``length`` tokens shared by every input of a call, run once: logits at each of its
    positions ([length, vocab], float32) and the model's key/value cache."""

    length: int
    logits: torch.Tensor
    cache: Any


def _logsumexp_argmax(logits: torch.Tensor, *, in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp, argmax)`` over the last dim in one max pass (it is also logsumexp's shift) and an
    exp pass, instead of logsumexp's own passes plus an argmax; ``in_place`` overwrites ``logits``.

    Example::

        >>> lse, best = _logsumexp_argmax(torch.tensor([[0.0, 1.0]]))
        >>> best.tolist(), round(float(lse), 4)
        ([1], 1.3133)
    """
    top, best = logits.max(dim=-1)
    shifted = logits.sub_(top[:, None]) if in_place else logits - top[:, None]
    return top + shifted.exp_().sum(dim=-1).log_(), best


def build_tree_rows(inputs: Sequence[list[int]], *, min_shared: int = 2, max_members: int = 8) -> list[_Row]:
    """Pack model inputs into rows that are token tries, so a shared prefix is computed once.

    Sorted lexicographically, each input's longest common prefix with any earlier input is its
    common prefix with the input just before it. So walking the sorted list, an input that shares
    ``>= min_shared`` tokens with its predecessor joins the predecessor's row: it reuses those
    columns and appends only its remaining tokens, whose parent is the last shared column. Each
    token then attends to its ancestors only (:func:`tree_attention_mask`) at position = its depth,
    which is exactly what it would see in a row of its own.
    """
    rows: list[_Row] = []
    prev: list[int] | None = None
    for i in sorted(range(len(inputs)), key=lambda i: inputs[i]):
        seq = list(inputs[i])
        shared = common_prefix_length(prev, seq) if prev is not None else 0
        if not rows or shared < min_shared or len(rows[-1].members) >= max_members:
            rows.append(_Row())
            shared = 0
        row = rows[-1]
        reused = row.members[-1][1][:shared] if shared else []
        parent = reused[-1] if reused else -1
        start = len(row.tokens)
        for depth in range(shared, len(seq)):
            row.tokens.append(seq[depth])
            row.positions.append(depth)
            row.parent.append(parent)
            parent = len(row.tokens) - 1
        row.members.append((i, reused + list(range(start, len(row.tokens)))))
        prev = seq
    return rows


def tree_attention_mask(parent: Sequence[int]) -> torch.Tensor:
    """``allowed[q, k]``: k is q or one of its ancestors in the row's trie. [seq, seq] bool.

    Parents come before children in a row, so each row of the mask extends its parent's.
    """
    allowed = torch.zeros(len(parent), len(parent), dtype=torch.bool)
    for q, p in enumerate(parent):
        if p >= 0:
            allowed[q] = allowed[p]
        allowed[q, q] = True
    return allowed


class HuggingFaceLM(LM):
    """A local `transformers` causal LM (a path, an alignlab run dir, or a loaded model + tokenizer).

    Args:
        model: path / hub name / run dir, or an already loaded ``nn.Module`` (then pass ``tokenizer``).
        tokenizer: tokenizer path or object; defaults to the model's.
        batch_size: requests per forward pass (each tree row counts its requests).
        dtype: weights dtype when loading (``float32``, ``bfloat16``).
        max_length: context window; defaults to the model config's ``max_position_embeddings``.
        share_prefix: group requests with a shared token prefix into tree rows (same numbers, less compute).
        autocast: run matmuls in this dtype under ``torch.autocast`` (e.g. ``bfloat16``: faster on CPUs with
            bf16 units), weights and log-softmax staying in float32; None for none.
        generation_backend: ``hf`` samples with the loaded model; ``vllm`` starts a vLLM engine on the model
            path for ``generate`` (GPU, ``pip install vllm``; tested only against a fake engine so far), while
            log-likelihoods stay on the loaded model.
        generation_timeout_s: a ``generate`` call that takes longer raises an error instead of waiting on.

    Example::

        >>> lm = HuggingFaceLM("runs/sft")                                         # doctest: +SKIP
        >>> lm.generate([[{"role": "user", "content": "Hi"}]], max_tokens=16)      # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 16,
        dtype: str = "float32",
        max_length: int | None = None,
        share_prefix: bool = True,
        autocast: str | None = None,
        device: str | None = None,
        generation_backend: str = "hf",
        generation_timeout_s: float = 600.0,
    ):
        from alignlab.core.models import load_causal_lm, load_tokenizer

        if generation_backend not in ("hf", "vllm"):
            raise EvalError(f"generation_backend must be 'hf' or 'vllm', got {generation_backend!r}")
        if generation_backend == "vllm" and not isinstance(model, str):
            raise EvalError("generation_backend='vllm' needs a model path to start the engine from")
        self.engine: VLLMEngine | None = None
        self.generation_timeout_s = generation_timeout_s
        loaded_here = isinstance(model, str)  # a model we loaded is ours to convert; a given one is the caller's
        if isinstance(model, str):
            model_dir = resolve_model_dir(model)
            tokenizer = tokenizer or model_dir
            model = load_causal_lm(model_dir, dtype=dtype)
            if generation_backend == "vllm":
                engine_config = GenerationConfig(backend="vllm", timeout_s=generation_timeout_s)
                self.engine = VLLMEngine(model_dir, engine_config, dtype=dtype)
        if tokenizer is None:
            raise EvalError("HuggingFaceLM needs a tokenizer when given a loaded model")
        self.tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.encoder = HarnessEncoder(self.tokenizer)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.autocast = {"bfloat16": torch.bfloat16, "float16": torch.float16, None: None}[autocast]
        if self.autocast is not None and loaded_here:
            # Autocast casts every linear weight to the autocast dtype on every call: a cost per forward that
            # does not shrink with the tokens saved. Holding those weights in that dtype gives the same products
            # (the same rounding, once) without it; norms and embeddings stay float32 as autocast keeps them.
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(self.autocast)
        config = self.model.config
        self.max_length = max_length or getattr(config, "max_position_embeddings", None) or 2048
        self._keeps_logits = self._accepts_logits_to_keep()
        self._cache_arg = cache_keyword(self.model)  # ``cache`` from transformers 5.24 on, else ``past_key_values``

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        )

    def _accepts_logits_to_keep(self) -> bool:
        params = inspect.signature(self.model.forward).parameters
        return "logits_to_keep" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    # ---- log-likelihood ---------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self.loglikelihood_tokens([self.encoder.encode_pair(c, x) for c, x in requests])

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        windows, owner = [], []
        for i, text in enumerate(texts):
            for window in self._rolling_windows(self.encoder.tok_encode(text)):
                windows.append(window)
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (logprob, _) in zip(owner, self.loglikelihood_tokens(windows)):
            totals[i] += logprob
        return totals

    def _rolling_windows(self, tokens: list[int]) -> list[tuple[list[int], list[int]]]:
        """Disjoint windows of at most ``max_length`` predicted tokens; each is conditioned on as many
        preceding tokens as fit, the first on the prefix token alone (the harness's scheme)."""
        L = self.max_length
        windows = [([self.encoder.prefix_token_id], tokens[:L])] if tokens else []
        done = min(L, len(tokens))
        while done < len(tokens):
            end = min(len(tokens), done + L)
            windows.append((tokens[max(0, end - L - 1) : done], tokens[done:end]))
            done = end
        return windows

    @torch.no_grad()
    def loglikelihood_tokens(
        self, requests: Sequence[tuple[list[int], list[int]]]
    ) -> list[tuple[float, bool]]:
        """The token-level core: ``(context_ids, continuation_ids)`` → ``(logprob, is_greedy)``."""
        # Input = (context + continuation) minus its last token, left-truncated to the window; the last
        # len(continuation) input positions predict the continuation.
        unique: dict[tuple[tuple[int, ...], int], int] = {}
        req_to_unique = []
        for ctx, cont in requests:
            if not cont:
                raise EvalError("a log-likelihood request has an empty continuation after tokenisation")
            full = (list(ctx) + list(cont))[-(self.max_length + 1) :]
            # A continuation longer than the window is scored on the tokens the window can predict (its last
            # max_length); lm-eval's HFLM fails on such a request.
            key = (tuple(full), min(len(cont), len(full) - 1))
            req_to_unique.append(unique.setdefault(key, len(unique)))
        keys = list(unique)
        inputs = [list(full[:-1]) for full, _ in keys]
        if self.share_prefix:
            rows = build_tree_rows(inputs)
        else:
            rows = build_tree_rows(inputs, max_members=1)
        # Longest rows first: the padded batch width is set by its first row and memory errors show early.
        rows.sort(key=lambda r: -len(r.tokens))

        prefix = self._shared_prefix(inputs) if len(rows) > 1 else None
        results: list[tuple[float, bool]] = [(0.0, False)] * len(keys)
        start, limit = 0, self.batch_size
        while start < len(rows):
            end, n_req = start, 0
            while end < len(rows) and (end == start or n_req + len(rows[end].members) <= limit):
                n_req += len(rows[end].members)
                end += 1
            try:
                scored = list(self._score_rows(rows[start:end], keys, prefix))
            except torch.OutOfMemoryError as err:
                if end - start == 1:
                    raise EvalError(
                        f"out of memory on a single row of {len(rows[start].tokens)} tokens"
                    ) from err
                limit = max(1, n_req // 2)  # halve the batch and retry; the longest rows come first
                continue
            for uid, value in scored:
                results[uid] = value
            start = end
        return [results[u] for u in req_to_unique]

    def _shared_prefix(self, inputs: list[list[int]]) -> _Prefix | None:
        """The tokens every input starts with (on CrowS-Pairs, the BOS token), run through the model once.

        At most the shortest input's length minus one, so every request keeps a column of its own in
        its row. Within a row these tokens are its first columns (a trie shares its root chain), so
        cutting them off every row and letting the rows attend to their cached keys and values is exact.
        One forward for the whole call, not one per batch: a one-token forward still reads every weight,
        and one per batch (99 on CrowS-Pairs) measured slower than recomputing BOS in each of 744 rows.
        """
        if not self.share_prefix:
            return None
        first = inputs[0]
        n_pre = min(len(x) for x in inputs) - 1
        for other in inputs[1:]:
            if n_pre <= 0:
                return None
            n_pre = common_prefix_length(first[:n_pre], other)
        if n_pre <= 0:
            return None
        ids = torch.tensor([first[:n_pre]], device=self.device)
        with self._autocast():
            keep = torch.ones(1, n_pre, dtype=torch.bool)
            logits, out = self._logits_at({"input_ids": ids, "use_cache": True}, keep)
        cache = getattr(out, "cache", None) or out.past_key_values
        return _Prefix(n_pre, logits, cache)

    def _score_rows(
        self, rows: list[_Row], keys: list[tuple[tuple[int, ...], int]], prefix: _Prefix | None = None
    ):
        # The tokens all rows start with were run once (``prefix``); the rows attend to their cache.
        n_pre = prefix.length if prefix is not None else 0
        width = max(len(r.tokens) for r in rows) - n_pre
        n = len(rows)
        input_ids = torch.zeros(n, width, dtype=torch.long)
        position_ids = torch.zeros(n, width, dtype=torch.long)
        is_tree = n_pre > 0 or any(len(r.members) > 1 for r in rows)
        allowed = torch.zeros(n, 1, width, n_pre + width, dtype=torch.bool) if is_tree else None
        # Logits are indexed in one flat space: the prefix's n_pre columns, then row b's column c at
        # n_pre + b * width + c. (request id, flat index of each predicting position, target tokens)
        picks: list[tuple[int, list[int], list[int]]] = []
        for b, row in enumerate(rows):
            t = len(row.tokens) - n_pre
            input_ids[b, :t] = torch.tensor(row.tokens[n_pre:])
            position_ids[b, :t] = torch.tensor(row.positions[n_pre:])
            if allowed is not None:
                allowed[b, 0, :, :n_pre] = True
                # A column whose parent is in the prefix is a root of the row's (now) forest.
                parent = [p - n_pre if p >= n_pre else -1 for p in row.parent[n_pre:]]
                allowed[b, 0, :, n_pre:] = tree_attention_mask(parent + [-1] * (width - t))  # padding sees itself
            for uid, cols in row.members:
                full, n_cont = keys[uid]
                flat = [c if c < n_pre else n_pre + b * width + (c - n_pre) for c in cols[len(cols) - n_cont :]]
                picks.append((uid, flat, list(full[-n_cont:])))

        kept = torch.zeros(n_pre + n * width, dtype=torch.bool)
        kept[:n_pre] = True  # the prefix's logits are all at hand
        kept[torch.tensor([f for _, flat, _ in picks for f in flat])] = True
        keep = kept[n_pre:].view(n, width)

        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(self.device),
            "use_cache": False,
            "position_ids": position_ids.to(self.device),
        }
        if prefix is not None:
            cache = copy.deepcopy(prefix.cache)  # the forward appends to it
            cache.batch_repeat_interleave(n)
            kwargs[self._cache_arg] = cache
        with self._autocast():
            if allowed is not None:
                # An additive float mask works with every attention implementation (eager adds it, sdpa
                # takes it).
                dtype = next(self.model.parameters()).dtype
                mask = torch.zeros(allowed.shape, dtype=dtype)
                kwargs["attention_mask"] = mask.masked_fill_(~allowed, torch.finfo(dtype).min).to(self.device)
            logits, _ = self._logits_at(kwargs, keep)
        # Flat index of every kept position among the kept logits (prefix first, then rows row-major).
        flat_pos = torch.full((n_pre + n * width,), -1, dtype=torch.long)
        flat_pos[kept] = torch.arange(int(kept.sum()))

        # log p(x_t | x_<t) = z[x_t] - logsumexp(z), the reductions once per kept position (a shared
        # prefix position serves several requests), then indexed per request token. The prefix's logits
        # stay a block of their own (concatenating would copy the batch's logits).
        at = flat_pos[torch.tensor([i for _, cols, _ in picks for i in cols])].to(logits.device)
        target = torch.tensor([x for _, _, tgt in picks for x in tgt], device=logits.device)
        blocks = [logits] if prefix is None else [prefix.logits, logits]
        picked = torch.empty(len(at), dtype=logits.dtype, device=logits.device)
        best, lse, offset = [], [], 0
        for block in blocks:
            here = (at >= offset) & (at < offset + len(block))
            picked[here] = block[at[here] - offset, target[here]]
            b_lse, b_best = _logsumexp_argmax(block, in_place=block is logits)
            lse.append(b_lse)
            best.append(b_best)
            offset += len(block)
        lse_at, best_at = torch.cat(lse)[at], torch.cat(best)[at]
        token_logprob = (picked - lse_at).cpu()
        greedy = (best_at == target).cpu()
        lengths = [len(tgt) for _, _, tgt in picks]
        for (uid, _, _), lp, g in zip(picks, token_logprob.split(lengths), greedy.split(lengths)):
            yield uid, (float(lp.sum()), bool(g.all()))

    def _logits_at(self, kwargs: dict[str, Any], keep: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One forward with ``kwargs``: float32 logits at the ``keep`` positions ([kept, vocab]), and
        the model's output (for its cache)."""
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep.to(self.device)
        out = self.model(**kwargs)
        logits = out.logits
        if logits.dim() == 3:  # the model ignored logits_to_keep
            logits = logits[keep.to(logits.device)]
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # logsumexp of bf16 logits loses the digits the ranking needs
        return logits, out

    # ---- generation ------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Prompt tokens; chat messages go through the tokenizer's chat template."""
        if isinstance(prompt, str):
            return self.encoder.tok_encode(prompt)
        if not getattr(self.tokenizer, "chat_template", None):
            raise EvalError("chat-message prompts need a tokenizer with a chat template; pass plain strings")
        text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template wrote BOS if it wants one

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        encoded = [self.encode_prompt(p) for p in prompts]
        return self.complete(
            encoded, stop=stop, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
        ).texts

    def complete(
        self,
        encoded: Sequence[list[int]],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> GenerationOutput:
        """Completions of token-id prompts through :func:`alignlab.core.generation.generate`: ids with EOS
        kept, finished flags, texts cut before the first ``stop`` string; in the prompts' order.

        Prompts are cut on the left to leave ``max_tokens`` of the context window, and batched longest
        first (rows of similar length waste less padding). ``temperature=0`` is greedy.

        Example::

            >>> out = lm.complete([lm.encode_prompt("The cat")], max_tokens=8)   # doctest: +SKIP
            >>> out.texts[0], out.finished[0]                                     # doctest: +SKIP
        """
        if not encoded:
            raise EvalError("no prompts to generate from")
        room = self.max_length - max_tokens
        if room < 1:  # a slice [-0:] would keep the whole prompt and run past the trained positions
            raise EvalError(f"max_tokens {max_tokens} leaves no room for a prompt in the model's context window of "
                            f"{self.max_length} positions; ask for fewer than {self.max_length} tokens")
        encoded = [list(e)[-room:] for e in encoded]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        config = GenerationConfig(
            backend="vllm" if self.engine is not None else "hf",
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=list(stop or []),
            seed=seed,
            batch_size=self.batch_size,
            timeout_s=self.generation_timeout_s,
        )
        with self._autocast():
            out = generate(self.model, self.tokenizer, [encoded[i] for i in order], config, engine=self.engine)
        back = sorted(range(len(order)), key=order.__getitem__)  # position of each prompt in ``order``
        return GenerationOutput(
            prompt_ids=[out.prompt_ids[k] for k in back],
            completion_ids=[out.completion_ids[k] for k in back],
            texts=[out.texts[k] for k in back],
            finished=[out.finished[k] for k in back],
            seconds=out.seconds,
        )

    def generate_ids(
        self,
        encoded: Sequence[list[int]],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[list[int]]:
        """New token ids per prompt, without the EOS token (:meth:`complete` keeps it and says which finished)."""
        out = self.complete(
            encoded, stop=stop, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        eos = eos_token_ids(self.model, self.tokenizer)
        return [ids[:-1] if ids and ids[-1] in eos else ids for ids in out.completion_ids]
