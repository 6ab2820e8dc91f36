"""The one rollout → score → learn cycle every online method (PPO, Safe PPO, GRPO, RLOO, REINFORCE) runs.

Each step:

1. take ``prompts_per_step`` prompts (a seeded shuffle per epoch, so ``--resume`` replays the order)
   and repeat each ``group_size`` times;
2. generate completions (:mod:`alignlab.core.generation`, timed separately), under the training loop's
   autocast (``train.mixed_precision``: bf16 sampling when the policy trains in bf16);
3. score them with each reward source the algorithm asks for (``reward``, and ``cost`` for Safe RLHF);
   a source that raises or returns NaN/inf stops the run with a TrainingError naming the prompt,
   and the checkpoints already written stay;
4. under no_grad, compute the behaviour policy's log-probs, the reference's log-probs and the critic's
   values for every completion token;
5. let the algorithm turn that into advantages (GAE, group baselines, ...);
6. run ``ppo_epochs`` passes of shuffled minibatch updates of the algorithm's loss, each one optimiser step of
   the training loop's (:class:`alignlab.core.trainer.TrainingRun`: clipping, NaN guard, schedule, checkpoints).

Under ``accelerate launch`` (N processes) each process generates and scores its share of the step's prompts
(``prompts_per_step / N``, groups kept whole), computes the behaviour/reference log-probs and values of its own
rows, and then every process holds the whole step's rollout, so advantages (batch baselines, whitening,
running reward moments, the KL controller, Safe RLHF's λ) are those of one process. Each minibatch is split
over the processes and DDP averages the gradients, weighted so that the update is the token mean over the whole
minibatch: N processes make the same update as one with the same ``prompts_per_step`` and ``minibatch_size``.

An *algorithm* is a small object with ``sources`` (names of the scores it needs), ``value_heads``
(critic heads on the policy), ``advantages(rollout)`` and ``loss(forward, minibatch)``; this file
holds the plumbing so each method file holds only its maths, and the maths itself (GAE, clipped losses, KL
estimators) lives in :mod:`alignlab.core.rl`.

Metrics (``metrics.jsonl``, one row per step): ``reward`` (mean raw score of the step's completions),
``reward/std``, ``finished`` (fraction that emitted EOS), ``completion_length``, ``kl`` (mean per-
sequence Σ_t (log π − log π_ref), the k1 estimate of KL(π‖π_ref)), ``entropy`` (mean per-token policy
entropy, nats), ``gen_seconds``/``gen_tokens_per_s`` (generation alone), ``step_seconds``, ``lr``,
``grad_norm``, ``monitor/<name>`` (sources scored but not learned from, e.g. the judge's true reward
next to a proxy reward model), plus each algorithm's own (``clipfrac``, ``value_error``, ``lambda``, ...).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.data import DataConfig, load_records
from alignlab.core.generation import GenerationConfig, VLLMEngine, encode_prompts, generate
from alignlab.core.logprobs import selective_log_softmax, shared_prefix_logits
from alignlab.core.models import ModelConfig, ValueHead, load_causal_lm, load_tokenizer
from alignlab.core.records import Message
from alignlab.core.rl import KLEstimator, entropy_from_logits, masked_mean
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import batch_order, ensure_chat_template, shared_prefix_batch
from alignlab.core.trainer import (
    LoopConfig,
    TrainConfig,
    TrainingRun,
    TrainResult,
    autocast,
    make_accelerator,
    stop_non_finite,
)
from alignlab.errors import ConfigError, DataError, TrainingError
from alignlab.outer.online.rewards import (
    RewardSource,
    RewardSourceConfig,
    as_source,
    build_reward,
    call_source,
)

__all__ = ["ActorCritic", "Algorithm", "OnlineConfig", "OnlineLoopConfig", "OnlineTrainer", "PolicyOutput", "Rollout",
           "entropy_from_logits", "masked_mean", "pad_rollout", "policy_forward"]


@dataclass
class OnlineLoopConfig(LoopConfig):
    """The training loop of an online method: ``max_steps`` counts rollout steps (-1: ``num_epochs`` passes over
    the prompts); each step makes ``ppo_epochs`` × (completions / ``minibatch_size``) optimiser updates, over
    which the learning-rate schedule runs. Batches come from rollouts, so the offline loop's batch keys are
    not settings here."""

    removed_keys: ClassVar[dict[str, str]] = {
        key: f"is not a setting of online methods and was always ignored; {hint} (an error from the next release)"
        for key, hint in [
            ("batch_size", "completions per optimiser step are `minibatch_size`, prompts per rollout `prompts_per_step`"),
            ("grad_accum", "an optimiser step takes `minibatch_size` completions"),
            ("group_by_length", "rollout minibatches are shuffled, never grouped by length"),
            ("eval_every", "online methods do not evaluate during training (use `alignlab eval` on the run)")]}
    """offline-only keys an old config may still hold: dropped with a FutureWarning naming the key to use"""

    max_steps: int = 100
    """rollout steps to run; -1 means `num_epochs` passes over the prompts"""
    num_epochs: float = 1.0
    """passes over the prompts when `max_steps` is -1"""
    lr: float = 1e-5
    scheduler: Literal["linear", "cosine", "constant"] = "constant"


@dataclass
class OnlineConfig(RunConfig):
    """Settings every online RL method shares (the rollout → score → learn cycle)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the policy to start from (usually an SFT model); it is also the reference"""
    data: DataConfig = field(default_factory=lambda: DataConfig(max_prompt_length=256))
    """the prompts (any dataset format; only the prompts are used)"""
    train: OnlineLoopConfig = field(default_factory=OnlineLoopConfig)
    """optimiser, schedule, checkpoints; max_steps counts rollout steps (-1: num_epochs over the prompts)"""
    output: str = "runs/online"
    """run directory"""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """how completions are sampled"""
    reward: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    """where the reward comes from"""
    prompts_per_step: int = 8
    """prompts sampled per rollout step (over all processes)"""
    group_size: int = 1
    """completions generated per prompt (GRPO/RLOO need >= 2)"""
    ppo_epochs: int = 1
    """passes over each rollout batch"""
    minibatch_size: int = 8
    """completions per optimiser step (over all processes)"""
    beta: float = 0.05
    """KL-penalty coefficient β to the reference policy (0 = no reference model at all)"""
    kl_estimator: KLEstimator = "k1"
    """per-token KL estimator: k1 = log-ratio, k2 = ½ log-ratio², k3 = ratio − 1 − log-ratio (Schulman 2020)"""
    missing_eos_penalty: float = 1.0
    """subtracted from the reward of a completion cut at max_new_tokens (no EOS)"""
    reference_model: str | None = None
    """reference policy path (default: the starting policy; with LoRA: the policy with its adapter off)"""
    shared_prefix: bool = True
    """where a minibatch holds several completions of one prompt (GRPO/RLOO groups), run that prompt through
    the policy and the reference once and reuse its KV cache for each completion (same log-probs and
    gradients, fewer tokens); false: one full row [prompt, completion] per completion"""

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "group_size", "ppo_epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.prompts_per_step * self.group_size) % self.minibatch_size:
            raise ValueError(f"prompts_per_step × group_size ({self.prompts_per_step * self.group_size}) must be "
                             f"a multiple of minibatch_size ({self.minibatch_size})")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if isinstance(self.train, TrainConfig):  # Python callers that built the offline loop's config
            warnings.warn("an online method's `train` is an OnlineLoopConfig; the TrainConfig given has batch keys "
                          "(batch_size, grad_accum, group_by_length, eval_every) that online methods ignore, and "
                          "will be refused from the next release", FutureWarning, stacklevel=3)


class ActorCritic(nn.Module):
    """A causal LM policy plus zero or more scalar value heads on its last hidden state.

    ``forward`` returns per-completion-token logits [batch, T, vocab] and values {head: [batch, T]}, where
    position t is the state *before* completion token t is emitted, and left-padded prompts get correct
    position ids. Given ``prompt_index`` (which prompt each row completes) and ``shared_prefix``, rows that
    complete the same prompt share one computation of it (:func:`alignlab.core.logprobs.shared_prefix_logits`);
    the outputs are the same.
    """

    def __init__(self, lm: nn.Module, heads: tuple[str, ...] = (), *, shared_prefix: bool = False):
        super().__init__()
        self.lm = lm
        self.heads = nn.ModuleDict({name: ValueHead(lm.config.hidden_size) for name in heads})
        self.shared_prefix = shared_prefix

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int,
                prompt_index: torch.Tensor | None = None, *, with_last: bool = False
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``with_last``: the logits also hold the last position, which predicts nothing ([batch, T + 1, vocab]),
        for a caller that would rather drop outputs computed from it than slice (copy) the logits."""
        if (self.shared_prefix and prompt_index is not None and len(prompt_index.unique()) < len(prompt_index)
                and int(attention_mask[:, :-completion_len].sum(-1).min()) >= 2):  # the layout repeats the last token
            logits, values = self._forward_shared(input_ids, attention_mask, completion_len, prompt_index)
        else:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          logits_to_keep=completion_len + 1, output_hidden_states=bool(self.heads), use_cache=False)
            logits, values = out.logits, {}  # position P-1+t predicts completion token t
            if self.heads:
                hidden = out.hidden_states[-1][:, -(completion_len + 1):-1]
                values = {name: head(hidden).float() for name, head in self.heads.items()}
        return (logits if with_last else logits[:, :-1]), values

    def _forward_shared(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int,
                        prompt_index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``forward`` with each distinct prompt computed once: the rows are re-laid out by shared_prefix_batch."""
        width_p = input_ids.shape[1] - completion_len
        keep = attention_mask.bool()
        rows = [ids[m].tolist() for ids, m in zip(input_ids, keep)]  # unpadded [prompt, completion] per row
        prompt_lens = keep[:, :width_p].sum(-1).tolist()
        first_row: dict[int, int] = {}  # prompt -> the first row that completes it
        for i, j in enumerate(prompt_index.tolist()):
            first_row.setdefault(j, i)
        slot = {j: k for k, j in enumerate(first_row)}
        prompts = [rows[i][:prompt_lens[i]] for i in first_row.values()]
        completions = [row[p:] for row, p in zip(rows, prompt_lens)]
        batch = shared_prefix_batch(prompts, completions, [slot[j] for j in prompt_index.tolist()], pad_token_id=0,
                                    width=completion_len + 1)
        batch = {k: v.to(input_ids.device) for k, v in batch.items()}
        logits, hidden = shared_prefix_logits(self.lm, batch, output_hidden_states=bool(self.heads))
        values = {name: head(hidden[:, :-1]).float() for name, head in self.heads.items()}
        return logits, values  # [n, T + 1, vocab]: position t predicts completion token t

    def save_pretrained(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        self.lm.save_pretrained(path)
        for name, head in self.heads.items():
            save_file(head.state_dict(), str(Path(path) / f"value_head_{name}.safetensors"))


@dataclass
class Rollout:
    """One step's completions and everything computed about them. N completions, T completion positions."""

    prompt_index: list[int]
    prompts: list[list[Message]]
    texts: list[str]
    input_ids: torch.Tensor  # [N, P+T] left-padded prompt, right-padded completion
    attention_mask: torch.Tensor  # [N, P+T]
    mask: torch.Tensor  # [N, T] float, 1 on completion tokens (EOS included)
    finished: torch.Tensor  # [N] bool
    scores: dict[str, torch.Tensor]  # name -> [N] raw scores (reward after the missing-EOS penalty)
    old_logps: torch.Tensor | None = None  # [N, T] behaviour policy
    ref_logps: torch.Tensor | None = None  # [N, T] reference policy
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # head -> [N, T]
    advantages: torch.Tensor | None = None  # [N, T]
    returns: dict[str, torch.Tensor] = field(default_factory=dict)  # head -> [N, T]

    @property
    def completion_len(self) -> int:
        return self.mask.shape[1]

    def minibatch(self, idx: torch.Tensor) -> dict[str, Any]:
        def take(x):
            return x[idx] if x is not None else None

        return {"input_ids": self.input_ids[idx], "attention_mask": self.attention_mask[idx], "mask": self.mask[idx],
                "prompt_index": torch.tensor(self.prompt_index, device=self.mask.device)[idx],
                "old_logps": take(self.old_logps), "ref_logps": take(self.ref_logps),
                "advantages": take(self.advantages),
                "values": {k: v[idx] for k, v in self.values.items()},
                "returns": {k: v[idx] for k, v in self.returns.items()}}


@dataclass
class PolicyOutput:
    """What the loss pass gives an algorithm for one minibatch (all [n, T])."""

    logps: torch.Tensor
    entropy: torch.Tensor
    values: dict[str, torch.Tensor]


class Algorithm(Protocol):
    sources: tuple[str, ...]
    """names of the scores it needs ("reward", "cost")"""
    value_heads: tuple[str, ...]
    """critic heads on the policy"""
    needs_old_logps: bool
    """False when the behaviour log-probs equal the current ones (one epoch, one minibatch)"""

    def advantages(self, rollout: Rollout) -> dict[str, float]: ...

    def loss(self, out: PolicyOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The minibatch's loss and metrics. Both must be token means over ``batch["mask"]``: the trainer
        weights them by each process's share of the minibatch's tokens to make the multi-process update."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def policy_forward(actor: ActorCritic, batch: dict[str, Any], *, with_entropy: bool = True) -> PolicyOutput:
    """Per-token log-probs of the taken completion tokens, entropies and values for a minibatch."""
    completion_len = batch["mask"].shape[1]
    logits, values = actor(batch["input_ids"], batch["attention_mask"], completion_len, batch.get("prompt_index"),
                           with_last=True)  # [n, T + 1, vocab]: unsliced, so neither pass copies them
    tokens = F.pad(batch["input_ids"][:, -completion_len:], (0, 1))  # a dummy target for the last position
    logps = selective_log_softmax(logits, tokens)[:, :-1]
    entropy = entropy_from_logits(logits.detach())[:, :-1] if with_entropy else torch.zeros_like(logps)
    return PolicyOutput(logps=logps, entropy=entropy, values=values)


def pad_rollout(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[left-padded prompt | right-padded completion] ids, attention mask and completion mask."""
    width_p = max(len(p) for p in prompt_ids)
    width_c = max(1, max(len(c) for c in completion_ids))
    n = len(prompt_ids)
    ids = torch.full((n, width_p + width_c), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width_p + width_c), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[i, width_p - len(p):width_p] = torch.tensor(p, dtype=torch.long)
        ids[i, width_p:width_p + len(c)] = torch.tensor(c, dtype=torch.long)
        attn[i, width_p - len(p):width_p + len(c)] = 1
    return ids, attn, attn[:, width_p:].float()


class OnlineTrainer:
    """Runs an :class:`Algorithm` through the rollout → score → learn cycle; see the module docstring."""

    def __init__(self, config: OnlineConfig, algorithm: Algorithm, *, model: nn.Module | None = None,
                 tokenizer=None, sources: dict[str, RewardSource | Callable] | None = None,
                 monitors: dict[str, RewardSource | Callable] | None = None):
        from accelerate.utils import set_seed

        self.config, self.algo = config, algorithm
        self.step = 0
        self.accelerator = make_accelerator()
        self.device = self.accelerator.device
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        for name in ("prompts_per_step", "minibatch_size"):
            if getattr(config, name) % self.world:
                raise ConfigError(f"{name}={getattr(config, name)} must be a multiple of the {self.world} processes "
                                  "(each process takes an equal share)")
        set_seed(config.train.seed)  # the value heads' initialisation, then sampling
        self.out = start_run(config, config.output)
        self.tokenizer = tokenizer or load_tokenizer(config.model.name_or_path,
                                                     trust_remote_code=config.model.trust_remote_code)
        ensure_chat_template(self.tokenizer)
        self.prompts, self.prompt_ids = self._load_prompts()
        load = dict(dtype=config.model.dtype, trust_remote_code=config.model.trust_remote_code)
        lm = model or load_causal_lm(config.model.name_or_path, lora=config.model.lora(), **load)
        self.actor = ActorCritic(lm, algorithm.value_heads, shared_prefix=config.shared_prefix).to(self.device)
        self.reference = self._reference(lm, load)
        self.sources = self._sources(sources or {})
        # Scored and logged as monitor/<name> but never learned from (e.g. the true reward next to a proxy).
        self.monitors = {name: as_source(src) for name, src in (monitors or {}).items()}
        self.run: TrainingRun | None = None
        self.engine = self._vllm_engine()  # [generation] None unless generation.backend=vllm

    def _vllm_engine(self) -> VLLMEngine | None:
        """[generation] With generation.backend=vllm, a vLLM engine that samples the rollouts, loaded with the policy's
        weights now and after every update (:meth:`train`)."""
        cfg = self.config
        if cfg.generation.backend != "vllm":
            return None
        if cfg.model.lora():
            raise ConfigError("generation.backend=vllm cannot load LoRA adapters into the engine yet: "
                              "train without model.lora_r or use generation.backend=hf")
        engine = VLLMEngine(cfg.model.name_or_path, cfg.generation, dtype=cfg.model.dtype)
        engine.sync(self.actor.lm)
        return engine

    def _load_prompts(self) -> tuple[list[list[Message]], list[list[int]]]:
        cfg = self.config
        records, _ = load_records(cfg.data, "prompt", seed=cfg.train.seed)
        if not records:
            raise DataError("the prompt set is empty", source=cfg.data.path)
        if len(records) < cfg.prompts_per_step:
            raise ConfigError(f"{len(records)} prompts are fewer than prompts_per_step={cfg.prompts_per_step}")
        prompts = [r.prompt for r in records]
        keep = cfg.data.max_prompt_length or cfg.data.max_length // 2
        return prompts, [ids[-keep:] for ids in encode_prompts(self.tokenizer, prompts)]

    def _reference(self, lm: nn.Module, load: dict) -> Callable[[dict], torch.Tensor] | None:
        """Reference log-prob function: the LoRA-disabled policy, or a frozen copy (none when β = 0)."""
        if self.config.beta == 0:
            return None
        if self.config.model.lora() and self.config.reference_model is None:
            def adapter_off(batch: dict) -> torch.Tensor:
                with self.actor.lm.disable_adapter():
                    return policy_forward(self.actor, batch, with_entropy=False).logps
            return adapter_off
        if self.config.reference_model or self.config.model.name_or_path:
            ref_lm = load_causal_lm(self.config.reference_model or self.config.model.name_or_path, **load)
        else:
            ref_lm = copy.deepcopy(lm)
        frozen = ActorCritic(ref_lm.eval().requires_grad_(False), shared_prefix=self.config.shared_prefix).to(self.device)
        return lambda batch: policy_forward(frozen, batch, with_entropy=False).logps

    def _sources(self, given: dict[str, RewardSource | Callable]) -> dict[str, RewardSource]:
        sources = {}
        for name in self.algo.sources:
            if name in given:
                sources[name] = as_source(given[name])
            elif isinstance(getattr(self.config, name, None), RewardSourceConfig):  # config.reward, config.cost
                sources[name] = build_reward(getattr(self.config, name), device=self.device)
            else:
                raise ConfigError(f"this method needs a '{name}' source")
        return sources

    # -- one step -----------------------------------------------------------------------------------------

    def _gather(self, values: list) -> list:
        """Every process's ``values`` concatenated in process order (the list itself with one process)."""
        if self.world == 1:
            return values
        from accelerate.utils import gather_object

        return gather_object(values)

    def collect(self, indices: list[int]) -> tuple[Rollout, dict[str, float]]:
        """Generate and score completions of this process's prompts ``indices``; the returned rollout holds every
        process's (in process order), the same on each."""
        cfg, tok = self.config, self.tokenizer
        index = [i for i in indices for _ in range(cfg.group_size)]
        prompts = [self.prompts[i] for i in index]
        with autocast(cfg.train.mixed_precision):  # sample at the precision the policy trains at
            gen = generate(self.actor.lm, tok, [self.prompt_ids[i] for i in index], cfg.generation,
                           engine=self.engine)  # [generation] the vLLM engine when generation.backend=vllm
        scores = {name: call_source(src, prompts, gen.texts, what=name, prompt_index=index)
                  for name, src in self.sources.items()}
        monitors = {name: call_source(src, prompts, gen.texts, what=name, prompt_index=index)
                    for name, src in self.monitors.items()}
        # Every process gets the whole step's completions and scores; the per-token passes below stay sharded.
        local_rows = len(index)
        index, prompts, texts = self._gather(index), self._gather(prompts), self._gather(gen.texts)
        prompt_ids, completion_ids = self._gather(gen.prompt_ids), self._gather(gen.completion_ids)
        finished = torch.tensor(self._gather(gen.finished))
        scores = {k: torch.tensor(self._gather(v.tolist())) for k, v in scores.items()}
        monitors = {k: torch.tensor(self._gather(v.tolist())) for k, v in monitors.items()}
        raw_reward = scores["reward"].clone() if "reward" in scores else None
        if "reward" in scores:
            scores["reward"] = scores["reward"] - cfg.missing_eos_penalty * (~finished).float()
        ids, attn, mask = pad_rollout(prompt_ids, completion_ids, tok.pad_token_id)
        rollout = Rollout(index, prompts, texts, ids.to(self.device), attn.to(self.device),
                          mask.to(self.device), finished, {k: v.to(self.device) for k, v in scores.items()})
        with torch.no_grad(), autocast(cfg.train.mixed_precision):
            # this process's rows of the rollout, in minibatch-sized chunks; then everyone's
            lo, hi, bs = self.rank * local_rows, (self.rank + 1) * local_rows, cfg.minibatch_size
            chunks = [rollout.minibatch(torch.arange(a, min(a + bs, hi), device=self.device)) for a in range(lo, hi, bs)]
            if self.algo.needs_old_logps or self.algo.value_heads:
                outs = [policy_forward(self.actor, chunk, with_entropy=False) for chunk in chunks]
                rollout.old_logps = self._gather_rows(torch.cat([o.logps for o in outs]))
                rollout.values = {k: self._gather_rows(torch.cat([o.values[k] for o in outs]))
                                  for k in self.algo.value_heads}
            if self.reference is not None:
                rollout.ref_logps = self._gather_rows(torch.cat([self.reference(chunk) for chunk in chunks]))
        lengths = mask.sum(-1)
        gen_seconds = self.run.global_sum(gen.seconds) / self.world if self.run else gen.seconds
        gen_tokens = self.run.global_sum(gen.num_tokens) if self.run else gen.num_tokens
        metrics = {"gen_seconds": gen_seconds, "gen_tokens_per_s": gen_tokens / max(gen_seconds, 1e-9),
                   "finished": float(finished.float().mean()), "completion_length": float(lengths.mean())}
        if raw_reward is not None:
            metrics.update({"reward": float(raw_reward.mean()), "reward/std": float(raw_reward.std(unbiased=False))})
        for name, value in scores.items():
            if name != "reward":
                metrics[name] = float(value.mean())
        metrics.update({f"monitor/{name}": float(value.mean()) for name, value in monitors.items()})
        return rollout, metrics

    def _gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """[n_local, T] per process → [N, T] on every process (process order)."""
        return rows if self.world == 1 else self.accelerator.gather(rows.contiguous())

    def learn(self, rollout: Rollout) -> dict[str, float]:
        """``ppo_epochs`` passes of shuffled minibatch updates; each minibatch is split over the processes."""
        cfg, run = self.config, self.run
        n = len(rollout.texts)
        # The same shuffle on every process (and after --resume): seeded by the step, not by the sampling RNG.
        order = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + self.step)
        sums: dict[str, float] = {}
        updates = 0
        grad_norm = 0.0
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(n, generator=order).split(cfg.minibatch_size):
                batch = rollout.minibatch(idx.tensor_split(self.world)[self.rank].to(self.device))
                # This process's share of the minibatch's tokens: the losses are token means over its own rows,
                # so share × processes (DDP averages) makes the update the token mean over the whole minibatch.
                share = float(batch["mask"].sum()) / max(float(rollout.mask[idx.to(self.device)].sum()), 1.0)
                run.model.train()
                with run.micro_batch():
                    out = policy_forward(run.model, batch)
                    loss, metrics = self.algo.loss(out, batch)
                run.backward(loss.float() * (share * self.world))
                metrics = {"loss": loss.detach(), "entropy": masked_mean(out.entropy, batch["mask"]), **metrics}
                weighted = {k: float(v) * share for k, v in metrics.items()}
                grad_norm += run.step(self.step, run.global_sum(weighted["loss"]))  # the whole minibatch's loss
                updates += 1
                for k, v in weighted.items():
                    sums[k] = sums.get(k, 0.0) + v
        return {**{k: run.global_sum(v) / updates for k, v in sums.items()}, "grad_norm": grad_norm / updates}

    def _stop(self, what: str) -> None:
        stop_non_finite(what, self.step, self.out / "checkpoints")

    # -- the loop -----------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        cfg = self.config
        steps_per_epoch = len(self.prompts) // cfg.prompts_per_step
        total = cfg.train.max_steps if cfg.train.max_steps > 0 else max(1, math.ceil(cfg.train.num_epochs *
                                                                                     steps_per_epoch))
        updates_per_step = cfg.ppo_epochs * math.ceil(cfg.prompts_per_step * cfg.group_size / cfg.minibatch_size)
        self.run = run = TrainingRun(self.accelerator, self.actor, cfg.train, self.out, total_steps=total,
                                     schedule_steps=total * updates_per_step, desc="rollout steps")
        self.algo.load_state_dict(run.resumed_state.get("algorithm", {}))
        share = cfg.prompts_per_step // self.world
        history: list[dict[str, Any]] = []
        try:
            for self.step in range(run.start_step, total):
                clock = time.perf_counter()
                epoch, k = divmod(self.step, steps_per_epoch)
                order = batch_order([0] * len(self.prompts), cfg.prompts_per_step, seed=cfg.train.seed, epoch=epoch,
                                    group_by_length=False)
                try:
                    rollout, row = self.collect(order[k][self.rank * share:(self.rank + 1) * share])
                except TrainingError as err:  # a reward source failed: name the step and the checkpoint kept
                    self._stop(str(err))
                row.update(self.algo.advantages(rollout))
                lr = run.lr
                row.update(self.learn(rollout))
                if self.engine is not None:  # [generation] the next rollouts sample from the updated policy
                    self.engine.sync(self.actor.lm)
                done = self.step + 1
                row = {"step": done, "lr": lr, **row, "step_seconds": time.perf_counter() - clock}
                history.append(row)
                if done % cfg.train.log_every == 0 or done == total:
                    run.log(row)
                run.progress.set_postfix(reward=f"{row.get('reward', float('nan')):.3f}", loss=f"{row['loss']:.4f}")
                run.progress.update(1)
                if run.save_due(done):
                    run.save(done, {"algorithm": self.algo.state_dict()})
        except BaseException:
            run.close()
            raise
        run.finish({"algorithm": self.algo.state_dict()})
        result = TrainResult(output_dir=self.out, steps=total, history=history, eval={})
        finish_run(self.actor if self.actor.heads else self.actor.lm, self.tokenizer, result,
                   merge_lora=cfg.model.merge_lora)
        return result
