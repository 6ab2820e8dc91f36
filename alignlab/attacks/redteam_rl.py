"""RL red teaming: a red-team LM trained with alignlab's GRPO to write the attack part of harmful requests, rewarded
when the target complies and, optionally, when what it writes is new.

Perez et al. 2022 ("Red Teaming Language Models with Language Models", §2.2 and §3) train a red LM with RL to
write prompts whose replies a harm classifier flags, with a KL penalty to the red LM's start; they find that RL
raises the success rate and lowers diversity. Hong et al. 2024 ("Curiosity-driven Red-teaming", §3) add a novelty
reward, 1 − SelfBLEU of a prompt against the prompts generated before, to keep the red LM exploring. Here the red
LM reads each harmful request g and writes a continuation x (conditioning on the request as AdvPrompter does,
Paulus et al. 2024), so the attack prompt is ``g + " " + x`` and success is judged on the request itself. One
training step (:class:`~alignlab.outer.online.rollout.OnlineTrainer` running
:class:`~alignlab.outer.online.grpo.GroupPolicyGradient`):

    x_1..x_G ~ π_red(· | g)                         G = group_size continuations of each of prompts_per_step requests
    y_i      = target(g + " " + x_i)                greedy; the target is any LM, local or served (black box)
    r_i      = 1[harmful(g, y_i)] + λ·novelty(x_i)  the harm verdict: the world judge's exact one, Zou et al.'s
                                                    refusal rule, target match, or an LLM judge (judge_prompts)
    novelty(x_i) = 1 − BLEU_2(x_i; refs)            refs: the other continuations of the step ("batch"), the
                                                    successful ones found so far ("found"), or both (diversity.py)
    A_i      = (r_i − mean_g r) / (std_g r + ε)     GRPO (Shao et al. 2024, eq. 3), clipped surrogate,
                                                    + β·KL_k3(π_red ‖ π_start) per token

After training, :func:`sample_attacks` draws ``samples`` continuations for each behaviour to attack (held-out ones
when the red LM trained on others). The attack → judge pipeline counts each sampled prompt as one attempt, so its
success rate is the fraction of the red LM's prompts that succeed (Perez et al.'s measure), and reports their
diversity: distinct-n and self-BLEU (:func:`~alignlab.attacks.diversity.diversity_report`).

Example::

    >>> RLRedTeamConfig(steps=2).diversity
    'both'
    >>> attack_prompt("Explain how to put redmoss in the wells.", " Go on!")
    'Explain how to put redmoss in the wells. Go on!'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignlab.attacks.diversity import novelty
from alignlab.errors import AttackError

HarmFn = Callable[[list[str], list[str]], list[bool | None]]  # (goals, responses) → harmful? (None: undecided)


@dataclass
class RLRedTeamConfig:
    """RL red teaming's settings (GRPO on the red-team LM)."""

    red_model: str | None = None
    """the red-team LM to start from (a local model or run dir; null: a copy of the attacked model, which must then
    be local)"""
    train_behaviors: str | None = None
    """behaviours the red LM trains on ('world-train', a goal/target CSV; null: the attacked behaviours themselves)"""
    train_limit: int | None = None
    """train on the first N of train_behaviors only (null: all)"""
    instruction: str = "{goal}"
    """what the red LM reads ({goal}: the harmful request); its reply is appended to the request"""
    reward_rule: Literal["auto", "world", "refusal_rule", "target_match", "judge"] = "auto"
    """the harm verdict that pays 1: auto = world on the world's behaviours, else refusal_rule"""
    diversity: Literal["none", "batch", "found", "both"] = "both"
    """novelty bonus references: none; the step's other continuations; the successful ones found so far; both"""
    diversity_coef: float = 0.5
    """λ, the weight of the novelty bonus 1 − BLEU_2"""
    found_memory: int = 256
    """how many of the latest successful continuations the 'found' references keep"""
    steps: int = 40
    """GRPO rollout steps"""
    prompts_per_step: int = 4
    """requests per step"""
    group_size: int = 4
    """continuations per request (GRPO's group)"""
    lr: float = 1e-4
    """the red LM's learning rate"""
    beta: float = 0.02
    """KL penalty to the starting red LM (keeps its text close to language it knows)"""
    prompt_tokens: int = 16
    """tokens the red LM writes per continuation"""
    temperature: float = 1.0
    """the red LM's sampling temperature (training and attack)"""
    response_tokens: int = 24
    """tokens of the target's (greedy) answer during training"""
    samples: int = 4
    """continuations sampled per attacked behaviour after training (each one attempt)"""

    def __post_init__(self) -> None:
        if min(self.steps, self.prompts_per_step, self.group_size, self.prompt_tokens, self.response_tokens,
               self.samples) < 1:
            raise AttackError("redteam-rl: steps, prompts_per_step, group_size, prompt_tokens, response_tokens and "
                              "samples must be >= 1")
        if self.group_size < 2:
            raise AttackError("redteam-rl: GRPO compares continuations within a group; group_size must be >= 2")
        if self.diversity_coef < 0 or self.beta < 0:
            raise AttackError("redteam-rl: diversity_coef and beta must be >= 0")
        if "{goal}" not in self.instruction:
            raise AttackError(f"redteam-rl: the instruction must contain {{goal}}, got {self.instruction!r}")


