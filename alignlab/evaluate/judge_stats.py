"""Statistics of judged comparisons: bootstrap intervals, length-controlled win rate, Bradley–Terry and Elo
rankings with intervals. Pure functions of outcomes; :mod:`alignlab.evaluate.judge` calls them.

An *outcome* is model a's score in one game: 1 (a won), 0.5 (tie), 0 (b won).

- :func:`bootstrap_interval`: percentile bootstrap (Efron 1979) of any statistic of resampled items.
- :func:`length_controlled_win_rate`: AlpacaEval 2's length control (Dubois et al. 2024): a logistic model of
  the outcome, logit P(a wins) = θ + φ · tanh(Δlen / sd(Δlen)), fitted by maximum likelihood (ties as half a
  win), whose win rate with the length term set to zero is σ(θ). AlpacaEval's per-instruction difficulty term
  needs many models judged against one baseline and is left out; with it zero the rest is their regression.
- :func:`bradley_terry_intervals`, :func:`elo_ratings`: rankings from games between several models, each with a
  bootstrap interval over games and the interval of each model's rank.

Example::

    >>> wins = [1.0] * 30 + [0.0] * 10
    >>> lc = length_controlled_win_rate(wins, [300] * 30 + [100] * 10, [200] * 40)
    >>> lc["win_rate"], lc["lc_win_rate"] < lc["win_rate"]     # the wins came with the longer answers
    (0.75, True)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alignlab.errors import EvalError


def bootstrap_interval(items: Sequence[Any], statistic: Callable[[Sequence[Any]], float], *, n_boot: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``items`` resampled with replacement; resamples where
    the statistic is undefined (NaN) are dropped; (nan, nan) when all are.

    Example::

        >>> lo, hi = bootstrap_interval([0, 1, 1, 0, 1, 1], lambda x: sum(x) / len(x))
        >>> 0.0 <= lo < 4 / 6 < hi <= 1.0
        True
    """
    rng = random.Random(seed)
    values = sorted(v for v in (statistic(rng.choices(items, k=len(items))) for _ in range(n_boot))
                    if not math.isnan(v))
    if not values:
        return math.nan, math.nan
    tail = (1.0 - level) / 2
    return values[int(tail * (len(values) - 1))], values[int(math.ceil((1 - tail) * (len(values) - 1)))]


def win_rate(outcomes: Sequence[float]) -> float:
    """(wins + 0.5·ties) / N."""
    return sum(outcomes) / len(outcomes) if outcomes else math.nan


