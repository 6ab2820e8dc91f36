"""Generation behind one interface: batched Hugging Face ``generate`` with a KV cache, or vLLM.

Prompts are chat-message lists rendered with the tokenizer's chat template (the same rendering as
training, :func:`alignlab.core.tokenize.render_prompt`), tokenised once and left-padded so a whole
batch decodes together with one KV cache. Each result says which completions *finished* (emitted
EOS) and which were cut at ``max_new_tokens``; online RL penalises the latter. Generation time is
measured separately (``GenerationOutput.seconds``) because it dominates online RL.

Example::

    >>> cfg = GenerationConfig(max_new_tokens=32, temperature=0.7)                # doctest: +SKIP
    >>> out = generate(model, tok, [[{"role": "user", "content": "Hi"}]], cfg)  # doctest: +SKIP
    >>> out.texts[0], out.finished[0]                                            # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from alignlab.core.logprobs import cache_keyword
from alignlab.core.records import Message
from alignlab.core.tokenize import render_prompt
from alignlab.errors import ConfigError, ModelError


@dataclass
class GenerationConfig:
    """How completions are sampled."""

    backend: Literal["hf", "vllm"] = "hf"
    """hf: transformers generate with a KV cache (CPU or GPU); vllm: vLLM engine (GPU, must be installed)"""
    max_new_tokens: int = 64
    """tokens generated per completion at most; a completion cut here is 'unfinished'"""
    temperature: float = 1.0
    """sampling temperature (0 = greedy)"""
    top_p: float = 1.0
    """nucleus sampling: keep the smallest token set with this much probability"""
    top_k: int = 0
    """keep only the k most likely tokens (0 = no limit)"""
    batch_size: int = 64
    """prompts decoded together in one generate call"""
    timeout_s: float = 600.0
    """give up on one generate call after this many seconds (never wait without a timeout)"""
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
        if self.batch_size < 1 or self.timeout_s <= 0:
            raise ConfigError("generation.batch_size and generation.timeout_s must be positive")


@dataclass
class GenerationOutput:
    """Completions of a batch of prompts (one row per prompt, in order)."""

    prompt_ids: list[list[int]]
    """each prompt's token ids (no padding)"""
    completion_ids: list[list[int]]
    """each completion's token ids, up to and including EOS when it finished (no padding)"""
    texts: list[str]
    """each completion decoded without special tokens"""
    finished: list[bool]
    """True where the completion ended with EOS, False where max_new_tokens cut it"""
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


def shared_prefill(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, rows: list[list[int]]):
    """A KV cache of every row's prompt but its last token, computed once per distinct prompt; or None.

    ``ids``/``mask`` are the batch's left-padded prompts [n, P]. The returned cache holds positions 0..P−2 of
    all n rows (distinct prompts' caches copied to their repeats), so ``generate`` given it runs only the last
    prompt column and then decodes as usual. The logits it samples from are those of the ordinary prefill up to
    float rounding (the matmuls see other batch shapes), so with a seed the samples match in practice but
    are not guaranteed bit-identical. None when no prompt repeats or some prompt is under 2 tokens.
    """
    from transformers import DynamicCache

    first: dict[tuple[int, ...], int] = {}  # distinct prompt -> its first row
    for i, row in enumerate(rows):
        first.setdefault(tuple(row), i)
    if len(first) == len(rows) or min(len(r) for r in rows) < 2:
        return None
    distinct = torch.tensor(list(first.values()), device=ids.device)
    slot = {key: k for k, key in enumerate(first)}
    index = torch.tensor([slot[tuple(row)] for row in rows], device=ids.device)  # [n]: each row's distinct prompt
    head_ids, head_mask = ids[distinct, :-1], mask[distinct, :-1]  # [distinct, P−1]
    positions = (head_mask.cumsum(-1) - 1).clamp(min=0)  # what generate gives left-padded rows
    cache = DynamicCache()
    model(input_ids=head_ids, attention_mask=head_mask, position_ids=positions, use_cache=True, logits_to_keep=1,
          **{cache_keyword(model): cache})
    cache.reorder_cache(index)
    return cache


def cut_at_eos(rows: torch.Tensor, eos_ids: set[int]) -> tuple[list[list[int]], list[bool]]:
    """Trim generated rows [batch, new] after their first EOS; say which rows had one."""
    completions, finished = [], []
    for row in rows.tolist():
        end = next((i for i, t in enumerate(row) if t in eos_ids), None)
        completions.append(row if end is None else row[: end + 1])
        finished.append(end is not None)
    return completions, finished