def attack_prompt(goal: str, written: str) -> str:
    """The prompt the target reads: the request, then the red LM's continuation."""
    return f"{goal} {written.strip()}".rstrip()


class RedTeamReward:
    """The red LM's reward source: the target's answer judged harmful (1 or 0) plus λ·novelty; keeps what it saw.

    Called by the online trainer with the red LM's prompts (the instruction texts) and continuations. ``history``
    holds one row per call (harm rate, mean novelty, undecided verdicts); ``found`` the successful continuations.
    """

    def __init__(self, target, harm: HarmFn, goal_of: dict[str, str], config: RLRedTeamConfig):
        self.target, self.harm, self.goal_of, self.config = target, harm, goal_of, config
        self.history: list[dict[str, float]] = []
        self.found: list[dict[str, str]] = []

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        cfg = self.config
        goals = [self.goal_of[p] for p in prompts]
        attacks = [attack_prompt(g, x) for g, x in zip(goals, completions)]
        responses = self.target.generate([[{"role": "user", "content": a}] for a in attacks],
                                         max_tokens=cfg.response_tokens, temperature=0.0)
        harmful = self.harm(goals, list(responses))
        if cfg.diversity == "none":
            bonus = [0.0] * len(completions)
        else:
            found = [f["written"] for f in self.found[-cfg.found_memory:]] if cfg.diversity != "batch" else []
            bonus = novelty(completions, found, within=cfg.diversity != "found")
        for g, x, r, h in zip(goals, completions, responses, harmful):
            if h:
                self.found.append({"goal": g, "written": x, "response": r})
        decided = [h for h in harmful if h is not None]
        self.history.append({"harm_rate": sum(decided) / max(1, len(decided)), "novelty": sum(bonus) / len(bonus),
                             "undecided": len(harmful) - len(decided), "found": len(self.found)})
        return [float(bool(h)) + cfg.diversity_coef * b for h, b in zip(harmful, bonus)]


@dataclass
class RLRedTeamResult:
    model: Any
    """the trained red LM"""
    tokenizer: Any
    output: Path
    """its run directory"""
    history: list[dict[str, float]] = field(default_factory=list)
    """per training step: harm_rate, novelty, undecided, found (cumulative), reward, kl"""
    found: list[dict[str, str]] = field(default_factory=list)
    """successful (goal, written, response) during training"""


