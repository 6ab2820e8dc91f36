"""SENSEI: a critic that assigns reward to every generation step and an actor that steers generation toward the
highest estimated reward, both small heads on a shared, frozen LM (Liu et al. 2022, "Aligning Generative Language
Models with Human Values", NAACL Findings).

A human (here: a reward source, on the toy world its judge) scores a whole answer, R(x, y). SENSEI's critic is a
*reward distributor*: it learns how that sequence-level judgement splits over the steps that wrote the answer.
Our minimal version reads the shared LM's last hidden state h_t before step t and predicts, for every candidate
token a, the reward of writing it there, q(h_t)_a (a linear head, one output per vocabulary entry). It is fitted
so that the step rewards of the tokens actually written add up to the judgement:

    L_critic = ( Σ_t q(h_t)_{y_t} − R(x, y) )²                                   (the reward distributor)

The actor is a second head, a logit offset δ(h_t), so that the steered policy is π(a | h_t) = softmax(z_t + δ(h_t))_a
(z_t: the shared LM's logits). It moves, at every step of the training answers, toward the critic's highest
estimated reward, held near the LM by a KL term (our choice of regulariser, as in RLHF, so the steering cannot
leave the LM's language):

    L_actor = Σ_t [ −Σ_a π(a | h_t) q(h_t)_a + β KL(π(· | h_t) ‖ softmax(z_t)) ]   (q held fixed)

whose minimiser at each state is π ∝ softmax(z_t) · exp(q(h_t) / β) (:func:`optimal_actor_logits`). Both losses
train together in one pass of the one training loop (:func:`alignlab.core.trainer.train`); the LM never changes.
The answers are the LM's own samples of the training prompts, scored once by the reward source.

The critic's target is the raw judgement R, not R minus a baseline (not implemented here): with positive
rewards, fitting the sums pushes the step rewards of *written* tokens up together, while tokens never written at
a state keep whatever the head extrapolates. The actor compares tokens within one state (a constant added to
every q_a leaves its optimum unchanged), so that common offset acts only as a preference for written over
unwritten tokens; restricting the actor to the LM's top_k tokens limits it.

Generation: :class:`Sensei` is a causal LM whose logits are ``z + strength · δ(h)`` and runs through the one
generator (:func:`alignlab.core.generation.generate`) with its KV cache; ``z`` is cut to the LM's ``top_k`` most
likely tokens (our choice, not the paper's: the actor cannot push generation onto tokens the critic never saw
written), so ``strength=0`` with ``top_k`` set is truncated sampling from the shared LM (the control every
steered row is compared with) and ``strength=0, top_k=0`` is the LM itself; ``strength`` is the generation option
(saved in ``sensei.json``, changed with :meth:`Sensei.with_strength`).

Example::

    >>> import torch
    >>> loss = distributor_loss(torch.tensor([[0.5, 0.25]]), torch.ones(1, 2), torch.tensor([1.0]))
    >>> loss.tolist()        # the two steps hand out 0.75 of a judgement of 1
    [0.0625]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from alignlab.core.data import load_records
from alignlab.core.generation import GenerationConfig, generate
from alignlab.core.logprobs import cache_keyword
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import IGNORE_INDEX, CompletionCollator, ensure_chat_template
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.errors import ConfigError, DataError, ModelError
from alignlab.outer.online.rewards import (
    RewardSource,
    RewardSourceConfig,
    as_source,
    build_reward,
    call_source,
)

HEADS_FILE, META_FILE = "sensei_heads.safetensors", "sensei.json"

# -- pure losses ---------------------------------------------------------------------------------------------


def distributor_loss(step_rewards: torch.Tensor, mask: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The critic's loss per answer, ``(Σ_t m_t r̂_t − R)²``: the step rewards of the written tokens
    (``step_rewards`` [batch, T], ``mask`` [batch, T]) must add up to the answer's judgement (``returns`` [batch])."""
    return ((step_rewards * mask).sum(-1) - returns) ** 2