def _eos_ids(model: nn.Module, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if not ids:
        raise ModelError("the tokenizer has no EOS token, so no completion could ever finish")
    return ids


@torch.no_grad()
def hf_generate(model: nn.Module, tokenizer, prompt_ids: list[list[int]], config: GenerationConfig
                ) -> tuple[list[list[int]], list[bool]]:
    """Sample completions with ``model.generate`` (KV cache on), ``config.batch_size`` prompts at a time."""
    eos = _eos_ids(model, tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p,
                "top_k": config.top_k or None} if config.temperature > 0 else {"do_sample": False}
    completions: list[list[int]] = []
    finished: list[bool] = []
    try:
        for lo in range(0, len(prompt_ids), config.batch_size):
            rows = prompt_ids[lo:lo + config.batch_size]
            ids, mask = left_pad(rows, tokenizer.pad_token_id)
            ids, mask = ids.to(device), mask.to(device)
            start = time.perf_counter()
            cache = shared_prefill(model, ids, mask, rows) if config.shared_prefill else None
            out = model.generate(input_ids=ids, attention_mask=mask,
                                 max_new_tokens=config.max_new_tokens, eos_token_id=sorted(eos),
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True,
                                 max_time=config.timeout_s, **sampling,
                                 **({cache_keyword(model): cache} if cache is not None else {}))
            if time.perf_counter() - start >= config.timeout_s:
                raise ModelError(f"generation stopped after its timeout of {config.timeout_s:.0f} s "
                                 "(raise generation.timeout_s or lower generation.batch_size)")
            rows, done = cut_at_eos(out[:, ids.shape[1]:].cpu(), eos)
            completions += rows
            finished += done
    finally:
        model.train(was_training)
    return completions, finished


class VLLMGenerator:
    """A vLLM engine on the policy's weights; :meth:`sync` copies the trained weights in before sampling.

    Needs a GPU and ``pip install vllm``; raises :class:`ModelError` with the reason otherwise.
    """

    def __init__(self, model_path: str, config: GenerationConfig):
        try:
            import vllm
        except ImportError as err:
            raise ModelError("generation.backend=vllm needs vLLM: pip install vllm (GPU only), "
                             "or use generation.backend=hf") from err
        if not torch.cuda.is_available():
            raise ModelError("generation.backend=vllm needs a CUDA GPU; vLLM does not run on a CPU here. "
                             "Use generation.backend=hf")
        self.vllm, self.config = vllm, config
        self.llm = vllm.LLM(model=model_path, gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                            enable_prefix_caching=True)

    def sync(self, model: nn.Module) -> None:
        """Load the policy's current weights into the engine (same process, so no network wait)."""
        state = list(model.state_dict().items())
        self.llm.collective_rpc(lambda worker: worker.model_runner.model.load_weights(state))

    def generate(self, prompt_ids: list[list[int]], eos: set[int]) -> tuple[list[list[int]], list[bool]]:
        c = self.config
        params = self.vllm.SamplingParams(temperature=c.temperature, top_p=c.top_p, top_k=c.top_k or -1,
                                          max_tokens=c.max_new_tokens, stop_token_ids=sorted(eos))
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)
        rows = [list(o.outputs[0].token_ids) for o in outs]
        finished = [bool(r) and r[-1] in eos for r in rows]
        return rows, finished


def generate(model: nn.Module, tokenizer, prompts: list[list[Message]] | list[list[int]],
             config: GenerationConfig, *, engine: VLLMGenerator | None = None) -> GenerationOutput:
    """Complete each prompt (chat messages, or token ids already rendered); returns ids, text and EOS flags."""
    if not prompts:
        raise ConfigError("no prompts to generate from (the prompt set is empty)")
    as_ids = all(not p or isinstance(p[0], int) for p in prompts) and any(prompts)
    prompt_ids = prompts if as_ids else encode_prompts(tokenizer, prompts)
    start = time.perf_counter()
    if config.backend == "vllm":
        if engine is None:
            raise ConfigError("generation.backend=vllm needs an engine (VLLMGenerator) to be passed in")
        completions, finished = engine.generate(prompt_ids, _eos_ids(model, tokenizer))
    else:
        completions, finished = hf_generate(model, tokenizer, prompt_ids, config)
    seconds = time.perf_counter() - start
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    return GenerationOutput(prompt_ids=prompt_ids, completion_ids=completions, texts=texts, finished=finished,
                            seconds=seconds)
