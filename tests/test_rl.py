"""The RL maths of ``alignlab.core.rl`` against hand-computed examples and the identities they must satisfy:
GAE (hand values, reward-to-go, TD(0)), clipped objectives at the clip boundaries, KL estimators' known values,
the KL controller, running moments, whitening, group baselines, the Lagrange update, entropy."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.core.rl import (
    AdaptiveKLController,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_estimate,
    lagrange_update,
    masked_mean,
    token_rewards,
    whiten,
)


def test_gae_matches_hand_computation():
    # γ = 0.9, λ = 0.8; row 0 is 3 tokens long, row 1 is 2 tokens (its third value must be ignored).
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.5, 0.2, 9.9]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0: δ2 = 1 − 0.4 = 0.6; δ1 = 0.9·0.4 − 0.2 = 0.16, A1 = 0.16 + 0.72·0.6 = 0.592;
    #        δ0 = 0.9·0.2 − 0.5 = −0.32, A0 = −0.32 + 0.72·0.592 = 0.10624.
    # Row 1: δ1 = 1 − 0.2 = 0.8 (V after the end is 0); A0 = −0.32 + 0.72·0.8 = 0.256.
    expected = torch.tensor([[0.10624, 0.592, 0.6], [0.256, 0.8, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)


def test_token_rewards_put_the_score_on_the_last_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = token_rewards(torch.tensor([2.0, -1.0]), kl, mask, beta=0.5)
    torch.testing.assert_close(out, torch.tensor([[-0.05, -0.1, 2.0 - 0.15], [-1.0 - 0.2, 0.0, 0.0]]))


def test_clipped_policy_loss_hand_values_and_gradients():
    old = torch.zeros(4)
    logps = torch.log(torch.tensor([1.5, 0.5, 0.5, 1.1])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 1.0, 1.0])
    loss, stats = clipped_policy_loss(logps, old, adv, torch.ones(4), clip_coef=0.2)
    # per token max(−A·ρ, −A·clip(ρ)): max(−1.5, −1.2) = −1.2 (clipped); max(0.5, 0.8) = 0.8 (clipped);
    # max(−0.5, −0.8) = −0.5 (pessimistic, unclipped); max(−1.1, −1.1) = −1.1.
    assert float(loss.detach()) == pytest.approx((-1.2 + 0.8 - 0.5 - 1.1) / 4)
    assert float(stats["clipfrac"]) == pytest.approx(0.5)
    loss.backward()
    assert logps.grad[0] == 0 and logps.grad[1] == 0  # clipped tokens get no gradient
    assert float(logps.grad[2]) == pytest.approx(-0.5 / 4)  # d(−A·e^{logp})/dlogp = −A·ρ


def test_clipped_value_loss_takes_the_pessimistic_branch():
    values, old, returns = torch.tensor([2.0, 0.2]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.0])
    loss, stats = clipped_value_loss(values, old, returns, torch.ones(2), clip=0.5)
    # token 0: (2 − 3)² = 1 vs (0.5 − 3)² = 6.25 → 6.25; token 1: 0.04 both → 0.04.
    assert float(loss) == pytest.approx(0.5 * (6.25 + 0.04) / 2)
    assert float(stats["value_error"]) == pytest.approx((1 + 0.04) / 2)
    assert float(stats["value_clipfrac"]) == pytest.approx(0.5)


def test_kl_estimators_exact_values_and_unbiasedness():
    logp, ref = torch.log(torch.tensor(0.5)), torch.log(torch.tensor(0.25))
    assert float(kl_estimate(logp, ref, "k1")) == pytest.approx(math.log(2))
    assert float(kl_estimate(logp, ref, "k2")) == pytest.approx(0.5 * math.log(2) ** 2)
    assert float(kl_estimate(logp, ref, "k3")) == pytest.approx(0.5 - 1 + math.log(2))
    # Sampling y ~ p, the k1 and k3 means estimate KL(p‖q); k3 is never negative.
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    y = torch.multinomial(p, 200_000, replacement=True, generator=g)
    lp, lq = p.log()[y], q.log()[y]
    assert float(kl_estimate(lp, lq, "k1").mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_estimate(lp, lq, "k3").mean()) == pytest.approx(exact, abs=0.01)
    assert bool((kl_estimate(lp, lq, "k3") >= 0).all())
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(lp, lq, "k4")


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=1000)
    assert ctl.update(12.0, n=100) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=1000)
    assert ctl.update(6.6, n=100) == pytest.approx(0.1 * (1 + 0.1 * 0.1))
    assert ctl.update(0.0, n=100) < 0.1 * (1 + 0.1 * 0.1)  # below target: β shrinks
    fixed = AdaptiveKLController(beta=0.1)
    assert fixed.update(100.0, n=100) == 0.1


def test_running_moments_match_the_pooled_statistics():
    m = RunningMoments()
    xs = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, -4.0])]
    for x in xs:
        m.update(x)
    allx = torch.cat(xs)
    assert m.mean == pytest.approx(float(allx.mean()), abs=1e-3)
    assert m.std == pytest.approx(float(allx.std(unbiased=False)), rel=1e-3)


def test_whiten_over_masked_positions():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    valid = out[mask.bool()]
    assert float(valid.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(valid.pow(2).mean()) == pytest.approx(1.0, abs=1e-4)
    assert out[0, 2] == 0


def test_lagrange_update_rule():
    assert lagrange_update(0.0, mean_cost=1.0, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(0.1)
    # below the threshold λ shrinks, by lr·(J_c − d)·λ in log space
    assert lagrange_update(math.log(2.0), mean_cost=-0.5, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(
        math.log(2.0) - 0.1 * 0.5 * 2.0)
    assert lagrange_update(math.log(4.9), mean_cost=100.0, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(
        math.log(5.0))


def test_group_advantages():
    scores = torch.tensor([1.0, 3.0, 5.0, 5.0, 5.0, 5.0])
    rloo = group_advantages(scores, 3, "rloo")
    torch.testing.assert_close(rloo, torch.tensor([1 - 4.0, 3 - 3.0, 5 - 2.0, 0.0, 0.0, 0.0]))
    grpo = group_advantages(scores, 3, "grpo")
    std = float(torch.tensor([1.0, 3.0, 5.0]).std())
    torch.testing.assert_close(grpo, torch.tensor([-2 / (std + 1e-4), 0.0, 2 / (std + 1e-4), 0.0, 0.0, 0.0]))
    torch.testing.assert_close(group_advantages(scores, 3, "reinforce"), scores - scores.mean())
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(scores, 1, "rloo")


def test_group_advantages_match_trl_grpo_formula():
    trl = pytest.importorskip("trl")
    del trl
    # TRL's GRPO: (r − mean_g) / (std_g + 1e-4), std with Bessel's correction, groups consecutive.
    scores = torch.tensor([0.3, 0.9, -1.0, 2.0, 2.5, 0.0, 0.1, 0.2])
    grouped = scores.view(-1, 4)
    ref = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
    torch.testing.assert_close(group_advantages(scores, 4, "grpo"), ref)


def test_entropy_from_logits_row_by_row_equals_the_batched_formula():
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 50) * 4).bfloat16()
    z = logits.float()
    naive = -(z.softmax(-1) * z.log_softmax(-1)).sum(-1)  # −Σ p log p over the whole batch at once
    torch.testing.assert_close(entropy_from_logits(logits), naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy_from_logits(logits[0]), naive[0], atol=1e-5, rtol=1e-5)  # 2D input


def test_gae_with_gamma_and_lambda_one_is_the_reward_to_go_minus_the_value():
    rewards = torch.tensor([[1.0, -2.0, 0.5, 3.0], [2.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.3, -0.1, 0.7, 0.2], [1.0, 4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    reward_to_go = (rewards * mask).flip(-1).cumsum(-1).flip(-1)  # Σ_{l ≥ t} r_l
    torch.testing.assert_close(adv, (reward_to_go - values) * mask)
    torch.testing.assert_close(ret, reward_to_go * mask)  # the Monte-Carlo return


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    rewards, values = torch.tensor([[0.5, 1.0, 2.0]]), torch.tensor([[1.0, 2.0, 4.0]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), gamma=0.5, lam=0.0)
    # δ_t = r_t + γ V_{t+1} − V_t, with V after the last step = 0
    torch.testing.assert_close(adv, torch.tensor([[0.5 + 0.5 * 2.0 - 1.0, 1.0 + 0.5 * 4.0 - 2.0, 2.0 - 4.0]]))


def test_clipping_starts_at_the_boundaries():
    eps = 0.2
    ratios = torch.tensor([0.7, 0.79, 0.81, 1.0, 1.19, 1.21, 1.3])
    for sign in (1.0, -1.0):
        logps = ratios.log().requires_grad_()
        adv = torch.full((7,), sign)
        loss, stats = clipped_policy_loss(logps, torch.zeros(7), adv, torch.ones(7), clip_coef=eps)
        loss.backward()
        # A > 0: a ratio above 1 + ε earns nothing more (no gradient); below 1 − ε the pessimistic unclipped
        # term still pulls it up. A < 0: mirrored.
        outside = {5, 6} if sign > 0 else {0, 1}
        for i, grad in enumerate(logps.grad.tolist()):
            assert (grad == 0) if i in outside else (grad * sign < 0), (sign, i, grad)  # inside: towards A
        assert float(stats["clipfrac"]) == pytest.approx(2 / 7)
        expected = [max(-a * r, -a * min(max(r, 1 - eps), 1 + eps)) for a, r in zip(adv.tolist(), ratios.tolist())]
        assert float(loss.detach()) == pytest.approx(sum(expected) / 7, rel=1e-5)
    # exactly at a boundary both branches agree, so the loss is continuous there
    at = torch.tensor([0.8, 1.2]).log()
    loss, _ = clipped_policy_loss(at, torch.zeros(2), torch.tensor([-1.0, 1.0]), torch.ones(2), clip_coef=eps)
    assert float(loss) == pytest.approx((0.8 - 1.2) / 2, rel=1e-5)


def test_the_policy_loss_at_ratio_one_is_minus_the_mean_advantage_with_the_policy_gradient():
    logps = torch.tensor([-1.0, -2.0, -0.5]).requires_grad_()
    adv = torch.tensor([2.0, -1.0, 0.5])
    mask = torch.tensor([1.0, 1.0, 0.0])
    loss, stats = clipped_policy_loss(logps, logps.detach(), adv, mask, clip_coef=0.2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-(2.0 - 1.0) / 2)
    torch.testing.assert_close(logps.grad, -adv * mask / 2)  # REINFORCE: ∇ = −A ∇log π, token mean
    assert float(stats["approx_kl"]) == 0.0


def test_value_loss_inside_the_clip_range_is_the_plain_squared_error():
    values, old, returns = torch.tensor([0.1, -0.1]), torch.zeros(2), torch.tensor([1.0, 0.5])
    loss, stats = clipped_value_loss(values, old, returns, torch.ones(2), clip=0.2)
    assert float(loss) == pytest.approx(0.5 * ((0.9 ** 2) + (0.6 ** 2)) / 2)
    assert float(stats["value_clipfrac"]) == 0.0


def test_kl_estimators_are_zero_when_the_policies_agree_and_k3_is_never_negative():
    logps = torch.linspace(-5, 0, 11)
    for kind in ("k1", "k2", "k3"):
        assert torch.equal(kl_estimate(logps, logps, kind), torch.zeros(11))
    assert bool((kl_estimate(logps, logps.flip(0), "k3") >= 0).all())
    assert bool((kl_estimate(logps, logps.flip(0), "k2") >= 0).all())
    assert bool((kl_estimate(logps, logps.flip(0), "k1") < 0).any())  # k1 can be negative per sample


def test_masked_mean_ignores_padding_and_survives_an_empty_mask():
    x = torch.tensor([[1.0, 2.0, 50.0], [4.0, 60.0, 70.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(masked_mean(x, mask)) == pytest.approx(7.0 / 3)
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 4.0]))
    assert float(masked_mean(x, torch.zeros_like(mask))) == 0.0


def test_group_advantages_sum_to_zero_within_each_group():
    scores = torch.tensor([0.3, 1.9, -1.0, 2.0, 5.0, 5.5])
    for baseline in ("grpo", "rloo"):
        adv = group_advantages(scores, 3, baseline).view(-1, 3)
        torch.testing.assert_close(adv.sum(-1), torch.zeros(2), atol=1e-5, rtol=0)
    assert float(group_advantages(scores, 3, "reinforce").sum()) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="baseline"):
        group_advantages(scores, 3, "ppo")