def actor_loss(actor_logits: torch.Tensor, base_logits: torch.Tensor, q: torch.Tensor, mask: torch.Tensor,
               beta: float) -> torch.Tensor:
    """The actor's loss per answer: ``Σ_t m_t [−E_{a~π} q_a + β KL(π ‖ π_LM)]`` at every state of the answer.

    ``actor_logits``, ``base_logits``, ``q``: [batch, T, vocab] (q is the critic's estimate, treated as fixed);
    ``mask``: [batch, T]. The expectation is exact over the vocabulary (no sampled action, no variance)."""
    logp = actor_logits.float().log_softmax(-1)
    base_logp = base_logits.float().log_softmax(-1)
    outside = torch.isinf(base_logp)  # tokens outside the candidate set (−inf logits): p = 0, they add nothing
    logp, base_logp = logp.masked_fill(outside, 0.0), base_logp.masked_fill(outside, 0.0)
    p = logp.exp().masked_fill(outside, 0.0)
    per_state = -(p * q.float()).sum(-1) + beta * (p * (logp - base_logp)).sum(-1)  # [batch, T]
    return (per_state * mask).sum(-1)


def top_k_mask(logits: torch.Tensor, k: int, fill: float = -float("inf")) -> torch.Tensor:
    """``logits`` with every token outside the ``k`` most likely set to ``fill`` (k = 0: unchanged): the candidates
    the actor chooses among."""
    if not k or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, fill)


def optimal_actor_logits(base_logits: torch.Tensor, q: torch.Tensor, beta: float) -> torch.Tensor:
    """The minimiser of one state's actor loss, ``z + q / β`` (softmax(z)·exp(q/β), normalised by the softmax)."""
    return base_logits + q / beta


# -- the model: a frozen LM with two heads -------------------------------------------------------------------


class TokenHead(nn.Module):
    """A head with one output per vocabulary entry, shaped like the LM's own head: ``E (P h) + b``, where ``E`` is
    the LM's (frozen) output embedding, passed in, ``P`` a learned [hidden, hidden] map and ``b`` a learned bias per
    token. It has hidden² + vocab parameters: a free [vocab, hidden] matrix would have vocab × hidden, far more than
    a few thousand scored answers pin down (it fits their sums without finding which tokens earned them).
    Starts at zero."""

    def __init__(self, hidden: int, vocab: int):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))
        nn.init.zeros_(self.proj.weight)

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:  # [..., hidden] -> [..., vocab]
        dtype = self.proj.weight.dtype  # the heads train in float32 whatever the LM's dtype
        return nn.functional.linear(self.proj(hidden.to(dtype)), embedding.to(dtype)) + self.bias


