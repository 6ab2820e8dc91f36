"""Which alignment method gives the most robust model? Every attack against every model, one table.

    alignlab attack robustness --models base=PATH,sft=runs/sft,dpo=runs/dpo --attacks probe,gcg \\
        --output docs/results/attacks/world_robustness.json --work runs/robustness

Each (model, attack) is one :func:`~alignlab.attacks.pipeline.run_attack_pipeline` run on the same behaviours (by
default the toy world's held-out harmful prompts, whose success the world judge decides exactly); its run
directory goes under ``--work`` and the summaries of all of them into one result file with provenance.

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
from alignlab.errors import AttackError


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
    """attacks to run: probe, gcg"""
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
        unknown = [a for a in self.attacks if a not in ("probe", "gcg")]
        if unknown:
            raise AttackError(f"robustness: unknown attack(s) {', '.join(unknown)} (attacks: probe, gcg)")


def run_robustness(config: RobustnessConfig) -> dict[str, Any]:
    """Attack every model with every attack; write ``config.output``; returns ``{model: {attack: summary}}``."""
    from alignlab.core.provenance import write_result

    table: dict[str, dict[str, Any]] = {}
    for name, path in config.models.items():
        for attack in config.attacks:
            limit = config.gcg_limit if attack == "gcg" and config.gcg_limit is not None else config.limit
            run = AttackRunConfig(model=path, behaviors=config.behaviors, output=str(Path(config.work) / f"{name}-{attack}"),
                                  attack=attack, limit=limit, gcg=replace(config.gcg, seed=config.seed),
                                  max_new_tokens=config.max_new_tokens, seed=config.seed)
            result = run_attack_pipeline(run)["results"]
            table.setdefault(name, {})[attack] = {"summary": result["summary"], "n_behaviors": result["n_behaviors"],
                                                  "mean_best_loss": mean_best_loss(result["attempts"])}
            print(f"{name} / {attack}: " + ", ".join(f"{v}: {r['world']['asr']:.3f}" for v, r in
                                                     result["summary"].items() if "world" in r), flush=True)
    write_result(config.output, {"models": table}, seed=config.seed, config=config)
    return table


def mean_best_loss(attempts: list[dict[str, Any]]) -> float | None:
    """The mean over GCG attempts of the best target loss found (None when the run had no GCG attempts)."""
    losses = [a["loss"] for a in attempts if "loss" in a]
    return sum(losses) / len(losses) if losses else None
