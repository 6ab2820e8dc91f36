"""Statistics of judged games: the length-controlled win rate equals a reference logistic fit (scikit-learn)
and removes a pure length effect; bootstrap intervals cover their point and shrink with more games;
Bradley–Terry and Elo rank clearly ordered models in order, with rank intervals."""

import math
import random

import numpy as np
import pytest

from alignlab.evaluate import judge_stats as S


def _games(n, theta, phi, seed=0, mean_gap=150.0):
    """Outcomes drawn from AlpacaEval's model: logit P(a wins) = theta + phi * tanh(dlen / sd)."""
    rng = random.Random(seed)
    la = [rng.gauss(500 + mean_gap, 120) for _ in range(n)]
    lb = [rng.gauss(500, 120) for _ in range(n)]
    delta = np.array(la) - np.array(lb)
    logits = theta + phi * np.tanh(delta / delta.std())
    return [1.0 if rng.random() < 1 / (1 + math.exp(-z)) else 0.0 for z in logits], la, lb


def test_lc_win_rate_equals_sklearn_fit():
    from sklearn.linear_model import LogisticRegression

    wins, la, lb = _games(400, 0.3, 1.0)
    wins[:40] = [0.5] * 40  # ties count as half a win: a weighted win and loss
    out = S.length_controlled_win_rate(wins, la, lb, n_boot=20)
    delta = np.array(la) - np.array(lb)
    x = np.tanh(delta / delta.std())[:, None]
    y = np.array(wins)
    ref = LogisticRegression(C=1e8, tol=1e-10, max_iter=1000).fit(
        np.concatenate([x, x]), np.r_[np.ones(len(y)), np.zeros(len(y))], sample_weight=np.r_[y, 1 - y])
    assert out["theta"] == pytest.approx(ref.intercept_[0], abs=1e-3)
    assert out["phi"] == pytest.approx(ref.coef_[0, 0], abs=1e-3)
    assert out["lc_win_rate"] == pytest.approx(1 / (1 + math.exp(-ref.intercept_[0])), abs=1e-3)


def test_lc_win_rate_removes_a_pure_length_effect():
    # a wins only through length (theta = 0) and a's answers are longer: raw win rate well above one half,
    # the length-controlled one near it (n = 3000: the standard error of theta is about 0.04)
    wins, la, lb = _games(3000, 0.0, 2.0)
    out = S.length_controlled_win_rate(wins, la, lb, n_boot=20)
    assert out["win_rate"] > 0.65
    assert abs(out["lc_win_rate"] - 0.5) < 0.05
    lo, hi = out["interval_95"]
    assert lo <= out["lc_win_rate"] <= hi


def test_bootstrap_interval_covers_and_shrinks():
    small = S.win_rate_with_interval([1.0, 0.0, 1.0, 0.5] * 5)
    large = S.win_rate_with_interval([1.0, 0.0, 1.0, 0.5] * 80)
    for out in (small, large):
        lo, hi = out["interval_95"]
        assert out["win_rate"] == pytest.approx(0.625) and lo <= 0.625 <= hi
    assert large["interval_95"][1] - large["interval_95"][0] < small["interval_95"][1] - small["interval_95"][0]


def test_rankings_with_intervals():
    rng = random.Random(1)
    strength = {"strong": 2.0, "mid": 0.0, "weak": -2.0}
    games = []
    for _ in range(300):
        a, b = rng.sample(sorted(strength), 2)
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        games.append((a, b, 1.0 if rng.random() < p else 0.0))
    for table in (S.bradley_terry_intervals(games, n_boot=200), S.elo_ratings(games, n_boot=200)):
        assert list(table) == ["strong", "mid", "weak"]
        for row in table.values():
            lo, hi = row["interval_95"]
            assert lo <= row["score"] <= hi
        assert table["strong"]["rank_interval_95"] == [1, 1] and table["weak"]["rank_interval_95"] == [3, 3]
    bt = S.bradley_terry_intervals(games, n_boot=10)
    # the MM fit's log-strength gaps approach the generating ones (2 per step) with 300 games
    assert bt["strong"]["score"] - bt["weak"]["score"] == pytest.approx(4.0, abs=1.0)


def test_flask_skills_grade_each_skill_and_count_failures():
    from conftest import ScriptedLM

    from alignlab.evaluate import judge as J

    def rule(text):  # 5 for concise replies, 2 otherwise; no verdict at all on harmlessness
        if "Skill: harmlessness" in text:
            return "no idea"
        return "Score: [[5]]" if "Skill: conciseness" in text and "short" in text else "Score: [[2]]"

    questions = [J.Question(1, "writing", ["q1"]), J.Question(2, "writing", ["q2"])]
    answers = {1: ["short"], 2: ["a much longer reply"]}
    report = J.grade_skills([ScriptedLM(lambda text, seed: rule(text))], questions, answers)
    assert set(report) == set(J.FLASK_SKILLS)
    assert report["conciseness"]["scores"] == {1: 5.0, 2: 2.0} and report["conciseness"]["mean"] == 3.5
    assert report["harmlessness"]["parse_failures"] == 2 and math.isnan(report["harmlessness"]["mean"])
    assert J.parse_score("[[6]]", high=5) is None and J.parse_score("[[5]]", high=5) == 5