class Sensei(nn.Module):
    """A frozen causal LM with SENSEI's critic (``q``) and actor (``delta``) heads on its last hidden state.

    ``forward`` takes what the generator passes a transformers model and returns logits ``z + strength · δ(h)``,
    with ``z`` cut to the LM's ``top_k`` most likely tokens when ``top_k > 0`` (at every strength, so strength 0 is
    the truncation-only control), and :func:`~alignlab.core.generation.generate` decodes it with the LM's own KV
    cache. Both heads start at zero: an untrained Sensei with ``top_k=0`` is the LM."""

    def __init__(self, lm: nn.Module, *, strength: float = 1.0, top_k: int = 0):
        super().__init__()
        self.lm = lm.requires_grad_(False)
        self.critic = TokenHead(lm.config.hidden_size, lm.config.vocab_size)
        self.actor = TokenHead(lm.config.hidden_size, lm.config.vocab_size)
        self.strength, self.top_k = strength, top_k
        self.config = lm.config
        self.generation_config = getattr(lm, "generation_config", None)

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               keep: int = 0, **lm_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen LM's (last hidden states, logits) at the last ``keep`` positions (0: all), without grad."""
        with torch.no_grad():
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep,
                          output_hidden_states=True, **lm_kwargs)
        hidden = out.hidden_states[-1]
        return (hidden[:, -keep:] if keep else hidden), out.logits

    def step_rewards(self, hidden: torch.Tensor) -> torch.Tensor:
        """The critic: the estimated reward of writing each token at each state, [..., hidden] -> [..., vocab]."""
        return self.critic(hidden, self.lm.get_output_embeddings().weight)

    def steering(self, hidden: torch.Tensor) -> torch.Tensor:
        """The actor: the offset δ(h) it adds to the LM's logits, [..., hidden] -> [..., vocab]."""
        return self.actor(hidden, self.lm.get_output_embeddings().weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None, use_cache: bool = False,
                logits_to_keep: int = 0) -> SimpleNamespace:
        extra = {cache_keyword(self.lm): past_key_values} if past_key_values is not None else {}
        hidden, logits = self.states(input_ids, attention_mask, logits_to_keep, position_ids=position_ids,
                                     use_cache=use_cache, **extra)
        # a finite fill: never sampled (e^−10⁴ is 0 in float32), yet log-prob code that multiplies masked
        # positions (padding) by 0 stays finite
        z = top_k_mask(logits.float(), self.top_k, -1e4)
        return SimpleNamespace(logits=z + self.strength * self.steering(hidden) if self.strength else z)

    def with_strength(self, strength: float, top_k: int | None = None) -> Sensei:
        """This model steered with another strength (and ``top_k``, default its own; shares the LM and the heads).
        ``with_strength(0.0, top_k=0)`` is the LM itself; ``with_strength(0.0)`` the LM cut to its top_k."""
        other = Sensei.__new__(Sensei)
        nn.Module.__init__(other)
        other.lm, other.critic, other.actor = self.lm, self.critic, self.actor
        other.strength, other.top_k = strength, self.top_k if top_k is None else top_k
        other.config, other.generation_config = self.config, self.generation_config
        return other

    def save(self, path: str | Path, *, beta: float) -> None:
        """Write the heads and ``sensei.json`` beside the LM's own files (the LM is saved by the run)."""
        from safetensors.torch import save_file

        from alignlab.core.io import atomic_replace, atomic_write_json

        with atomic_replace(Path(path) / HEADS_FILE) as tmp:
            save_file({f"{name}.{k}": v.detach().contiguous() for name in ("critic", "actor")
                       for k, v in getattr(self, name).state_dict().items()}, str(tmp))
        atomic_write_json(Path(path) / META_FILE, {"strength": self.strength, "top_k": self.top_k, "beta": beta})


def load_sensei(path: str | Path, *, strength: float | None = None) -> Sensei:
    """A trained Sensei from its run directory (the LM, the heads, the strength saved with them)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / HEADS_FILE).exists():
        raise ModelError(f"{path} holds no SENSEI heads ({HEADS_FILE}); train them with `alignlab train sensei`")
    meta = json.loads((path / META_FILE).read_text())
    model = Sensei(load_causal_lm(str(path)).eval(), strength=meta["strength"] if strength is None else strength,
                   top_k=meta.get("top_k", 0))
    weights = load_file(str(path / HEADS_FILE))
    for name in ("critic", "actor"):
        getattr(model, name).load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items()
                                              if k.startswith(name + ".")})
    return model.eval()


# -- the objective on the one training loop ------------------------------------------------------------------


@dataclass
class SenseiObjective:
    """Critic and actor losses of a batch of scored answers (``input_ids``, ``attention_mask``, ``labels`` on the
    answer's tokens, ``reward`` [batch]); one item per answer."""

    beta: float
    top_k: int = 0

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["reward"])

    def __call__(self, model: Sensei, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden, logits = model.states(batch["input_ids"], batch["attention_mask"])
        hidden, logits = hidden[:, :-1], logits[:, :-1].float()  # position t predicts token t + 1
        targets = batch["labels"][:, 1:]
        mask = (targets != IGNORE_INDEX).float()  # [batch, T]
        q = model.step_rewards(hidden).float()  # [batch, T, vocab]: the reward of writing each token here
        taken = q.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
        critic = distributor_loss(taken, mask, batch["reward"])
        candidates = top_k_mask(logits, self.top_k)
        actor = actor_loss(candidates + model.steering(hidden).float(), candidates, q.detach(), mask, self.beta)
        tokens = mask.sum(-1).clamp(min=1)
        return ObjectiveOutput(loss_sum=(critic + actor / tokens).sum(), metrics={
            "critic_loss": critic.detach(), "actor_loss": (actor / tokens).detach(),
            "estimated_reward": (taken * mask).sum(-1).detach(), "reward": batch["reward"]})


@dataclass
class SenseiCollator:
    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = CompletionCollator(self.pad_token_id)(examples)
        batch["reward"] = torch.tensor([e["reward"] for e in examples], dtype=torch.float32)
        return batch


# -- the method ----------------------------------------------------------------------------------------------


@dataclass
class SenseiConfig(RunConfig):
    """SENSEI: sample answers from the shared LM, score them, train a step-reward critic and a steering actor
    (two heads; the LM stays frozen)."""

    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=48))
    """how the training answers are sampled from the shared LM"""
    reward: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    """scores each training answer (on the toy world: reward.source=world)"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, batch_size=16, num_epochs=3.0))
    """the heads' training loop (one item per scored answer)"""
    output: str = "runs/sensei"
    """run directory: the LM (unchanged), sensei_heads.safetensors, sensei.json, the scored answers"""
    samples_per_prompt: int = 4
    """answers sampled per training prompt"""
    beta: float = 0.5
    """KL strength that holds the actor near the LM (the actor's optimum is softmax(z)·exp(q/β))"""
    strength: float = 1.0
    """how strongly generation follows the actor: logits z + strength·δ (0 = the LM cut to top_k; saved,
    changeable at load)"""
    top_k: int = 10
    """the actor chooses among the LM's k most likely tokens at each step (0: all): it cannot push generation onto
    tokens the critic never saw written"""

    def __post_init__(self) -> None:
        if self.samples_per_prompt < 1:
            raise ConfigError(f"samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0 (the actor's KL strength), got {self.beta}")