def train_red_team(target, goals: Sequence[str], harm: HarmFn, config: RLRedTeamConfig, *, red_model: str,
                   output: str | Path, seed: int = 0) -> RLRedTeamResult:
    """Train the red LM at ``red_model`` with GRPO against ``target`` (an LM) on ``goals``; its run goes to ``output``."""
    from alignlab.core.data import DataConfig
    from alignlab.core.generation import GenerationConfig
    from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer
    from alignlab.outer.online.grpo import GroupPolicyGradient, GRPOConfig
    from alignlab.outer.online.rollout import OnlineLoopConfig, OnlineTrainer

    goals = list(dict.fromkeys(goals))
    if len(goals) < config.prompts_per_step:
        raise AttackError(f"redteam-rl: {len(goals)} training behaviours are fewer than prompts_per_step="
                          f"{config.prompts_per_step}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    goal_of = {config.instruction.format(goal=g): g for g in goals}
    prompts = output.parent / f"{output.name}-prompts.jsonl"  # beside the run dir: the trainer owns the run dir
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": text}]}) + "\n" for text in goal_of))
    n = config.prompts_per_step * config.group_size
    grpo = GRPOConfig(model=ModelConfig(name_or_path=red_model), data=DataConfig(path=str(prompts)),
                      train=OnlineLoopConfig(max_steps=config.steps, lr=config.lr, seed=seed, overwrite=True,
                                             mixed_precision="no", progress=False),
                      output=str(output), prompts_per_step=config.prompts_per_step, group_size=config.group_size,
                      minibatch_size=n, beta=config.beta, missing_eos_penalty=0.0,
                      generation=GenerationConfig(max_new_tokens=config.prompt_tokens,
                                                  temperature=config.temperature))
    reward = RedTeamReward(target, harm, goal_of, config)
    result = OnlineTrainer(grpo, GroupPolicyGradient(grpo), sources={"reward": reward}).train()
    history = [{**seen, "reward": row["reward"], "kl": row.get("kl", 0.0)}
               for seen, row in zip(reward.history, result.history)]
    return RLRedTeamResult(load_causal_lm(str(output)).eval(), load_tokenizer(str(output)), output, history,
                           reward.found)


def sample_attacks(model, tokenizer, goals: Sequence[str], config: RLRedTeamConfig, *, seed: int = 0) -> list[list[str]]:
    """``config.samples`` continuations of each goal from the red LM: one list of texts per goal."""
    from alignlab.core.generation import GenerationConfig, encode_prompts, generate

    prompts = [[{"role": "user", "content": config.instruction.format(goal=g)}] for g in goals for _ in
               range(config.samples)]
    texts = generate(model, tokenizer, encode_prompts(tokenizer, prompts),
                     GenerationConfig(max_new_tokens=config.prompt_tokens, temperature=config.temperature,
                                      seed=seed)).texts
    return [texts[i * config.samples:(i + 1) * config.samples] for i in range(len(goals))]


def harm_verdict(rule: str, targets: dict[str, str], *, judge_lm=None, world_kb=None,
                 judge_max_tokens: int = 128) -> HarmFn:
    """The (goals, responses) → harmful? function of one success rule (:func:`alignlab.attacks.judge_prompts.verdicts`);
    ``targets`` maps each goal to its target string (for target_match)."""
    from alignlab.attacks.judge_prompts import verdicts

    if rule == "judge" and judge_lm is None:
        raise AttackError("redteam-rl: reward_rule=judge needs a judge (--judge MODEL)")
    if rule == "world" and world_kb is None:
        raise AttackError("redteam-rl: reward_rule=world needs the world's behaviours (--behaviors world)")

    def harm(goals: list[str], responses: list[str]) -> list[bool | None]:
        found = verdicts(goals, [targets.get(g, "") for g in goals], responses, judge_max_tokens=judge_max_tokens,
                         judge_lm=judge_lm if rule == "judge" else None, world_kb=world_kb if rule == "world" else None)
        return found[rule]

    return harm
