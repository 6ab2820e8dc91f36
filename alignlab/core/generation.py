"""Generation behind one interface: a batched sampling loop over a KV cache, or a vLLM engine.

Prompts are chat-message lists rendered with the tokenizer's chat template (the same rendering as
training, :func:`alignlab.core.tokenize.render_prompt`) or token ids already rendered. They are
left-padded so a whole batch decodes together with one KV cache. Every caller (online RL, evaluation,
Chain of Hindsight, the benches) gets the same :class:`GenerationOutput`:

- ``completion_ids``: each completion's new token ids, **with** its EOS token when it emitted one;
- ``finished``: True where the completion emitted EOS (or wrote a ``stop`` string), False where
  ``max_new_tokens`` cut it (online RL penalises those);
- ``texts``: the completions decoded without special tokens, cut before the first ``stop`` string;
- ``seconds`` and ``num_tokens``: generation is timed separately because it dominates online RL.

Sampling draws from softmax(logits / temperature) restricted by ``top_k`` and then ``top_p``, the same
distribution as ``transformers``' ``generate`` (greedy decoding gives the same tokens).
With ``seed`` set, a call is deterministic; without it, it draws from torch's global RNG (the trainer's).
A call that runs past ``timeout_s`` raises :class:`~alignlab.errors.ModelError`: a batch stopped half-way
would pass cut completions off as the model's answers (and online RL would penalise them as unfinished).

Example::

    >>> cfg = GenerationConfig(max_new_tokens=32, temperature=0.7, seed=0)           # doctest: +SKIP
    >>> out = generate(model, tok, [[{"role": "user", "content": "Hi"}]], cfg)     # doctest: +SKIP
    >>> out.texts[0], out.finished[0], out.completion_ids[0][-1] == tok.eos_token_id  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from alignlab.core.logprobs import cache_keyword
from alignlab.core.records import Message
from alignlab.core.tokenize import render_prompt
from alignlab.errors import ConfigError, ModelError

T = TypeVar("T")


@dataclass
class GenerationConfig:
    """How completions are sampled."""

    backend: Literal["hf", "vllm"] = "hf"
    """hf: alignlab's batched sampling loop over a transformers KV cache (CPU or GPU); vllm: a vLLM engine in
    this process, its weights synced from the policy after every update (GPU, pip install vllm; tested only
    against a fake engine so far)"""
    max_new_tokens: int = 64
    """tokens generated per completion at most; a completion cut here is 'unfinished'"""
    temperature: float = 1.0
    """sampling temperature (0 = greedy)"""
    top_p: float = 1.0
    """nucleus sampling: keep the smallest token set with this much probability"""
    top_k: int = 0
    """keep only the k most likely tokens (0 = no limit)"""
    stop: list[str] = field(default_factory=list)
    """stop strings: a completion that writes one is finished there and its text is cut before it"""
    seed: int | None = None
    """seed of the sampler, so the same call gives the same completions (null: draw from torch's global RNG)"""
    batch_size: int = 64
    """prompts decoded together in one batch"""
    timeout_s: float = 600.0
    """raise an error when one generate call (all its batches) takes longer than this many seconds"""
    vllm_gpu_memory_utilization: float = 0.3
    """fraction of GPU memory the vLLM engine may take (the trainer needs the rest)"""
    shared_prefill: bool = True
    """hf: when a batch repeats a prompt (GRPO groups), run each distinct prompt through the model once and copy
    its KV cache to the repeats before decoding; false: prefill every row"""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"generation.max_new_tokens must be >= 1, got {self.max_new_tokens}: "
                              "a generation length of 0 leaves nothing to score or learn from")
        if self.temperature < 0:
            raise ConfigError(f"generation.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"generation.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"generation.top_k must be >= 0 (0 = no limit), got {self.top_k}")
        if self.batch_size < 1 or self.timeout_s <= 0:
            raise ConfigError("generation.batch_size and generation.timeout_s must be positive")
        if any(not s for s in self.stop):
            raise ConfigError("generation.stop holds an empty string, which would stop every completion at once")