def scored_answers(lm: nn.Module, tokenizer, prompts: list, source: RewardSource, config: SenseiConfig
                   ) -> list[dict[str, Any]]:
    """``samples_per_prompt`` answers per prompt from ``lm``, each as token ids with its reward."""
    repeated = [p for p in prompts for _ in range(config.samples_per_prompt)]
    out = generate(lm, tokenizer, repeated, config.generation)
    index = [i for i in range(len(prompts)) for _ in range(config.samples_per_prompt)]
    rewards = call_source(source, repeated, out.texts, prompt_index=index).tolist()
    return [{"input_ids": p + c, "labels": [IGNORE_INDEX] * len(p) + c, "reward": r, "text": t}
            for p, c, r, t in zip(out.prompt_ids, out.completion_ids, rewards, out.texts) if c]


def train_sensei(config: SenseiConfig, *, model: nn.Module | None = None, tokenizer=None,
                 reward: RewardSource | Any | None = None) -> TrainResult:
    """Sample and score answers, train the critic and actor heads; save the LM, the heads and the answers in
    ``config.output``. ``reward`` (a reward source or ``fn(prompts, completions)``) replaces ``config.reward``.

    Example::

        >>> cfg = SenseiConfig(reward=RewardSourceConfig(source="world"))              # doctest: +SKIP
        >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "prompts.jsonl"          # doctest: +SKIP
        >>> train_sensei(cfg); load_sensei("runs/sensei")                              # doctest: +SKIP
    """
    from alignlab.core.io import atomic_write_text

    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    records, _ = load_records(config.data, "prompt", seed=config.train.seed)
    if not records:
        raise DataError("the prompt set is empty", source=config.data.path)
    lm = model or load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                                 trust_remote_code=config.model.trust_remote_code)
    if torch.cuda.is_available():
        lm = lm.cuda()
    source = as_source(reward) if reward is not None else build_reward(config.reward)
    examples = scored_answers(lm.eval(), tokenizer, [r.prompt for r in records], source, config)
    sensei = Sensei(lm, strength=config.strength, top_k=config.top_k).to(next(lm.parameters()).device)
    result = train(sensei, SenseiObjective(config.beta, config.top_k), examples, SenseiCollator(tokenizer.pad_token_id),
                   config.train, out)
    rewards = [e["reward"] for e in examples]
    finish_run(lm, tokenizer, result, results={"answers": len(examples),
                                               "mean_sample_reward": sum(rewards) / len(rewards)})
    sensei.save(out, beta=config.beta)
    atomic_write_text(out / "scored_answers.jsonl", "".join(json.dumps({"text": e["text"], "reward": e["reward"]})
                                                            + "\n" for e in examples))
    return result
