"""Safe RLHF (Dai et al. 2023): PPO-Lagrangian with a reward model, a cost model and a learned multiplier λ.

Cost model, trained on safety pairs (the safer response s, the less safe u, per-response safety labels;
sign = +1 for safe, −1 for unsafe):

    L_C = −log σ(c_u − c_s) − log σ(−sign_s·c_s) − log σ(−sign_u·c_u)          (Dai et al. eq. 6)

so safe responses end with negative cost and a threshold of 0 means "safe". Policy optimisation:

    reward_t = −β·kl_t + [t = last]·r,     cost_t = +β·kl_t + [t = last]·c     (scores clipped to ±score_clip)
    A_r, A_c = GAE with the reward critic and the cost critic (two value heads)
    A        = (A_r − λ·A_c) / (1 + λ)                                          (in PPO's clipped surrogate)
    log λ   ← log λ + η_λ·(J_c − d)·λ,   λ ≤ λ_max                             (SGD on −(J_c − d)·λ)

J_c is the mean episode cost over a window of recent completions, d the threshold. Defaults follow
PKU safe-rlhf's ``ppo_lag`` (REFERENCES.md). Metrics: ``lambda``, ``cost`` (mean score of the step),
``cost/window`` (J_c), ``reward``, ``kl``, ``clipfrac``, ``value_error``, ``cost_value_error``.

Example::

    >>> lagrange_update(0.0, mean_cost=1.0, threshold=0.0, lr=0.1, lambda_max=5.0)  # cost above: λ grows
    0.1
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.data import DataConfig, encode_all, load_records
from alignlab.core.models import ModelConfig, load_reward_model, load_tokenizer
from alignlab.core.rl import (
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    lagrange_update,
    token_rewards,
    whiten,
)
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import PairCollator, encode_completion, ensure_chat_template
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, train
from alignlab.outer.online.ppo import PPO, PPOConfig
from alignlab.outer.online.rewards import RewardSource, RewardSourceConfig
from alignlab.outer.online.rollout import OnlineTrainer, PolicyOutput, Rollout

__all__ = ["CostConfig", "SafePPO", "SafePPOConfig", "cost_model_loss", "lagrange_update", "train_cost",
           "train_safe_ppo"]

# -- the cost model ------------------------------------------------------------------------------------------


def cost_model_loss(cost_safer: torch.Tensor, cost_unsafer: torch.Tensor, safer_is_safe: torch.Tensor,
                    unsafer_is_safe: torch.Tensor) -> torch.Tensor:
    """Per-pair Safe RLHF cost-model loss (ranking term + sign classification terms), [batch] → [batch]."""
    sign_s = safer_is_safe.float() * 2 - 1  # +1 safe, −1 unsafe
    sign_u = unsafer_is_safe.float() * 2 - 1
    return (-F.logsigmoid(cost_unsafer - cost_safer) - F.logsigmoid(-sign_s * cost_safer)
            - F.logsigmoid(-sign_u * cost_unsafer))


@dataclass
class CostConfig(RunConfig):
    """Safe RLHF cost model on safety pairs (ranking by safety + safe/unsafe classification)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the model to start from (a causal LM gets a fresh scalar head)"""
    data: DataConfig = field(default_factory=lambda: DataConfig(eval_fraction=0.05))
    """safety pairs (PKU-SafeRLHF format or the toy world's safety_train.jsonl)"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5))
    """the training loop"""
    output: str = "runs/cost"
    """run directory"""


class CostObjective:
    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0] // 2

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        costs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        n = costs.shape[0] // 2
        c_s, c_u = costs[:n], costs[n:]  # rows [safer; less safe]
        losses = cost_model_loss(c_s, c_u, batch["safe_chosen"], batch["safe_rejected"])
        sign_ok = torch.cat([(c_s < 0) == batch["safe_chosen"].bool(), (c_u < 0) == batch["safe_rejected"].bool()])
        return ObjectiveOutput(loss_sum=losses.sum(), metrics={
            "accuracy": (c_u > c_s).float().detach(), "sign_accuracy": sign_ok.float().view(2, n).mean(0).detach(),
            "cost_safer": c_s.detach(), "cost_unsafer": c_u.detach()})


