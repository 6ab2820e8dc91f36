"""``alignlab bench ird --world``: inverse reward design on the toy world, where the proxy's blind spot is known.

Situations are the world's prompts; the behaviour in a situation is the choice of one answer among the world
persona's candidates (the aligned answer and one answer per fault its family allows, in a seeded random order).
Features are the judge's dimensions (helpfulness, honesty, harmlessness, toxicity, bias); the true reward's
weights are the judge's (its verbosity term is 0 for every answer the persona writes, all under 30 words, so
the linear reward over these features is the judge's true reward exactly). The designer built the proxy in a training environment without the ``groups`` family,
where no answer ever stereotypes, so the proxy's bias weight is 0: in training it is as good as the true
reward. In the test environment (every family, held-out prompts) three planners choose answers:

- the proxy: the best candidate under the proxy weights (indifferent between an answer and its stereotyped twin);
- IRD: risk-averse under the posterior over true weights given the proxy (:mod:`alignlab.outer.ird`);
- the truth: the best candidate under the true weights (the ceiling).

Reported over seeds (prior samples, candidate order): each planner's mean true reward and bias rate on the test
prompts, and on the groups family alone, mean ± standard error, in ``results.json`` with command, commit, seed
and machine.

Example::

    >>> from alignlab.experiments.ird_bench import IRDBenchConfig, bench_ird
    >>> result = bench_ird(IRDBenchConfig(world=True))   # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import mean, stdev
from typing import Any

import torch

from alignlab.outer.ird import best_candidates, ird_posterior, risk_averse_choice, train_behaviour

FEATURES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias")


@dataclass
class IRDBenchConfig:
    """Inverse reward design on the world: a proxy blind to one feature, planners compared on held-out prompts."""

    world: bool = False
    """benchmark on the toy world (required)"""
    output: str = "runs/bench-ird"
    """directory for results.json"""
    world_seed: int = 0
    """world seed"""
    blind_families: list[str] = field(default_factory=lambda: ["groups"])
    """prompt families absent from the designer's training environment"""
    blind_features: list[str] = field(default_factory=lambda: ["bias"])
    """features the designer never saw vary, so the proxy gives them weight 0"""
    prior_samples: int = 4000
    """samples of the prior N(0, prior_scale² I) over the true weights"""
    prior_scale: float = 2.0
    """standard deviation of the prior over each weight"""
    beta: float = 5.0
    """the designer's rationality β in P(w̃ | w*) ∝ exp(β w*ᵀ φ̄(ξ_w̃))"""
    quantile: float = 0.05
    """the posterior quantile the risk-averse planner maximises"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """seeds (prior samples, candidate order and answers written)"""


def candidate_features(prompts: list, rng: random.Random) -> dict[str, torch.Tensor]:
    """Per family: [prompts, candidates, features] of the aligned answer and each one-fault answer, shuffled."""
    from alignlab.world.families import FAMILIES
    from alignlab.world.judge import score
    from alignlab.world.persona import write_response

    groups: dict[str, list] = {}
    for prompt in prompts:
        faults = [set(), *({f} for f in FAMILIES[prompt.family].faults)]
        rng.shuffle(faults)
        answers = [write_response(prompt, f, rng) for f in faults]
        groups.setdefault(prompt.family, []).append([[float(getattr(score(prompt, a), d)) for d in FEATURES]
                                                     for a in answers])
    return {family: torch.tensor(rows) for family, rows in groups.items()}


def plan(features: dict[str, torch.Tensor], choose) -> dict[str, torch.Tensor]:
    """The features of the chosen candidate per prompt, by family; ``choose(group) -> indices``."""
    return {family: group[torch.arange(group.shape[0]), choose(group)] for family, group in features.items()}


def bench_ird(config: IRDBenchConfig) -> dict[str, Any]:
    from alignlab.core.provenance import write_result
    from alignlab.world.datasets import World
    from alignlab.world.judge import W_BIAS, W_HARMLESS, W_HELPFUL, W_HONEST, W_TOXIC

    true_weights = torch.tensor([W_HELPFUL, W_HONEST, W_HARMLESS, -W_TOXIC, -W_BIAS])
    proxy = true_weights.clone()
    for feature in config.blind_features:
        proxy[FEATURES.index(feature)] = 0.0
    world = World(config.world_seed, "small")
    runs = []
    for seed in config.seeds:
        rng = random.Random(seed)
        train = [p for p in world.sample_prompts(400, rng) if p.family not in config.blind_families]
        train_features = list(candidate_features(train, rng).values())
        test_features = candidate_features(world.eval_prompts(), rng)
        samples = config.prior_scale * torch.randn(config.prior_samples, len(FEATURES),
                                                   generator=torch.Generator().manual_seed(seed))
        weights = ird_posterior(train_features, proxy, samples, beta=config.beta)
        baseline = train_behaviour(train_features, proxy)
        planners = {
            "proxy": lambda g: best_candidates(g, proxy)[0],
            "ird": lambda g, s=samples, w=weights, b=baseline: risk_averse_choice(g, s, w, b, quantile=config.quantile),
            "true": lambda g: best_candidates(g, true_weights)[0],
        }
        run: dict[str, Any] = {"seed": seed,
                               "posterior_mean": (weights[:, None] * samples).sum(0).tolist(),
                               "effective_samples": float(1.0 / (weights ** 2).sum())}
        for name, choose in planners.items():
            chosen = plan(test_features, choose)
            everything = torch.cat(list(chosen.values()))
            run[name] = {"true_reward": float((everything @ true_weights).mean()),
                         "bias_rate": float(everything[:, FEATURES.index("bias")].mean())}
            for family in config.blind_families:
                if family in chosen:
                    run[name][f"{family}_true_reward"] = float((chosen[family] @ true_weights).mean())
        runs.append(run)
    summary = {}
    for name in ("proxy", "ird", "true"):
        summary[name] = {}
        for key in runs[0][name]:
            values = [r[name][key] for r in runs]
            summary[name][key] = {"mean": mean(values),
                                  "se": stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None}
    result = {"summary": summary, "runs": runs, "features": list(FEATURES), "true_weights": true_weights.tolist(),
              "proxy_weights": proxy.tolist()}
    write_result(f"{config.output}/results.json", result, seed=config.seeds, config=config)
    return result
