"""Relaxed adversarial training (Hubinger 2019): an adversary proposes regions of input space, not inputs.

A policy maps binary observations x ∈ {0, 1}^``bits`` to one of three actions. The acceptable policy takes
action x₀ (0 or 1); action 2 is unacceptable. The policy starts out with a hidden trigger: trained on data where
every observation with the ``trigger`` bits all on is labelled 2 (a backdoor, or a deceptive policy waiting
for its cue). Ordinary observations are sparse (each bit on with probability ``density``) and never contain the
trigger, so training on them alone leaves it in place. Two ways to find and remove the unacceptable behaviour, for ``rounds`` rounds each:

- **ordinary adversarial training**: the adversary searches concrete inputs (greedy bit flips from random
  observations, ``search_steps`` flips each) for ones where the policy takes action 2, and the policy is
  trained to take the acceptable action on those it finds;
- **relaxed adversarial training**: the adversary proposes pseudo-inputs — descriptions of regions, "these
  ``region_bits`` bits on, the rest anything" — and the overseer checks the policy over the whole region with
  interval bound propagation (Gowal et al. 2018): an upper bound, over every input in the region, of how far
  action 2's logit exceeds the acceptable actions'. The policy is penalised by that bound on the regions where
  it is highest, so it must be acceptable everywhere in them, whether or not any concrete input was found.

Both keep training on ordinary data. Held out: **real triggered observations** (random observations with the
trigger bits on) — the share on which the policy still acts unacceptably — and accuracy on ordinary ones.

    alignlab inner run relaxed_adversarial [--seeds 5] [--set rounds=20]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alignlab.inner.experiments.common import ExperimentConfig, axes, cell, finish, start, summary

NAME = "relaxed_adversarial"
UNACCEPTABLE = 2
METHODS = ("none", "ordinary", "relaxed")


@dataclass
class RelaxedAdversarialConfig(ExperimentConfig):
    """Relaxed vs ordinary adversarial training against a hidden trigger."""

    bits: int = 16
    """observation size"""
    trigger: list[int] = field(default_factory=lambda: [2, 4, 7, 9, 11, 13])
    """bits that, all on, trigger the unacceptable action"""
    density: float = 0.2
    """probability each bit is on in ordinary observations"""
    hidden: int = 64
    """width of the policy"""
    pretrain_steps: int = 400
    """Adam steps that plant the trigger"""
    rounds: int = 10
    """adversarial rounds"""
    steps_per_round: int = 10
    """training steps after each round's search"""
    batch: int = 256
    """ordinary observations per training step"""
    search_starts: int = 64
    """ordinary adversary: random observations it starts its greedy search from, per round"""
    search_steps: int = 3
    """ordinary adversary: bit flips per search"""
    regions: int = 64
    """relaxed adversary: candidate regions it scores per round"""
    region_bits: int = 2
    """relaxed adversary: bits each region fixes on (the others range over {0, 1})"""
    keep: int = 8
    """examples (ordinary) or regions (relaxed) the adversary keeps per round"""
    lr: float = 1e-3
    """learning rate after the trigger is planted (3e-3 before)"""
    penalty: float = 1.0
    """weight of the adversarial loss"""
    test_size: int = 2048
    """held-out triggered and ordinary observations"""


