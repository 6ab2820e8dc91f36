"""Which alignment method gives the most robust model? Every attack against every model, one table.

    alignlab attack robustness --models base=PATH,sft=runs/sft,dpo=runs/dpo --attacks probe,gcg,redteam-rl \\
        --online ppo,safe-ppo --set reward_model=runs/reward --seed 0 \\
        --output docs/results/attacks/world_robustness_seed0.json --work runs/robustness

Each (model, attack) is one :func:`~alignlab.attacks.pipeline.run_attack_pipeline` run on the same behaviours (by
default the toy world's held-out harmful prompts, whose success the world judge decides exactly); its run
directory goes under ``--work`` and the summaries of all of them into one result file with provenance.

``--online ppo,safe-ppo`` first trains those methods from the model named ``start`` (a small budget, seeded by
``--seed``, on the world's training prompts): PPO against ``reward_model`` (or the world judge's true reward), Safe
PPO with the same reward and the world's safety cost (+1 harmful, toxic or biased; −1 otherwise) under threshold
0. Each trained model is attacked like the given ones, and its training keys go into the result file. RL red
teaming (``redteam-rl``) trains one red LM per attacked model, all starting from ``red_model``, on the world's
training harmful prompts, and attacks the held-out ones.

Example::

    >>> config = RobustnessConfig(models={"sft": "runs/sft"}, output="robustness.json", work="runs/rob")
    >>> config.attacks
    ['probe', 'gcg']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alignlab.attacks.gcg import GCGConfig
from alignlab.attacks.pipeline import AttackRunConfig, run_attack_pipeline
from alignlab.attacks.redteam_rl import RLRedTeamConfig
from alignlab.errors import AttackError

ATTACKS = ("probe", "gcg", "redteam-rl")
ONLINE = ("ppo", "safe-ppo")


def world_gcg() -> GCGConfig:
    """GCG's budget for the world's small models (the defences use the same)."""
    return GCGConfig(num_steps=40, optim_str_init="x x x x x x x x x x", search_width=128, topk=64, early_stop=True)


@dataclass
class RobustnessConfig:
    """Run every attack on every model and write one result file of attack success rates."""

    models: dict[str, str]
    """NAME=PATH of each model to attack (local paths: GCG needs gradients)"""
    output: str
    """the result JSON (with provenance) that the docs' robustness table is generated from"""
    work: str
    """directory for each (model, attack) run's results.json and report.html"""
    attacks: list[str] = field(default_factory=lambda: ["probe", "gcg"])
    """attacks to run: probe, gcg, redteam-rl"""
    online: list[str] = field(default_factory=list)
    """online methods to train from the model named `start` and attack too: ppo, safe-ppo"""
    start: str = "sft"
    """the name (in models) of the model the online methods start from"""
    reward_model: str | None = None
    """the reward model of PPO and Safe PPO (null: the world judge's true reward; Safe PPO: its helpfulness)"""
    online_steps: int = 100
    """rollout steps of each online method (16 prompts per step)"""
    online_lr: float = 1e-5
    """learning rate of the online methods"""
    rl: RLRedTeamConfig = field(default_factory=lambda: RLRedTeamConfig(train_behaviors="world-train"))
    """RL red teaming's settings (attack redteam-rl)"""
    red_model: str | None = "base"
    """the red LM every redteam-rl attack starts from: a name in models or a path (null: the attacked model)"""
    behaviors: str = "world"
    """behaviours (a goal/target CSV, or 'world' for the toy world's held-out harmful prompts)"""
    limit: int | None = None
    """attack only the first N behaviours with probes (null: all)"""
    gcg_limit: int | None = 20
    """attack only the first N behaviours with GCG (one optimisation each; null: as many as limit)"""
    gcg: GCGConfig = field(default_factory=world_gcg)
    """GCG settings for every model (a smaller budget than the paper's: the world's models are small)"""
    max_new_tokens: int = 32
    """tokens of each attacked response"""
    seed: int = 0
    """seed of GCG's candidate sampler"""

    def __post_init__(self) -> None:
        if not self.models:
            raise AttackError("robustness: name at least one model (--models NAME=PATH)")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise AttackError(f"robustness: unknown attack(s) {', '.join(unknown)} (attacks: {', '.join(ATTACKS)})")
        unknown = [m for m in self.online if m not in ONLINE]
        if unknown:
            raise AttackError(f"robustness: cannot train {', '.join(unknown)} (online: {', '.join(ONLINE)})")
        red = self.red_model
        if "redteam-rl" in self.attacks and red is not None and red not in self.models and not Path(red).exists():
            raise AttackError(f"robustness: red_model='{red}' is neither one of the models ({', '.join(self.models)}) "
                              "nor a local model")
        if self.online and self.start not in self.models:
            raise AttackError(f"robustness: start='{self.start}' is not one of the models ({', '.join(self.models)})")


