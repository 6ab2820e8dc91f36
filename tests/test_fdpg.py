"""f-DPG's advantages: reverse KL is RLHF's KL-penalised reward, the target is a fixed point of every divergence,
and each divergence pushes toward samples the target likes more than the policy does."""

from __future__ import annotations

import pytest
import torch

from alignlab.outer.online.fdpg import FDPGConfig, fdpg_advantages

DIVERGENCES = ["reverse_kl", "forward_kl", "tv", "js"]


def test_reverse_kl_advantage_is_the_kl_penalised_reward_over_beta() -> None:
    policy, ref = torch.tensor([-3.0, -2.0, -4.0, -1.0]), torch.tensor([-2.5, -2.0, -5.0, -1.5])
    rewards, beta = torch.tensor([1.0, 0.0, 2.0, 0.5]), 0.5
    adv = fdpg_advantages(policy, ref, rewards, 2, beta, "reverse_kl")
    penalised = (rewards / beta - (policy - ref)).view(2, 2)  # r/β − log(π/π_ref): RLHF's reward, KL in it
    assert adv.tolist() == pytest.approx((penalised - penalised.mean(1, keepdim=True)).flatten().tolist())


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_the_target_is_a_fixed_point(divergence) -> None:
    """π = p ∝ π_ref·exp(r/β) exactly (up to the unknown Z): t = 1 everywhere, no gradient."""
    ref, rewards, beta = torch.tensor([-2.0, -3.0, -1.0]), torch.tensor([0.3, 1.0, -0.2]), 0.25
    policy = ref + rewards / beta - 7.0  # any normaliser
    assert fdpg_advantages(policy, ref, rewards, 3, beta, divergence).abs().max() < 1e-5


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_advantage_falls_as_the_policy_overweights_a_sample(divergence) -> None:
    """f is convex, so f' rises with t = π/p: the sample the policy overweights most gets the lowest advantage; a
    constant added to every reward only moves Z."""
    ref, rewards = torch.zeros(4), torch.zeros(4)
    policy = torch.tensor([-4.0, -3.0, -2.0, -1.0])  # t grows left to right
    adv = fdpg_advantages(policy, ref, rewards, 4, 1.0, divergence)
    assert all(a >= b for a, b in zip(adv.tolist(), adv.tolist()[1:])) and adv[0] > adv[-1]
    shifted = fdpg_advantages(policy, ref, rewards + 5.0, 4, 1.0, divergence)
    assert shifted.tolist() == pytest.approx(adv.tolist(), abs=1e-5)


def test_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="beta > 0"):
        FDPGConfig(beta=0.0)
    with pytest.raises(ValueError, match="group_size >= 2"):
        FDPGConfig(group_size=1)
