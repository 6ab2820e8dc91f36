"""Hand-worked examples and paper properties for ``alignlab.outer.losses`` (pure tensor maths, no models).

RRHF, PRO, CRINGE and Stable Alignment have no peer implementation to compare against, so their
expected values below are worked out by hand from the authors' definitions (see REFERENCES.md).
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

from alignlab.errors import ConfigError, DataError
from alignlab.outer import losses as L


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigma_prime(x: float) -> float:
    return math.exp(-x) / (1 + math.exp(-x)) ** 2


# ---------------------------------------------------------------------------------------------------------
# RRHF
# ---------------------------------------------------------------------------------------------------------


def test_rrhf_hand_worked():
    scores = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    rewards = torch.tensor([[1.0, 3.0, 2.0]])
    # pairs (worse i, better j): (0, 1): max(0, -1 + 2) = 1; (0, 2): max(0, -1 + 0.5) = 0; (2, 1): max(0, -0.5 + 2) = 1.5
    losses, metrics = L.rrhf(scores, rewards, torch.tensor([0.7]), rrhf_weight=2.0)
    assert losses.tolist() == pytest.approx([2.0 * 2.5 + 0.7])
    assert metrics["ranking_loss"].tolist() == pytest.approx([2.5])
    assert metrics["ranking_accuracy"].tolist() == pytest.approx([1 / 3])  # only (0, 2) is ordered right
    (grad,) = torch.autograd.grad(losses.sum(), scores)
    # d/dp_0 = +w (pair 0,1), d/dp_1 = -w - w (pairs 0,1 and 2,1), d/dp_2 = +w (pair 2,1)
    torch.testing.assert_close(grad, torch.tensor([[2.0, -4.0, 2.0]]))


def test_rrhf_is_zero_beyond_the_nll_when_ranking_is_consistent():
    scores = torch.tensor([[-3.0, -1.0, -2.0], [-0.5, -0.7, -0.9]])
    rewards = torch.tensor([[0.0, 5.0, 1.0], [3.0, 2.0, 2.0]])  # the second row has a tie, which is ignored
    nll = torch.tensor([1.25, 0.5])
    losses, metrics = L.rrhf(scores, rewards, nll)
    assert losses.tolist() == nll.tolist()
    assert metrics["ranking_accuracy"].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------------------
# PRO
# ---------------------------------------------------------------------------------------------------------


def test_pro_hand_worked_sorts_by_reward():
    # best-first: rewards (3, 1, 0) with scores (-1, -2, -1.5); given here in a shuffled order
    scores = torch.tensor([[-2.0, -1.5, -1.0]])
    rewards = torch.tensor([[1.0, 0.0, 3.0]])
    losses, metrics = L.pro(scores, rewards, torch.tensor([4.0]), sft_weight=0.05)
    # k = 0: T = (2, 3), T_0 = 3 -> logits (-1*3, -2*2, -1.5*3)
    l0 = math.log(math.exp(-3.0) + math.exp(-4.0) + math.exp(-4.5)) + 3.0
    # k = 1: T = (1,), T_1 = 1 -> logits (-2, -1.5)
    l1 = math.log(math.exp(-2.0) + math.exp(-1.5)) + 2.0
    assert metrics["ranking_loss"].item() == pytest.approx(l0 + l1, abs=1e-6)
    assert losses.item() == pytest.approx(l0 + l1 + 0.05 * 2**2 * 4.0, abs=1e-6)


def test_pro_with_two_candidates_is_logistic_with_reward_gap_temperature():
    g = torch.Generator().manual_seed(0)
    scores = -3 * torch.rand(16, 2, generator=g)
    rewards = 5 * torch.rand(16, 2, generator=g)
    losses, _ = L.pro(scores, rewards, torch.zeros(16))
    best = rewards.argmax(dim=1, keepdim=True)
    s_best, s_other = scores.gather(1, best).squeeze(1), scores.gather(1, 1 - best).squeeze(1)
    gap = (rewards[:, 0] - rewards[:, 1]).abs()
    torch.testing.assert_close(losses, -F.logsigmoid(gap * (s_best - s_other)))


# ---------------------------------------------------------------------------------------------------------
# Stable Alignment
# ---------------------------------------------------------------------------------------------------------


def test_stable_alignment_hand_worked():
    nll = torch.tensor([[1.0, 2.0, 2.5], [1.0, 2.0, 1.5]])
    ratings = torch.tensor([[0.0, 7.0, 6.0], [7.0, 3.0, 5.0]])
    losses, metrics = L.stable_alignment(nll, ratings, ratio=0.5, margin=1.0, rating_scale=7.0)
    # row 0: best is index 1 (nll 2); penalties 2 - 1 + 7/7 = 2 and 2 - 2.5 + 1/7; mean > 0 is active
    row0 = 2.0 + 0.5 * ((2.0 + (-0.5 + 1 / 7)) / 2)
    # row 1: best is index 0 (nll 1); penalties 1 - 2 + 4/7 and 1 - 1.5 + 2/7, mean < 0 -> hinge is 0
    assert losses.tolist() == pytest.approx([row0, 1.0])
    assert metrics["penalty"].tolist() == pytest.approx([(2.0 - 0.5 + 1 / 7) / 2, 0.0])
    max_flow, _ = L.stable_alignment(nll, ratings, max_flow=True)
    assert max_flow.tolist() == pytest.approx([2.0 + 0.5 * 2.0, 1.0])


# ---------------------------------------------------------------------------------------------------------
# CRINGE
# ---------------------------------------------------------------------------------------------------------


def test_cringe_hand_worked_with_one_positive_prediction():
    # k = 1 leaves exactly one candidate, so the "sample" is deterministic
    logits = torch.tensor([
        [[1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],   # positive sequence
        [[3.0, 1.0, 0.0, 2.0], [0.0, 5.0, 1.0, 4.0], [9.0, 9.0, 9.0, 9.0]],    # negative sequence
    ], requires_grad=True)
    labels = torch.tensor([[1, -100, -100], [0, 2, -100]])
    losses, metrics = L.cringe(logits, labels, torch.tensor([True, False]), ct_weight=0.5, num_pos_predictions=1)
    ce = math.log(sum(math.exp(v) for v in (1.0, 2.0, 0.0, -1.0))) - 2.0
    # token 0: y = 0 is the top-1, so y+ = token 3 (logit 2): softplus(3 - 2)
    # token 1: y = 2 is outside the top-2 {1, 3}; the 2nd is dropped, y+ = token 1: softplus(1 - 5)
    ct = (softplus(1.0) + softplus(-4.0)) / 2
    assert losses.tolist() == pytest.approx([ce, 0.5 * ct])
    assert metrics["num_tokens"].tolist() == [1, 2]
    (grad,) = torch.autograd.grad(losses[1], logits)
    sig = 1 / (1 + math.exp(-1.0))
    # gradient of 0.5 * softplus(s_y - s_y+) / 2 tokens: up on y, down on y+, nothing elsewhere
    assert grad[1, 0].tolist() == pytest.approx([0.25 * sig, 0.0, 0.0, -0.25 * sig])
    assert grad[1, 2].abs().sum().item() == 0.0  # ignored position


def test_cringe_samples_from_the_top_k_without_the_negative_token_and_is_reproducible():
    n = 20000
    token_logits = torch.tensor([2.0, 1.0, 0.5, -5.0])  # y = 0; candidates {1, 2} with softmax (0.62, 0.38)
    logits = token_logits.expand(1, n, 4).clone()
    labels = torch.zeros(1, n, dtype=torch.long)
    negative = torch.tensor([False])

    def run(seed: int):
        return L.cringe(logits, labels, negative, num_pos_predictions=2,
                        generator=torch.Generator().manual_seed(seed))[0]

    p1 = 1 / (1 + math.exp(-0.5))
    expected = p1 * softplus(2.0 - 1.0) + (1 - p1) * softplus(2.0 - 0.5)  # token 3 is never drawn
    assert run(0).item() == pytest.approx(expected, abs=0.01)
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


# ---------------------------------------------------------------------------------------------------------
# DPO family properties
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_dpo_is_log_two_at_zero_margin(beta):
    policy = torch.tensor([-3.0, -10.0])
    for label_smoothing in (0.0, 0.2):
        losses, metrics = L.dpo(policy, policy - 1, policy + 2, policy + 1, beta=beta,
                                label_smoothing=label_smoothing)
        assert losses.tolist() == pytest.approx([math.log(2)] * 2)
        assert metrics["margins"].tolist() == pytest.approx([0.0, 0.0])


# DiscoPOP is left out on purpose: its gate makes it non-convex, and near zero margin (where this test
# sits) it *rises* with the margin, as Lu et al. 2024 point out; APO-down lowers the chosen on purpose.
MONOTONE = ["dpo", "robust_dpo", "slic", "exo", "nca", "bco", "sppo", "aot", "aot_unpaired", "apo", "ipo",
            "sigmoid_norm", "kto", "orpo", "simpo", "cpo"]


@pytest.mark.parametrize("beta", [0.05, 1.0, 3.0])
def test_discopop_pushes_toward_the_rejected_answer_within_tau_over_beta_of_zero_margin(beta):
    """Why the offline bench runs DiscoPOP at a large β: a policy that starts as its reference sits at zero
    margin, where the loss rises with the margin, over a range of margins h of width ~tau / beta."""
    def slope(h: float) -> float:
        x = torch.tensor([h / 2], requires_grad=True)
        L.discopop(x, -x, torch.zeros(1), torch.zeros(1), beta=beta, tau=0.05)[0].sum().backward()
        return x.grad.item() / 2  # dL/dh, h = chosen log-ratio - rejected log-ratio

    assert slope(0.0) == pytest.approx(beta * (5 * (1 - math.log(2)) - 0.75), rel=1e-4)  # +0.78 beta
    assert slope(0.5 * 0.05 / beta) > 0 and slope(20 * 0.05 / beta) < 0


@pytest.mark.parametrize("name", MONOTONE)
def test_loss_decreases_when_the_chosen_log_prob_increases(name):
    chosen, rejected = torch.tensor([-2.0, -3.0]), torch.tensor([-2.5, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-2.2, -2.9]), torch.tensor([-2.4, -2.1])
    lengths = torch.tensor([3.0, 4.0])

    def loss(c):
        if name in ("ipo", "sigmoid_norm"):
            return L.get_loss(name)(c, rejected, ref_chosen, ref_rejected, chosen_lengths=lengths,
                                    rejected_lengths=lengths)[0]
        if name == "kto":
            return L.kto(c, ref_chosen, torch.tensor([True, True]), kl=0.1)[0]
        if name in ("orpo", "cpo"):
            return L.get_loss(name)(c / 4, rejected / 4, torch.ones(2))[0]  # mean token log-probs
        if name == "simpo":
            return L.simpo(c / 4, rejected / 4)[0]
        return L.get_loss(name)(c, rejected, ref_chosen, ref_rejected)[0]

    assert (loss(chosen + 0.5).sum() < loss(chosen).sum()).item()


def test_apo_down_lowers_both_likelihoods():
    # APO-down (Eq. 8) is for chosen answers worse than the model's own: gradient descent lowers the
    # chosen likelihood too (positive gradient), and the rejected one as well
    chosen = torch.tensor([0.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    losses, _ = L.apo(chosen, rejected, torch.zeros(1), torch.zeros(1), beta=1.0, variant="down")
    g_chosen, g_rejected = torch.autograd.grad(losses.sum(), [chosen, rejected])
    assert g_chosen.item() == pytest.approx(sigma_prime(0.0) - sigma_prime(2.0))
    assert g_rejected.item() == pytest.approx(sigma_prime(2.0))
    assert g_chosen.item() > 0 and g_rejected.item() > 0


def test_ipo_without_lengths_uses_summed_log_ratios():
    c, r = torch.tensor([-4.0]), torch.tensor([-8.0])
    summed, _ = L.ipo(c, r, torch.zeros(1), torch.zeros(1), chosen_lengths=None, rejected_lengths=None, beta=0.5)
    per_token, _ = L.ipo(c, r, torch.zeros(1), torch.zeros(1), chosen_lengths=torch.tensor([4]),
                         rejected_lengths=torch.tensor([4]), beta=0.5)
    assert summed.tolist() == pytest.approx([(4.0 - 1.0) ** 2])
    assert per_token.tolist() == pytest.approx([(1.0 - 1.0) ** 2])


def test_f_divergences_hand_worked():
    # one pair with chosen log-ratio log 2 and rejected log-ratio 0, beta = 1
    c, z = torch.tensor([math.log(2.0)]), torch.zeros(1)

    def dpo_with(f, alpha=0.5):
        return L.dpo(c, z, z, z, beta=1.0, f_divergence=f, f_alpha=alpha)[0].item()

    assert dpo_with("reverse_kl") == pytest.approx(softplus(-math.log(2.0)))
    assert dpo_with("forward_kl") == pytest.approx(softplus(-(1 - 1 / 2)))  # f'(u) = 1 - 1/u
    assert dpo_with("js_divergence") == pytest.approx(softplus(-math.log(4 / 3)))  # log(2u / (1 + u))
    assert dpo_with("alpha_divergence", 0.5) == pytest.approx(softplus(-(2 ** -0.5 - 1) / -0.5))
    assert dpo_with("alpha_divergence", 1.0) == pytest.approx(dpo_with("reverse_kl"))


def test_kto_reference_point_is_clamped_and_detached():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    kl = torch.tensor(-0.3, requires_grad=True)
    desirable = torch.tensor([True, False])
    clamped, metrics = L.kto(policy, torch.zeros(2), desirable, kl)
    unclamped, _ = L.kto(policy, torch.zeros(2), desirable, 0.0)
    torch.testing.assert_close(clamped, unclamped)
    assert metrics["kl"].tolist() == [0.0, 0.0]
    grad = torch.autograd.grad(clamped.sum(), [policy, kl], allow_unused=True)[1]
    assert grad is None


def test_bco_baseline_shifts_the_decision_boundary():
    z = torch.zeros(1)
    at_baseline, metrics = L.bco(torch.tensor([5.0]), torch.tensor([5.0]), z, z, beta=0.1, delta=0.5)
    assert at_baseline.item() == pytest.approx(2 * math.log(2))  # both rewards equal delta
    assert metrics["rewards_mean"].tolist() == pytest.approx([0.5])


# ---------------------------------------------------------------------------------------------------------
# Registry and bad inputs
# ---------------------------------------------------------------------------------------------------------


def test_registry_holds_every_loss_and_suggests_close_matches():
    assert L.get_loss("dpo") is L.dpo
    assert set(L.LOSSES) >= {"dpo", "ipo", "kto", "orpo", "simpo", "cpo", "rrhf", "pro", "cringe",
                             "stable_alignment"}
    with pytest.raises(ConfigError, match="did you mean 'dpo'"):
        L.get_loss("dop")
    with pytest.raises(ConfigError, match="'simpo'"):
        L.get_loss("simpoo")
    with pytest.raises(ConfigError, match="known losses"):
        L.get_loss("xyzzy")


@pytest.mark.parametrize("name", ["rrhf", "pro"])
def test_ranked_losses_reject_a_single_candidate(name):
    with pytest.raises(DataError, match="at least 2 candidates"):
        L.get_loss(name)(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(DataError, match="at least 2 candidates"):
        L.stable_alignment(torch.zeros(3, 1), torch.zeros(3, 1))


@pytest.mark.parametrize("name", ["rrhf", "pro"])
def test_ranked_losses_reject_non_finite_scores_naming_the_row(name):
    scores = torch.zeros(3, 2)
    scores[2, 1] = float("nan")
    with pytest.raises(DataError, match=r"row 2, field 'scores'"):
        L.get_loss(name)(scores, torch.zeros(3, 2), torch.zeros(3))
    rewards = torch.zeros(3, 2)
    rewards[1, 0] = float("inf")
    with pytest.raises(DataError, match=r"row 1, field 'rewards'"):
        L.get_loss(name)(torch.zeros(3, 2), rewards, torch.zeros(3))


def test_mismatched_shapes_are_named():
    x = torch.zeros(4)
    with pytest.raises(DataError, match="field 'ref_rejected_logps'"):
        L.dpo(x, x, x, torch.zeros(4, 1))  # [4] - [4, 1] would silently broadcast to [4, 4]
    with pytest.raises(DataError, match="field 'rewards'"):
        L.rrhf(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(DataError, match="field 'best_nll'"):
        L.pro(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(DataError, match="field 'labels'"):
        L.cringe(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, dtype=torch.bool))


def test_invalid_hyperparameters_raise_config_errors():
    x = torch.zeros(2)
    with pytest.raises(ConfigError, match="exo"):
        L.exo(x, x, x, x, label_smoothing=0.0)
    with pytest.raises(ConfigError, match="robust_dpo"):
        L.robust_dpo(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ConfigError, match="variant"):
        L.apo(x, x, x, x, variant="sideways")
    with pytest.raises(ConfigError, match="f_divergence"):
        L.dpo(x, x, x, x, f_divergence="hellinger")
    with pytest.raises(ConfigError, match="both"):
        L.ipo(x, x, x, x, chosen_lengths=torch.ones(2), rejected_lengths=None)


def test_docstring_examples_run():
    result = doctest.testmod(L, raise_on_error=False)
    assert result.attempted > 20 and result.failed == 0


def test_alignlab_losses_exports_every_loss():
    import alignlab.losses as public

    assert set(L.LOSSES) <= set(public.__all__)
    assert all(getattr(public, name) is fn for name, fn in L.LOSSES.items())