def run_robustness(config: RobustnessConfig) -> dict[str, Any]:
    """Train the online models, attack every model with every attack; write ``config.output``; returns
    ``{model: {attack: summary}}``."""
    from alignlab.core.provenance import write_result

    models = dict(config.models)
    trained = {}
    for method in config.online:
        path = Path(config.work) / f"{method}-seed{config.seed}"
        trained[method] = train_online(method, models[config.start], path, config)
        models[method] = str(path)
    red_model = models.get(config.red_model, config.red_model) if config.red_model else None
    table: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        for attack in config.attacks:
            limit = config.gcg_limit if attack == "gcg" and config.gcg_limit is not None else config.limit
            run = AttackRunConfig(model=path, behaviors=config.behaviors, output=str(Path(config.work) / f"{name}-{attack}"),
                                  attack=attack, limit=limit, gcg=replace(config.gcg, seed=config.seed),
                                  rl=replace(config.rl, red_model=red_model), max_new_tokens=config.max_new_tokens,
                                  seed=config.seed)
            result = run_attack_pipeline(run)["results"]
            entry = {"summary": result["summary"], "n_behaviors": result["n_behaviors"],
                     "mean_best_loss": mean_best_loss(result["attempts"]), "diversity": result["diversity"]}
            if "red_team" in result:
                entry["red_team"] = {k: v for k, v in result["red_team"].items() if k != "found_examples"}
            table.setdefault(name, {})[attack] = entry
            print(f"{name} / {attack}: " + ", ".join(f"{v}: {r['world']['asr']:.3f}" for v, r in
                                                     result["summary"].items() if "world" in r), flush=True)
    write_result(config.output, {"models": table, "trained": trained}, seed=config.seed, config=config)
    return table


def online_keys(method: str, start: str, output: Path, config: RobustnessConfig) -> list[str]:
    """``alignlab train METHOD`` keys for the robustness table's PPO / Safe PPO (the world's online bench's settings)."""
    from alignlab.world.build import build_world

    paths = build_world(None, seed=0, verbose=False)  # the world's training prompts (small world seed 0)
    if config.reward_model:
        reward = [f"reward.model={config.reward_model}"]
    elif method == "ppo":
        reward = ["reward.source=world", "reward.world_dimension=true_reward"]
    else:
        reward = ["reward.source=world", "reward.world_dimension=helpfulness"]
    cost = ["cost.source=world", "cost.world_dimension=cost"] if method == "safe-ppo" else []
    return [f"model.name_or_path={start}", f"data.path={paths.datasets['prompts_train']}", f"output={output}",
            "train.overwrite=true", f"train.max_steps={config.online_steps}", f"train.lr={config.online_lr}",
            "train.scheduler=constant", f"train.seed={config.seed}", "train.progress=false", "prompts_per_step=16",
            "minibatch_size=8", "generation.max_new_tokens=48", *reward, *cost]


def train_online(method: str, start: str, output: Path, config: RobustnessConfig) -> dict[str, Any]:
    """Train ``method`` from ``start`` into ``output``; returns its keys and its last steps' mean reward (and cost)."""
    from alignlab.config import load_config
    from alignlab.registry import get_method

    keys = online_keys(method, start, output, config)
    config_cls, train = get_method(method)
    history = train(load_config(config_cls, None, keys)).history
    tail = history[-10:]
    return {"keys": keys, **{f"final_{k}": sum(r[k] for r in tail) / len(tail) for k in ("reward", "cost", "kl")
                             if all(k in r for r in tail)}}


def mean_best_loss(attempts: list[dict[str, Any]]) -> float | None:
    """The mean over GCG attempts of the best target loss found (None when the run had no GCG attempts)."""
    losses = [a["loss"] for a in attempts if "loss" in a]
    return sum(losses) / len(losses) if losses else None