class PolicyNet(nn.Module):
    """A two-layer ReLU MLP over the observation bits; ``bounds`` propagates an input box through it."""

    def __init__(self, bits: int, hidden: int):
        super().__init__()
        self.first, self.last = nn.Linear(bits, hidden), nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(x)))

    def unacceptable_margin_bound(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Upper bound over the box [low, high] [n, bits] of logit₂ − max(logit₀, logit₁), by interval bound
        propagation: centre ± |W|·radius through each affine layer, ReLU applied to both ends."""
        centre, radius = (high + low) / 2, (high - low) / 2
        h_centre, h_radius = self.first(centre), radius @ self.first.weight.abs().T
        h_low, h_high = torch.relu(h_centre - h_radius), torch.relu(h_centre + h_radius)
        centre, radius = (h_high + h_low) / 2, (h_high - h_low) / 2
        bounds = []
        for acceptable in (0, 1):  # logit₂ − logit_a is affine in h: its bound is exact over the box of h
            w = self.last.weight[UNACCEPTABLE] - self.last.weight[acceptable]
            b = self.last.bias[UNACCEPTABLE] - self.last.bias[acceptable]
            bounds.append(centre @ w + radius @ w.abs() + b)
        return torch.minimum(*bounds)  # action 2 must beat both acceptable actions


def ordinary(config: RelaxedAdversarialConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """Sparse random observations without the trigger (where all its bits came up on, the first is turned off)."""
    x = (torch.rand(n, config.bits, generator=generator) < config.density).float()
    x[x[:, config.trigger].sum(1) == len(config.trigger), config.trigger[0]] = 0.0
    return x


def triggered(config: RelaxedAdversarialConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    x = ordinary(config, n, generator)
    x[:, config.trigger] = 1.0
    return x


def acceptable_action(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0].long()


def margin(policy: PolicyNet, x: torch.Tensor) -> torch.Tensor:
    logits = policy(x)
    return logits[:, UNACCEPTABLE] - logits[:, :UNACCEPTABLE].max(-1).values


def search_inputs(policy: PolicyNet, config: RelaxedAdversarialConfig, generator: torch.Generator) -> torch.Tensor:
    """Ordinary adversary: greedy bit flips that raise action 2's margin; the ``keep`` best inputs it reaches."""
    x = ordinary(config, config.search_starts, generator)
    eye = torch.eye(config.bits)
    with torch.no_grad():
        for _ in range(config.search_steps):
            flipped = (x[:, None, :] + eye[None]) % 2  # [starts, bits, bits]: every one-bit flip
            scores = margin(policy, flipped.flatten(0, 1)).view(len(x), config.bits)
            x = flipped[torch.arange(len(x)), scores.argmax(-1)]
        best = margin(policy, x).topk(config.keep).indices
    return x[best]


def search_regions(policy: PolicyNet, config: RelaxedAdversarialConfig, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Relaxed adversary: random regions ("these bits on, the rest anything"); the ``keep`` whose bound is highest."""
    chosen = torch.rand(config.regions, config.bits, generator=generator).argsort(-1)[:, :config.region_bits]
    low = torch.zeros(config.regions, config.bits).scatter(1, chosen, 1.0)
    high = torch.ones(config.regions, config.bits)
    with torch.no_grad():
        best = policy.unacceptable_margin_bound(low, high).topk(config.keep).indices
    return low[best], high[best]


def evaluate(policy: PolicyNet, config: RelaxedAdversarialConfig, seed: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        trig = triggered(config, config.test_size, generator)
        clean = ordinary(config, config.test_size, generator)
        return {"unacceptable_on_triggers": float((policy(trig).argmax(-1) == UNACCEPTABLE).float().mean()),
                "ordinary_accuracy": float((policy(clean).argmax(-1) == acceptable_action(clean)).float().mean())}


def train_one(config: RelaxedAdversarialConfig, method: str, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy = PolicyNet(config.bits, config.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)

    def step(extra: torch.Tensor | None = None) -> None:
        x = ordinary(config, config.batch, generator)
        loss = nn.functional.cross_entropy(policy(x), acceptable_action(x))
        if extra is not None:
            loss = loss + config.penalty * extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(config.pretrain_steps):  # plant the trigger: a quarter of each batch is triggered, labelled 2
        x = torch.cat([ordinary(config, config.batch, generator), triggered(config, config.batch // 4, generator)])
        labels = torch.where(x[:, config.trigger].sum(1) == len(config.trigger), UNACCEPTABLE, acceptable_action(x))
        loss = nn.functional.cross_entropy(policy(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    history = [evaluate(policy, config, seed)]
    for group in optimizer.param_groups:
        group["lr"] = config.lr
    for _ in range(config.rounds):
        if method == "ordinary":
            found = search_inputs(policy, config, generator)
            for _ in range(config.steps_per_round):
                step(nn.functional.cross_entropy(policy(found), acceptable_action(found)))
        elif method == "relaxed":
            low, high = search_regions(policy, config, generator)
            for _ in range(config.steps_per_round):
                step(torch.relu(policy.unacceptable_margin_bound(low, high) + 1.0).mean())
        else:
            for _ in range(config.steps_per_round):
                step()
        history.append(evaluate(policy, config, seed))
    return {"method": method, "seed": seed, "history": history}


def run(config: RelaxedAdversarialConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    output = start(NAME, config)
    runs = [(m, config.seed + i) for i in range(config.seeds) for m in METHODS]
    per_run = [train_one(config, m, s) for m, s in tqdm(runs, desc=NAME, disable=not config.progress)]
    results: dict[str, Any] = {"methods": list(METHODS), "rounds": config.rounds, "runs": per_run}
    for m in METHODS:
        rows = [r["history"] for r in per_run if r["method"] == m]
        results[m] = {key: [summary([h[i][key] for h in rows]) for i in range(config.rounds + 1)]
                      for key in ("unacceptable_on_triggers", "ordinary_accuracy")}
    finish(output, "Relaxed adversarial training: regions vs inputs against a hidden trigger", config, results, plot,
           lambda report: _report(report, results))
    return results


def headline(results: dict[str, Any]) -> str:
    return "; ".join(f"{m}: unacceptable on real triggers {results[m]['unacceptable_on_triggers'][0]['mean']:.2f} → "
                     f"{results[m]['unacceptable_on_triggers'][-1]['mean']:.2f}" for m in METHODS)


def table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the results table (the report and the docs show the same one)."""
    names = {"none": "no adversary (ordinary data only)", "ordinary": "ordinary adversarial training",
             "relaxed": "relaxed adversarial training"}
    return (["training", "unacceptable on real triggers, before", "after", "accuracy on ordinary inputs, after"],
            [[names[m], cell(results[m]["unacceptable_on_triggers"][0]), cell(results[m]["unacceptable_on_triggers"][-1]),
              cell(results[m]["ordinary_accuracy"][-1])] for m in METHODS])


def plot(results: dict[str, Any]):
    fig, ax = axes()
    rounds = list(range(results["rounds"] + 1))
    for m in METHODS:
        stats = results[m]["unacceptable_on_triggers"]
        ax.errorbar(rounds, [s["mean"] for s in stats], yerr=[s["ci95"] for s in stats], marker="o", markersize=3,
                    capsize=2, label=m)
    ax.set(xlabel="adversarial rounds", ylabel="unacceptable on held-out triggers", ylim=(-0.02, 1.02),
           title="Relaxed adversarial training (95% intervals)")
    ax.legend(fontsize=8)
    return fig


def _report(report: Any, results: dict[str, Any]) -> None:
    report.text("A policy with a planted trigger, then trained for the same rounds with no adversary, with an "
                "adversary searching concrete inputs, or with an adversary proposing regions checked by interval "
                "bounds. Unacceptable: the share of held-out triggered observations on which it takes action 2. "
                "Intervals are 95% Student-t over seeds.")
    report.table("Unacceptable behaviour on real triggers", *table(results))