@dataclass
class GenerationOutput:
    """Completions of a batch of prompts (one row per prompt, in order)."""

    prompt_ids: list[list[int]]
    """each prompt's token ids (no padding)"""
    completion_ids: list[list[int]]
    """each completion's token ids, up to and including EOS when it emitted one (no padding)"""
    texts: list[str]
    """each completion decoded without special tokens, cut before the first stop string"""
    finished: list[bool]
    """True where the completion emitted EOS or wrote a stop string, False where max_new_tokens cut it"""
    seconds: float
    """wall time spent generating"""

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)


def encode_prompts(tokenizer, prompts: list[list[Message]]) -> list[list[int]]:
    """Render each prompt with the chat template (generation prompt on) and tokenise it."""
    return [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into ([batch, len] ids, [batch, len] attention mask)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, length - len(seq):] = 1
    return ids, mask


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to (not including) the earliest stop string.

    Example::

        >>> cut_at_stop("abc\\n\\nQ: x", ["\\n\\n", "Q:"])
        'abc'
    """
    cut = min((text.find(s) for s in stop or () if s and s in text), default=len(text))
    return text[:cut]


def left_padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token (padding gets 1, as transformers
    gives it; the mask hides it)."""
    return (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)


def kv_cache(model: nn.Module, capacity: int):
    """An empty KV cache preallocated for ``capacity`` positions per row, written in place: a growing cache
    would copy all of itself at every decoding step. Its full-attention layers hand attention only the
    positions written so far (:func:`_filled_layer`), where a static layer would make every step attend over
    its whole capacity, the empty slots masked. A model that combines several (decoding-time experts) brings
    its own through ``new_kv_cache(capacity)``."""
    if hasattr(model, "new_kv_cache"):
        return model.new_kv_cache(capacity)
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    cache = StaticCache(config=model.config, max_cache_len=capacity)
    filled = _filled_layer()
    cache.layers = [filled(capacity) if type(layer) is StaticLayer else layer for layer in cache.layers]
    return cache


@functools.cache
def _filled_layer():
    """transformers' StaticLayer (preallocated, written in place) whose ``update`` returns views of the
    positions written so far and whose attention masks are sized to them: the same keys, values and mask
    entries that attention reads, without the empty tail."""
    from transformers.cache_utils import StaticLayer

    class FilledStaticLayer(StaticLayer):
        is_compileable = False  # the shapes it returns grow by a step each call

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start = int(self.cumulative_length)
            end = start + key_states.shape[-2]
            self.keys[:, :, start:end] = key_states
            self.values[:, :, start:end] = value_states
            self.cumulative_length.fill_(end)
            return self.keys[:, :, :end], self.values[:, :, :end]

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return int(self.cumulative_length) + query_length, 0

    return FilledStaticLayer