def win_rate_with_interval(outcomes: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The win rate and its 95% bootstrap interval over games."""
    return {"win_rate": win_rate(outcomes), "interval_95": list(bootstrap_interval(outcomes, win_rate, n_boot=n_boot,
                                                                                   seed=seed)), "n": len(outcomes)}


def _fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-4, iters: int = 50) -> np.ndarray:
    """Maximum-likelihood logistic regression with soft labels y ∈ [0, 1] (Newton's method; a tiny L2 keeps a
    separable fit finite). x: [n, d] with its own intercept column. Returns the coefficients [d]."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def length_controlled_win_rate(outcomes: Sequence[float], lengths_a: Sequence[float], lengths_b: Sequence[float],
                               *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AlpacaEval 2's length-controlled win rate of model a over b (see the module docstring), its bootstrap
    interval, the raw win rate, and the fitted θ (a's advantage) and φ (the length effect)."""
    if not len(outcomes) == len(lengths_a) == len(lengths_b) or not outcomes:
        raise EvalError("length-controlled win rate needs one outcome and two lengths per game")
    y = np.asarray(outcomes, dtype=float)
    delta = np.asarray(lengths_a, dtype=float) - np.asarray(lengths_b, dtype=float)
    sd = delta.std()

    def fit(idx: Sequence[int]) -> tuple[float, float]:
        d = delta[list(idx)]
        x = np.stack([np.ones(len(d)), np.tanh(d / sd) if sd > 0 else np.zeros(len(d))], axis=1)
        theta, phi = _fit_logistic(x, y[list(idx)])
        return float(theta), float(phi)

    theta, phi = fit(range(len(y)))
    lc = 1.0 / (1.0 + math.exp(-theta))
    interval = bootstrap_interval(list(range(len(y))), lambda idx: 1.0 / (1.0 + math.exp(-fit(idx)[0])),
                                  n_boot=n_boot, seed=seed)
    return {"lc_win_rate": lc, "interval_95": list(interval), "win_rate": float(y.mean()), "theta": theta,
            "phi": phi, "n": len(y)}


def _bt_scores(outcomes: Sequence[tuple[str, str, float]], models: list[str], prior: float = 0.1) -> np.ndarray:
    """Bradley–Terry log-strengths (centred) by Hunter's MM update, ``prior`` virtual ties per pair."""
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.full(k, prior * (k - 1) / 2)
    games = np.full((k, k), prior) - np.eye(k) * prior
    for a, b, s in outcomes:
        i, j = index[a], index[b]
        wins[i] += s
        wins[j] += 1.0 - s
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(k)
    for _ in range(1000):
        new = wins / (games / (p[:, None] + p[None, :])).sum(axis=1)
        new /= math.exp(np.log(new).mean())
        done = np.abs(new - p).max() < 1e-10
        p = new
        if done:
            break
    return np.log(p)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 for the highest score."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=int)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def _with_intervals(outcomes: Sequence[tuple[str, str, float]], score: Callable[[Sequence, list[str]], np.ndarray],
                    *, n_boot: int, seed: int) -> dict[str, dict[str, Any]]:
    models = sorted({m for a, b, _ in outcomes for m in (a, b)})
    if len(models) < 2:
        raise EvalError("a ranking needs games between at least two models")
    point = score(outcomes, models)
    rng = random.Random(seed)
    boots = np.array([score(rng.choices(outcomes, k=len(outcomes)), models) for _ in range(n_boot)])
    ranks = np.array([_ranks(b) for b in boots])
    table = {}
    for i in np.argsort(-point, kind="stable"):
        table[models[i]] = {
            "score": float(point[i]), "interval_95": [float(v) for v in np.percentile(boots[:, i], [2.5, 97.5])],
            "rank": int(_ranks(point)[i]), "rank_interval_95": [int(v) for v in np.percentile(ranks[:, i], [2.5, 97.5])],
        }
    return table


def bradley_terry_intervals(outcomes: Sequence[tuple[str, str, float]], *, n_boot: int = 1000,
                            seed: int = 0) -> dict[str, dict[str, Any]]:
    """Bradley–Terry log-strengths from ``(model_a, model_b, outcome)`` games, best first, each with a 95%
    bootstrap interval over games, its rank and its rank's interval.

    Example::

        >>> games = [("x", "y", 1.0)] * 8 + [("x", "y", 0.0)] * 2 + [("y", "z", 1.0)] * 7 + [("y", "z", 0.0)] * 3
        >>> list(bradley_terry_intervals(games, n_boot=100))
        ['x', 'y', 'z']
    """
    return _with_intervals(outcomes, _bt_scores, n_boot=n_boot, seed=seed)


def _elo(outcomes: Sequence[tuple[str, str, float]], models: list[str], k: float = 4.0, scale: float = 400.0,
         base: float = 1000.0) -> np.ndarray:
    """Online Elo (Elo 1978) over the games in order: r_a += k · (s − E_a), E_a = 1 / (1 + 10^((r_b − r_a)/scale))."""
    index = {m: i for i, m in enumerate(models)}
    rating = np.full(len(models), base)
    for a, b, s in outcomes:
        i, j = index[a], index[b]
        expected = 1.0 / (1.0 + 10 ** ((rating[j] - rating[i]) / scale))
        rating[i] += k * (s - expected)
        rating[j] -= k * (s - expected)
    return rating


def elo_ratings(outcomes: Sequence[tuple[str, str, float]], *, k: float = 4.0, n_boot: int = 1000,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """Elo ratings as Chatbot Arena reports them: online Elo over the games, with the games resampled and
    reshuffled per bootstrap round (so the order of play does not decide); best first, with intervals."""
    shuffled = list(outcomes)
    random.Random(seed).shuffle(shuffled)
    return _with_intervals(shuffled, lambda games, models: _elo(games, models, k=k), n_boot=n_boot, seed=seed)
