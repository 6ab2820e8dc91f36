"""Inverse reward design: the posterior learns what training showed and stays uncertain about the rest; the
risk-averse planner avoids what training never showed; on the world it avoids the proxy's blind spot."""

from __future__ import annotations

import json

import torch

from alignlab.cli import main
from alignlab.outer.ird import ird_posterior, risk_averse_choice, train_behaviour, weighted_quantile


def training_situations() -> torch.Tensor:
    """Features (a, b, c): a and b trade off across candidates, c is 0 everywhere (never seen to vary)."""
    return torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
                         [[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [2.0, -1.0, 0.0]]])


def test_posterior_learns_seen_features_and_keeps_the_prior_on_unseen_ones() -> None:
    samples = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0))
    weights = ird_posterior(training_situations(), torch.tensor([2.0, 1.0, 0.0]), samples, beta=5.0)
    posterior_mean = (weights[:, None] * samples).sum(0)
    assert posterior_mean[0] > 0.3 and posterior_mean[1] > 0.1  # the proxy's preferences, learned
    assert abs(float(posterior_mean[2])) < 0.05  # c never varied: its weight keeps the prior's mean 0 ...
    c_var = float((weights * samples[:, 2] ** 2).sum())
    assert 0.8 < c_var < 1.2  # ... and the prior's spread: the blind spot is uncertainty, not indifference


def test_risk_averse_planner_avoids_a_feature_value_training_never_showed() -> None:
    samples = torch.randn(20000, 3, generator=torch.Generator().manual_seed(1))
    proxy = torch.tensor([2.0, 1.0, 0.0])
    weights = ird_posterior(training_situations(), proxy, samples, beta=5.0)
    baseline = train_behaviour(training_situations(), proxy)
    test = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]],   # a twin with c = 1 first: the proxy ties
                         [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # no novelty: the better one wins
    assert risk_averse_choice(test, samples, weights, baseline).tolist() == [1, 0]


def test_weighted_quantile_matches_the_sorted_cumulative_weight() -> None:
    values = torch.tensor([[3.0], [1.0], [2.0], [4.0]])
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4])  # sorted: 1 (0.2), 2 (0.3), 3 (0.1), 4 (0.4)
    assert weighted_quantile(values, weights, 0.1).tolist() == [1.0]
    assert weighted_quantile(values, weights, 0.55).tolist() == [3.0]
    assert weighted_quantile(values, weights, 0.9).tolist() == [4.0]


def test_world_bench_ird_avoids_stereotypes_the_proxy_cannot_see(tmp_path, capsys) -> None:
    out = tmp_path / "ird"
    argv = ["bench", "ird", "--world", "--output", str(out), "--set", "seeds=[0,1]", "--set", "prior_samples=1000"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "results.json").read_text())["results"]["summary"]
    assert summary["proxy"]["groups_true_reward"]["mean"] < summary["true"]["groups_true_reward"]["mean"]
    assert summary["proxy"]["bias_rate"]["mean"] > 0.0  # indifferent between an answer and its stereotyped twin
    assert summary["ird"]["bias_rate"]["mean"] < summary["proxy"]["bias_rate"]["mean"]
