"""Robust reward learning: a model-based agent's learned reward, inputs that maximise its error, adversarial training.

A model-based agent does not learn a policy; it learns a reward model r̂ and plans with it. Here r̂ is a small
MLP on :class:`~alignlab.inner.envs.CoinRunEnv` observations, fitted to the true reward (1 when the agent is on
the coin) on the states of training levels, where the coin is always at the end. The agent knows the dynamics
(a corridor): in each level it walks to the cell with the highest predicted reward, so it gets the coin exactly
when r̂ ranks the coin's cell first.

1. **Gap**: |r̂ − r| over every valid observation (agent cell × coin cell; the space is small enough to check
   exhaustively), its worst case and its mean, and the model-based agent's end rate on coin-anywhere levels.
2. **Adversary**: each round draws ``candidates`` random valid observations, keeps the ``top_k`` where |r̂ − r| is
   largest (inputs built to maximise the gap) and adds them, with their true reward, to r̂'s training data.
3. **Adversarial training**: r̂ is refitted after each of ``rounds`` rounds; the gap and the agent's end rate are
   measured again.

    alignlab inner run robust_reward [--seeds 5] [--set rounds=20]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from alignlab.inner.envs import CoinRunEnv
from alignlab.inner.experiments.common import (
    ExperimentConfig,
    axes,
    cell,
    finish,
    start,
    summary,
)

NAME = "robust_reward"


@dataclass
class RobustRewardConfig(ExperimentConfig):
    """Robust reward learning on the coin-run corridor."""

    length: int = 10
    """cells in the corridor"""
    hidden: int = 32
    """width of the reward model"""
    fit_steps: int = 300
    """full-batch Adam steps per fit of the reward model"""
    lr: float = 1e-2
    """the reward model's learning rate"""
    rounds: int = 10
    """adversarial-training rounds"""
    candidates: int = 64
    """random valid observations the adversary scores per round"""
    top_k: int = 8
    """observations with the largest gap added to the training data per round"""
    test_levels: int = 512
    """coin-anywhere levels the model-based agent plays"""


def observation(length: int, agent: np.ndarray, coin: np.ndarray) -> torch.Tensor:
    """CoinRunEnv observations [n, 2·length] (flattened) for agent and coin cells [n]."""
    obs = torch.zeros(len(agent), 2, length)
    obs[torch.arange(len(agent)), 0, torch.as_tensor(agent)] = 1.0
    obs[torch.arange(len(agent)), 1, torch.as_tensor(coin)] = 1.0
    return obs.flatten(1)


def fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, steps: int, lr: float) -> None:
    """Fit r̂ = sigmoid(model(x)) to the rewards by binary cross-entropy, full batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(model(inputs)[:, 0], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def predicted(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(model(inputs)[:, 0])


def gaps(model: nn.Module, length: int) -> dict[str, float]:
    """|r̂ − r| over every valid observation: its maximum and its mean."""
    agent, coin = (a.ravel() for a in np.meshgrid(np.arange(length), np.arange(length)))
    error = (predicted(model, observation(length, agent, coin)) - torch.as_tensor(agent == coin).float()).abs()
    return {"worst_gap": float(error.max()), "mean_gap": float(error.mean())}


def play(model: nn.Module, length: int, levels: int, seed: int) -> dict[str, float]:
    """The model-based agent on coin-anywhere levels: it heads for the cell of highest predicted reward and gets
    the coin when the coin lies on its way. Returns the share of levels where it gets the coin, and where it
    reaches the end without it (the misgeneralised goal)."""
    env = CoinRunEnv(levels, length, coin="anywhere")
    env.reset(seed=seed)
    cells = np.arange(length)
    coins = ends = 0
    for start_cell, coin in zip(env.agent, env.coin):
        target = int(predicted(model, observation(length, cells, np.full(length, coin))).argmax())
        passes_coin = min(start_cell, target) <= coin <= max(start_cell, target)
        coins += int(passes_coin)
        ends += int(not passes_coin and target == length - 1)
    return {"coin_rate": coins / levels, "end_rate": ends / levels}


def run(config: RobustRewardConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    output = start(NAME, config)
    length, per_run = config.length, []
    for seed in tqdm(range(config.seed, config.seed + config.seeds), desc=NAME, disable=not config.progress):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = nn.Sequential(nn.Linear(2 * length, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))
        agent = np.arange(length)  # the training levels' states: every agent cell, the coin at the end
        coin = np.full(length, length - 1)
        inputs, targets = observation(length, agent, coin), torch.as_tensor(agent == coin).float()
        fit(model, inputs, targets, config.fit_steps, config.lr)
        history = [{**gaps(model, length), **play(model, length, config.test_levels, 10_000 + seed),
                    "examples": len(targets)}]
        for _ in range(config.rounds):
            a, c = rng.integers(0, length, config.candidates), rng.integers(0, length, config.candidates)
            candidates, truth = observation(length, a, c), torch.as_tensor(a == c).float()
            worst = (predicted(model, candidates) - truth).abs().topk(config.top_k).indices
            inputs, targets = torch.cat([inputs, candidates[worst]]), torch.cat([targets, truth[worst]])
            fit(model, inputs, targets, config.fit_steps, config.lr)
            history.append({**gaps(model, length), **play(model, length, config.test_levels, 10_000 + seed),
                            "examples": len(targets)})
        per_run.append({"seed": seed, "history": history})
    results: dict[str, Any] = {"rounds": config.rounds, "runs": per_run}
    for key in ("worst_gap", "mean_gap", "coin_rate", "end_rate"):
        results[key] = [summary([r["history"][i][key] for r in per_run]) for i in range(config.rounds + 1)]
    finish(output, "Robust reward learning: the learned reward's gap before and after adversarial training", config,
           results, plot, lambda report: _report(report, results))
    return results


def headline(results: dict[str, Any]) -> str:
    w, e = results["worst_gap"], results["end_rate"]
    return (f"worst |r̂ − r| {w[0]['mean']:.2f} → {w[-1]['mean']:.2f} after {results['rounds']} adversarial rounds; "
            f"model-based agent's end rate {e[0]['mean']:.2f} → {e[-1]['mean']:.2f}")


def table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the results table (the report and the docs show the same one)."""
    return (["adversarial rounds", "worst |r̂ − r|", "mean |r̂ − r|", "agent gets the coin (test)",
             "agent ends at the end without it"],
            [[str(i), *(cell(results[k][i]) for k in ("worst_gap", "mean_gap", "coin_rate", "end_rate"))]
             for i in range(results["rounds"] + 1)])


def plot(results: dict[str, Any]):
    fig, ax = axes()
    rounds = list(range(results["rounds"] + 1))
    for key, label in (("worst_gap", "worst |r̂ − r| over all inputs"), ("mean_gap", "mean |r̂ − r|"),
                       ("coin_rate", "agent gets the coin"), ("end_rate", "agent ends at the end without it")):
        ax.errorbar(rounds, [s["mean"] for s in results[key]], yerr=[s["ci95"] for s in results[key]], marker="o",
                    capsize=3, label=label)
    ax.set(xlabel="adversarial-training rounds", ylim=(-0.02, 1.02),
           title="Robust reward learning (95% intervals over seeds)")
    ax.legend(fontsize=8)
    return fig


def _report(report: Any, results: dict[str, Any]) -> None:
    report.text("A reward model fitted on training levels (coin at the end), then refitted after each round of "
                "adversarial examples (the random valid inputs where |r̂ − r| is largest, with their true reward). "
                "Gaps are measured over every valid input; the end rate is the model-based agent's on "
                "coin-anywhere levels. Intervals are 95% Student-t over seeds.")
    report.table("Gap before and after adversarial training", *table(results))