def shared_prefill(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, rows: list[list[int]], capacity: int):
    """A KV cache (of ``capacity`` positions) of every row's prompt but its last token, computed once per
    distinct prompt; or None.

    ``ids``/``mask`` are the batch's left-padded prompts [n, P]. The returned cache holds positions 0..P−2 of
    all n rows (distinct prompts' caches copied to their repeats), so decoding given it runs only the last
    prompt column and then samples as usual. The logits it samples from are those of the ordinary prefill up
    to float rounding (the matmuls see other batch shapes), so with a seed the samples match in practice but
    are not guaranteed bit-identical. None when no prompt repeats or some prompt is under 2 tokens.
    """
    first: dict[tuple[int, ...], int] = {}  # distinct prompt -> its first row
    for i, row in enumerate(rows):
        first.setdefault(tuple(row), i)
    if len(first) == len(rows) or min(len(r) for r in rows) < 2:
        return None
    distinct = torch.tensor(list(first.values()), device=ids.device)
    slot = {key: k for k, key in enumerate(first)}
    index = torch.tensor([slot[tuple(row)] for row in rows], device=ids.device)  # [n]: each row's distinct prompt
    head_ids, head_mask = ids[distinct, :-1], mask[distinct, :-1]  # [distinct, P−1]
    cache = kv_cache(model, capacity)
    model(input_ids=head_ids, attention_mask=head_mask, position_ids=left_padded_positions(head_mask),
          use_cache=True, logits_to_keep=1, **{cache_keyword(model): cache})
    cache.reorder_cache(index)
    return cache


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` with every token outside the smallest set holding ``top_p`` of the probability set to −inf,
    along the last dimension (the most likely token always stays)."""
    ascending, order = torch.sort(logits, dim=-1)
    tail = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p  # mass below the nucleus
    tail[..., -1] = False
    return logits.masked_fill(tail.scatter(-1, order, tail), -float("inf"))


def next_tokens(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from float32 logits [n, vocab]: argmax at temperature 0, else a draw from
    softmax(logits / T) keeping the top_k most likely tokens, then the smallest set holding top_p of the mass
    (transformers' temperature, top-k and top-p warpers, in their order).

    The draw inverts the cumulative distribution at one uniform number per row: the same distribution as
    ``torch.multinomial``, which instead draws an exponential number per vocabulary entry (most of a small
    model's sampling time). The sum runs in float64 and is normalised so that its last entry is exactly 1: a
    token of probability 0 can never be drawn.
    """
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / config.temperature
    if config.top_k:
        kth_best = torch.topk(scores, min(config.top_k, scores.shape[-1])).values[:, -1:]
        scores = scores.masked_fill(scores < kth_best, -float("inf"))
    if config.top_p < 1:
        scores = nucleus(scores, config.top_p)
    cdf = scores.softmax(dim=-1).double().cumsum(dim=-1)
    cdf /= cdf[:, -1:].clone()
    u = torch.rand(len(cdf), 1, dtype=torch.float64, device=cdf.device, generator=generator)  # in [0, 1)
    return torch.searchsorted(cdf, u, right=True).squeeze(1)  # the first token whose cumulative mass exceeds u


def eos_token_ids(model: nn.Module, tokenizer) -> set[int]:
    """The tokens that end a completion: the tokenizer's EOS and the model's configured EOS ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if not ids:
        raise ModelError("the tokenizer has no EOS token, so no completion could ever finish")
    return ids


def _timeout_error(config: GenerationConfig, what: str) -> ModelError:
    return ModelError(f"{what} ran past generation.timeout_s={config.timeout_s:g} s "
                      "(raise generation.timeout_s or lower generation.batch_size / max_new_tokens)")


@torch.no_grad()
def sample_batch(model: nn.Module, tokenizer, rows: list[list[int]], config: GenerationConfig, eos: set[int], *,
                 deadline: float, generator: torch.Generator | None = None) -> tuple[list[list[int]], list[bool]]:
    """Decode one left-padded batch with a KV cache: (completion ids with EOS kept, finished flags).

    Each step feeds only the tokens sampled last; a row that has finished keeps receiving padding (its cache
    entries are never read by another row) and the loop stops once every row has finished.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    ids, mask = left_pad(rows, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    n, width = ids.shape
    positions = left_padded_positions(mask)
    capacity = width + config.max_new_tokens
    cache = shared_prefill(model, ids, mask, rows, capacity) if config.shared_prefill else None
    feed, feed_positions = (ids, positions) if cache is None else (ids[:, -1:], positions[:, -1:])
    cache = cache if cache is not None else kv_cache(model, capacity)
    attention = torch.cat([mask, mask.new_ones(n, config.max_new_tokens)], dim=1)  # grown by slicing, not copying
    eos_ids = torch.tensor(sorted(eos), device=device)
    new = torch.full((n, config.max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    length = torch.full((n,), config.max_new_tokens, dtype=torch.long, device=device)  # of each completion
    cache_arg = cache_keyword(model)
    for step in range(config.max_new_tokens):
        if time.perf_counter() > deadline:
            raise _timeout_error(config, "generation")
        out = model(input_ids=feed, attention_mask=attention[:, :width + step], position_ids=feed_positions,
                    use_cache=True, logits_to_keep=1, **{cache_arg: cache})
        token = next_tokens(out.logits[:, -1].float(), config, generator).masked_fill_(done, pad_id)
        new[:, step] = token
        ended = ~done & torch.isin(token, eos_ids)
        if config.stop:
            ended |= _wrote_stop_string(tokenizer, new[:, :step + 1], done, config.stop)
        length[ended] = step + 1
        done |= ended
        if bool(done.all()):
            break
        feed, feed_positions = token[:, None], feed_positions[:, -1:] + 1
    completions = [row[:n_tokens] for row, n_tokens in zip(new.tolist(), length.tolist())]
    return completions, done.tolist()


def _wrote_stop_string(tokenizer, new: torch.Tensor, done: torch.Tensor, stop: list[str]) -> torch.Tensor:
    """Rows not yet done whose decoded completion contains a stop string."""
    hit = torch.zeros_like(done)
    for r in (~done).nonzero().flatten().tolist():
        text = tokenizer.decode(new[r].tolist(), skip_special_tokens=True)
        hit[r] = any(s in text for s in stop)
    return hit


def run_with_timeout(work: Callable[[], T], seconds: float, what: str) -> T:
    """``work()`` in a daemon thread, waited for at most ``seconds``; a ModelError names ``what`` hung.

    A hung call cannot be killed from Python: its thread is left behind (daemon, so it does not keep the
    process alive) and the caller gets the error instead of waiting forever.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as err:  # handed to the waiting thread
            result["error"] = err

    thread = threading.Thread(target=target, name=f"alignlab-{what}", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if thread.is_alive():
        raise ModelError(f"{what} did not answer within {seconds:g} s (generation.timeout_s); the engine looks hung")
    if "error" in result:
        raise result["error"]
    return result["value"]


class VLLMEngine:
    """A vLLM engine in this process on the policy's weights: :meth:`generate` samples, :meth:`sync` copies
    the trained weights in (call it after every optimiser update). Every wait on it has a timeout.

    Needs ``pip install vllm`` and a GPU. This wiring is tested against a fake engine with vLLM's interface
    only; it has never run on a GPU. The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
    as TRL's colocate mode does) so that :meth:`sync` can load weights into its model directly.

    Example::

        >>> engine = VLLMEngine("runs/sft/final", GenerationConfig(backend="vllm"))     # doctest: +SKIP
        >>> engine.sync(policy)                                                        # doctest: +SKIP
        >>> out = generate(policy, tok, prompts, engine.config, engine=engine)           # doctest: +SKIP
    """

    def __init__(self, model_path: str, config: GenerationConfig, *, dtype: str = "auto"):
        try:
            import vllm
        except ImportError as err:
            raise ModelError("generation.backend=vllm needs vLLM: pip install vllm (GPU only), "
                             "or use generation.backend=hf") from err
        if not model_path:
            raise ConfigError("generation.backend=vllm needs a model path (model.name_or_path) to start the engine")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.vllm, self.config = vllm, config
        self.llm = run_with_timeout(
            lambda: vllm.LLM(model=model_path, dtype=dtype, gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                             enable_prefix_caching=True),
            config.timeout_s, "starting the vLLM engine")

    def sync(self, model: nn.Module) -> None:
        """Load the policy's current weights into the engine and drop its prefix cache (computed with the old ones)."""
        weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]
        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model

        def load() -> None:
            engine_model.load_weights(weights)
            self.llm.reset_prefix_cache()

        run_with_timeout(load, self.config.timeout_s, "loading weights into the vLLM engine")

    def generate(self, prompt_ids: list[list[int]], eos: set[int], config: GenerationConfig
                 ) -> tuple[list[list[int]], list[bool]]:
        """(completion ids with EOS kept, finished flags) for token-id prompts, sampled as ``config`` says."""
        params = self.vllm.SamplingParams(n=1, temperature=config.temperature, top_p=config.top_p,
                                          top_k=config.top_k or -1, max_tokens=config.max_new_tokens,
                                          stop_token_ids=sorted(eos), stop=list(config.stop) or None,
                                          seed=config.seed)
        outs = run_with_timeout(
            lambda: self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False),
            config.timeout_s, "vLLM generation")
        completions, finished = [], []
        for out in outs:
            sample = out.outputs[0]
            ids, reason = list(sample.token_ids), getattr(sample, "stop_reason", None)
            ended = sample.finish_reason == "stop"
            if ended and not isinstance(reason, str) and (not ids or ids[-1] not in eos):
                ids.append(reason if isinstance(reason, int) else min(eos))  # vLLM may leave the stop token out
            completions.append(ids)
            finished.append(ended)
        return completions, finished


def generate(model: nn.Module, tokenizer, prompts: list[list[Message]] | list[list[int]],
             config: GenerationConfig, *, engine: VLLMEngine | None = None) -> GenerationOutput:
    """Complete each prompt (chat messages, or token ids already rendered); returns ids, text and finished flags.

    ``config.batch_size`` prompts decode together; with ``backend=vllm`` the ``engine`` samples instead
    (``model`` then only supplies the EOS ids). Raises ModelError when the call runs past ``config.timeout_s``.

    Example::

        >>> out = generate(model, tok, [[5, 6, 7]], GenerationConfig(max_new_tokens=4, temperature=0))  # doctest: +SKIP
        >>> out.completion_ids, out.finished                                                         # doctest: +SKIP
        ([[9, 12, 2]], [True])
    """
    if not prompts:
        raise ConfigError("no prompts to generate from (the prompt set is empty)")
    as_ids = all(not p or isinstance(p[0], int) for p in prompts) and any(prompts)
    prompt_ids = [list(p) for p in prompts] if as_ids else encode_prompts(tokenizer, prompts)
    if any(not p for p in prompt_ids):
        raise ConfigError("a prompt is empty: there is nothing to condition the completion on")
    eos = eos_token_ids(model, tokenizer)
    start = time.perf_counter()
    if config.backend == "vllm":
        if engine is None:
            raise ConfigError("generation.backend=vllm needs a VLLMEngine passed as engine=")
        completions, finished = engine.generate(prompt_ids, eos, config)
    else:
        completions, finished = _generate_hf(model, tokenizer, prompt_ids, config, eos, deadline=start + config.timeout_s)
    seconds = time.perf_counter() - start
    texts = [cut_at_stop(t, config.stop) for t in tokenizer.batch_decode(completions, skip_special_tokens=True)]
    return GenerationOutput(prompt_ids=prompt_ids, completion_ids=completions, texts=texts, finished=finished,
                            seconds=seconds)


def _generate_hf(model: nn.Module, tokenizer, prompt_ids: list[list[int]], config: GenerationConfig, eos: set[int],
                 *, deadline: float) -> tuple[list[list[int]], list[bool]]:
    device = next(model.parameters()).device
    generator = None
    if config.seed is not None and config.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    was_training = model.training
    model.eval()
    completions: list[list[int]] = []
    finished: list[bool] = []
    try:
        for lo in range(0, len(prompt_ids), config.batch_size):
            rows, done = sample_batch(model, tokenizer, prompt_ids[lo:lo + config.batch_size], config, eos,
                                      deadline=deadline, generator=generator)
            completions += rows
            finished += done
    finally:
        model.train(was_training)
    return completions, finished