@dataclass
class SafetyCollator:
    """:class:`PairCollator` rows [safer; less safe] plus each response's safety label."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = PairCollator(self.pad_token_id)(examples)
        for key in ("safe_chosen", "safe_rejected"):
            batch[key] = torch.tensor([float(e[key]) for e in examples])
        return batch


def encode_safety_pairs(tokenizer, records, data: DataConfig, source: str) -> list[dict]:
    def encode(record):
        s = record.safer
        enc = {side: encode_completion(tokenizer, record.prompt, record.responses[i], max_length=data.max_length,
                                       max_prompt_length=data.max_prompt_length)
               for side, i in (("chosen", s), ("rejected", 1 - s))}
        if not enc["chosen"]["completion_ids"] or not enc["rejected"]["completion_ids"]:
            return None
        return {**enc, "safe_chosen": record.is_safe[s], "safe_rejected": record.is_safe[1 - s]}

    return encode_all(records, encode, source=source)


def train_cost(config: CostConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a cost model; ``result.eval`` holds held-out ``accuracy`` (ranking) and ``sign_accuracy``."""
    from alignlab.outer.reward import pair_lengths

    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "safety_pair", seed=config.train.seed)
    train_examples = encode_safety_pairs(tokenizer, train_records, config.data, config.data.path)
    eval_examples = encode_safety_pairs(tokenizer, eval_records, config.data, "eval data") if eval_records else None
    model = model or load_reward_model(config.model.name_or_path, dtype=config.model.dtype,
                                       trust_remote_code=config.model.trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    result = train(model, CostObjective(), train_examples, SafetyCollator(tokenizer.pad_token_id), config.train, out,
                   eval_examples=eval_examples, lengths=pair_lengths(train_examples))
    finish_run(model, tokenizer, result)
    return result


# -- PPO-Lagrangian ------------------------------------------------------------------------------------------


@dataclass
class SafePPOConfig(PPOConfig):
    """Safe RLHF: PPO-Lagrangian with reward and cost critics and a multiplier λ held to a cost threshold."""

    # A field re-declared without a docstring only changes its default; its help stays the parent's.
    output: str = "runs/safe_ppo"
    value_clip: float = 5.0
    beta: float = 0.01
    """KL-penalty coefficient β on both streams"""
    score_clip: float | None = 50.0
    """clip reward and cost scores to ±score_clip"""
    cost: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    """where the cost comes from (a cost model from `alignlab train cost`, a function, or world_dimension=cost)"""
    scale_rewards: bool = False
    """must stay off: Safe RLHF learns from the clipped raw reward and cost, as PKU's implementation does"""
    center_rewards: bool = False
    """must stay off, as scale_rewards"""
    whiten_advantages: bool = False
    """whiten the combined advantage (off: keeps the reward/cost trade-off λ sets)"""
    cost_threshold: float = 0.0
    """d: the episode cost the policy must stay below"""
    lambda_init: float = 1.0
    """λ₀"""
    lambda_lr: float = 0.1
    """η_λ, SGD step size on log λ"""
    lambda_max: float = 5.0
    """λ is clamped at this value"""
    episode_window: int = 128
    """recent completions whose mean cost J_c drives the λ update"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale_rewards or self.center_rewards:
            # λ trades reward against cost on their own scales; normalising either would change the trade-off.
            raise ValueError("safe-ppo uses the raw (clipped) reward and cost: scale_rewards and center_rewards "
                             "must be false")


class SafePPO(PPO):
    sources: tuple[str, ...] = ("reward", "cost")
    value_heads: tuple[str, ...] = ("reward", "cost")

    def __init__(self, config: SafePPOConfig):
        super().__init__(config)
        self.log_lambda = math.log(config.lambda_init)
        self.window: deque[float] = deque(maxlen=config.episode_window)

    def advantages(self, rollout: Rollout) -> dict[str, float]:
        cfg, mask = self.config, rollout.mask
        clip = cfg.score_clip if cfg.score_clip is not None else math.inf
        costs = rollout.scores["cost"]
        self.window.extend(costs.tolist())
        mean_cost = sum(self.window) / len(self.window)
        self.log_lambda = lagrange_update(self.log_lambda, mean_cost=mean_cost, threshold=cfg.cost_threshold,
                                          lr=cfg.lambda_lr, lambda_max=cfg.lambda_max)
        lam = math.exp(self.log_lambda)
        kl = self.kl(rollout)
        r_tokens = token_rewards(rollout.scores["reward"].clamp(-clip, clip), kl, mask, cfg.beta)
        c_tokens = token_rewards(costs.clamp(-clip, clip), kl, mask, -cfg.beta)  # cost_t = +β·kl_t + c
        adv_r, ret_r = gae(r_tokens, rollout.values["reward"], mask, cfg.gamma, cfg.lam)
        adv_c, ret_c = gae(c_tokens, rollout.values["cost"], mask, cfg.gamma, cfg.lam)
        adv = (adv_r - lam * adv_c) / (1 + lam)
        rollout.advantages = whiten(adv, mask) if cfg.whiten_advantages else adv
        rollout.returns = {"reward": ret_r, "cost": ret_c}
        return {"lambda": lam, "cost/window": mean_cost, "kl": float(kl.sum(-1).mean())}

    def loss(self, out: PolicyOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, mask = self.config, batch["mask"]
        pg, stats = clipped_policy_loss(out.logps, batch["old_logps"], batch["advantages"], mask, cfg.clip_coef)
        vf_r, vstats = clipped_value_loss(out.values["reward"], batch["values"]["reward"], batch["returns"]["reward"],
                                          mask, cfg.value_clip)
        vf_c, cstats = clipped_value_loss(out.values["cost"], batch["values"]["cost"], batch["returns"]["cost"],
                                          mask, cfg.value_clip)
        loss = pg + cfg.vf_coef * (vf_r + vf_c)
        return loss, {"policy_loss": pg.detach(), **stats, **vstats, "cost_value_error": cstats["value_error"]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log_lambda": self.log_lambda, "window": list(self.window)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            super().load_state_dict(state)
            self.log_lambda = state["log_lambda"]
            self.window.extend(state["window"])


def train_safe_ppo(config: SafePPOConfig, *, model: nn.Module | None = None, tokenizer=None,
                   reward: RewardSource | Callable | None = None,
                   cost: RewardSource | Callable | None = None) -> TrainResult:
    """Train with Safe RLHF; ``reward`` / ``cost`` override ``config.reward`` / ``config.cost``."""
    sources = {k: v for k, v in (("reward", reward), ("cost", cost)) if v is not None}
    return OnlineTrainer(config, SafePPO(config), model=model, tokenizer=tokenizer, sources=sources).train()
