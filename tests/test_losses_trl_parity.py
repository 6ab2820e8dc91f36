"""Parity of ``alignlab.outer.losses`` with TRL 1.16: same inputs -> same loss and same gradients (1e-5).

How TRL's own loss code is called. TRL computes its losses inside trainer methods that also run the
model (``DPOTrainer._compute_loss``, ``KTOTrainer._compute_loss``) or right after a forward pass
(``CPOTrainer`` / ``ORPOTrainer.get_batch_loss_metrics``). Building a real trainer per configuration
needs a model, a tokenizer and a tokenised dataset, and would still hide the log-probs from us. Instead:

- trainer objects are made with ``object.__new__`` (``__init__`` skipped) and given only the attributes
  the loss method reads;
- the "model" handed to ``_compute_loss`` is a stand-in whose forward returns per-token log-probs that
  we build from leaf tensors (the whole sequence log-prob sits on the first completion token), with
  reference log-probs passed as precomputed inputs, exactly as TRL's ``precompute_ref_log_probs`` path
  receives them;
- for CPO/ORPO, ``concatenated_forward`` is replaced on the instance so ``get_batch_loss_metrics`` runs
  unmodified on our tensors.

So TRL's loss code itself runs, unmodified, and autograd differentiates it. If a TRL release renames an
attribute these methods read, these tests fail with an AttributeError naming it, which is the signal to
update the stand-ins. TRL reduces its loss to a batch mean, so per-example parity is checked by calling
TRL on one-example batches (except for the AOT losses, whose value depends on the whole batch).
"""

from __future__ import annotations

import os
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
trl_kto = pytest.importorskip("trl.trainer.kto_trainer")
trl_cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
trl_orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")

from alignlab.outer import losses as L  # noqa: E402

TOL = {"atol": 1e-5, "rtol": 1e-5}
BATCH, SEQ, PROMPT = 6, 10, 2  # completion tokens sit at positions [PROMPT, PROMPT + length)
BETAS = (0.1, 0.5, 2.0)


# ---------------------------------------------------------------------------------------------------------
# Stand-ins for the parts of a trainer that TRL's loss code touches
# ---------------------------------------------------------------------------------------------------------


class _IdentityAccelerator:
    """Single process: gathering is the identity."""

    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    @staticmethod
    def gather_for_metrics(x):
        return x


class _LogProbModel:
    """Stands in for a causal LM with TRL's fused LM head: returns given per-token log-probs.

    ``by_input`` maps ``id(input_ids)`` to the log-probs for that batch, so KTO's separate KL forward
    gets its own values.
    """

    training = False  # TRL logs under "eval" and skips its token counter

    def __init__(self, by_input: dict[int, torch.Tensor]):
        self.by_input = by_input

    def __call__(self, input_ids, **_):
        log_probs = self.by_input[id(input_ids)]
        return SimpleNamespace(log_probs=log_probs, entropy=torch.zeros_like(log_probs),
                               mean_logits=torch.zeros_like(log_probs),
                               is_top1=torch.zeros_like(log_probs, dtype=torch.bool))


def _per_token(seq_logps: torch.Tensor, width: int) -> torch.Tensor:
    """[n] sequence log-probs -> [n, width - 1] shifted per-token log-probs that sum to them exactly."""
    return F.pad(seq_logps.unsqueeze(1), (PROMPT - 1, width - 1 - PROMPT))


def _completion_mask(lengths: torch.Tensor, width: int = SEQ) -> torch.Tensor:
    positions = torch.arange(width)
    return ((positions >= PROMPT) & (positions < PROMPT + lengths.unsqueeze(1))).long()


def _trainer(cls, **attributes):
    trainer = object.__new__(cls)  # no __init__: no model, tokenizer or dataset needed
    trainer.__dict__.update(accelerator=_IdentityAccelerator(), aux_loss_enabled=False,
                            _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                            _total_train_tokens=0, _tp_size=1, **attributes)
    return trainer


# ---------------------------------------------------------------------------------------------------------
# DPO family: DPOTrainer._compute_loss
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DPOCase:
    trl_type: str
    beta: float
    label_smoothing: float = 0.0
    f_divergence: str = "reverse_kl"
    f_alpha: float = 0.5
    tau: float = 0.05
    kwargs: dict = field(default_factory=dict, hash=False)

    def __str__(self):
        return (f"{self.trl_type}-b{self.beta}-ls{self.label_smoothing}-{self.f_divergence}{self.f_alpha}"
                f"-tau{self.tau}")


OURS = {  # TRL loss_type -> (alignlab function, extra keyword arguments)
    "sigmoid": (L.dpo, {}), "robust": (L.robust_dpo, {}), "hinge": (L.slic, {}), "ipo": (L.ipo, {}),
    "exo_pair": (L.exo, {}), "nca_pair": (L.nca, {}), "bco_pair": (L.bco, {"delta": 0.0}),
    "sppo_hard": (L.sppo, {}), "aot": (L.aot, {}), "aot_unpaired": (L.aot_unpaired, {}),
    "apo_zero": (L.apo, {"variant": "zero"}), "apo_down": (L.apo, {"variant": "down"}),
    "discopop": (L.discopop, {}), "sigmoid_norm": (L.sigmoid_norm, {}),
}
F_DIVERGENCE_TYPES = {"sigmoid", "robust", "hinge", "ipo", "exo_pair", "discopop", "sigmoid_norm"}
SMOOTHED_TYPES = {"robust", "exo_pair", "aot", "aot_unpaired"}
LENGTH_TYPES = {"ipo", "sigmoid_norm"}
BATCH_COUPLED_TYPES = {"aot", "aot_unpaired"}
F_DIVERGENCES = [("reverse_kl", 0.5), ("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.5),
                 ("alpha_divergence", 1.5), ("alpha_divergence", 1.0)]


def _dpo_cases() -> list[DPOCase]:
    cases = []
    for beta in BETAS:
        for trl_type in OURS:
            smoothings = {"robust": (0.0, 0.1, 0.3), "exo_pair": (1e-3, 0.1, 0.3),
                          "aot": (0.0, 0.1, 0.3), "aot_unpaired": (0.0, 0.1, 0.3)}.get(trl_type, (0.0,))
            divergences = F_DIVERGENCES if trl_type in F_DIVERGENCE_TYPES else [("reverse_kl", 0.5)]
            for ls in smoothings:
                for f_div, f_alpha in divergences:
                    cases.append(DPOCase(trl_type, beta, ls, f_div, f_alpha))
            if trl_type == "discopop":
                cases.append(DPOCase(trl_type, beta, tau=0.5))
    return cases


def _trl_dpo_loss(case: DPOCase, logps: dict[str, torch.Tensor], lengths: torch.Tensor):
    """Run TRL's DPOTrainer._compute_loss on the given sequence log-probs; return (loss, trainer)."""
    trainer = _trainer(trl_dpo.DPOTrainer, beta=case.beta, loss_types=[case.trl_type], loss_weights=[1.0],
                       label_smoothing=case.label_smoothing, f_divergence_type=case.f_divergence,
                       f_alpha_divergence_coef=case.f_alpha, ld_alpha=None, use_weighting=False,
                       precompute_ref_logps=True, args=SimpleNamespace(discopop_tau=case.tau))
    n = logps["policy_chosen"].shape[0]
    input_ids = torch.zeros(2 * n, SEQ, dtype=torch.long)
    model = _LogProbModel({id(input_ids): _per_token(torch.cat([logps["policy_chosen"],
                                                                 logps["policy_rejected"]]), SEQ)})
    trainer.model = model
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "completion_mask": _completion_mask(lengths), "ref_chosen_logps": logps["ref_chosen"],
              "ref_rejected_logps": logps["ref_rejected"]}
    return trainer._compute_loss(model, inputs, return_outputs=False), trainer


def _our_dpo_losses(case: DPOCase, logps: dict[str, torch.Tensor], lengths: torch.Tensor):
    fn, extra = OURS[case.trl_type]
    kwargs = {"beta": case.beta, **extra}
    if case.trl_type in F_DIVERGENCE_TYPES:
        kwargs.update(f_divergence=case.f_divergence, f_alpha=case.f_alpha)
    if case.trl_type in SMOOTHED_TYPES:
        kwargs["label_smoothing"] = case.label_smoothing
    if case.trl_type in LENGTH_TYPES:
        n = logps["policy_chosen"].shape[0]
        kwargs.update(chosen_lengths=lengths[:n], rejected_lengths=lengths[n:])
    if case.trl_type == "discopop":
        kwargs["tau"] = case.tau
    return fn(logps["policy_chosen"], logps["policy_rejected"], logps["ref_chosen"], logps["ref_rejected"],
              **kwargs)


def _random_logps(seed: int, n: int = BATCH, spread: float = 1.5) -> dict[str, torch.Tensor]:
    """Sequence log-probs of a policy near its reference (log-ratios ~ N(0, spread^2)), as leaves."""
    g = torch.Generator().manual_seed(seed)
    policy_chosen = -1 - 20 * torch.rand(n, generator=g)
    policy_rejected = -1 - 20 * torch.rand(n, generator=g)
    ref_chosen = policy_chosen + spread * torch.randn(n, generator=g)
    ref_rejected = policy_rejected + spread * torch.randn(n, generator=g)
    return {name: t.clone().requires_grad_(True) for name, t in
            {"policy_chosen": policy_chosen, "policy_rejected": policy_rejected, "ref_chosen": ref_chosen,
             "ref_rejected": ref_rejected}.items()}


@pytest.mark.parametrize("case", _dpo_cases(), ids=str)
def test_dpo_family_loss_and_gradients_match_trl(case: DPOCase):
    logps = _random_logps(seed=zlib.crc32(str(case).encode()))
    lengths = torch.randint(1, SEQ - PROMPT + 1, (2 * BATCH,), generator=torch.Generator().manual_seed(1))

    trl_loss, trainer = _trl_dpo_loss(case, logps, lengths)
    trl_grads = torch.autograd.grad(trl_loss, list(logps.values()))
    ours, metrics = _our_dpo_losses(case, logps, lengths)
    assert ours.shape == (BATCH,)
    our_grads = torch.autograd.grad(ours.mean(), list(logps.values()))

    torch.testing.assert_close(ours.mean(), trl_loss, **TOL)
    for name, ours_g, trl_g in zip(logps, our_grads, trl_grads):
        torch.testing.assert_close(ours_g, trl_g, **TOL, msg=lambda m, name=name: f"grad wrt {name}: {m}")
    logged = trainer._metrics["eval"]
    for ours_key, trl_key in [("rewards_chosen", "rewards/chosen"), ("rewards_rejected", "rewards/rejected"),
                              ("margins", "rewards/margins"), ("accuracies", "rewards/accuracies")]:
        assert metrics[ours_key].mean().item() == pytest.approx(logged[trl_key][-1], abs=1e-5)

    if case.trl_type in BATCH_COUPLED_TYPES:
        return
    for i in range(BATCH):  # per-example values: TRL on one-example batches
        one = {name: t[i : i + 1] for name, t in logps.items()}
        trl_one, _ = _trl_dpo_loss(case, one, lengths[[i, BATCH + i]])
        torch.testing.assert_close(ours[i], trl_one, **TOL)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
def test_conservative_dpo_matches_trl_smoothed_sigmoid(beta, label_smoothing):
    # TRL 1.16's DPOTrainer has no label-smoothed "sigmoid"; its CPOTrainer keeps the conservative-DPO
    # formula on logits = chosen - rejected, so feeding it the log-ratios is TRL's own cDPO.
    logps = _random_logps(seed=7)
    trainer = _trainer(trl_cpo.CPOTrainer, beta=beta, label_smoothing=label_smoothing, loss_type="sigmoid",
                       alpha=0.0)
    trl_losses, _, _ = trainer.cpo_loss(logps["policy_chosen"] - logps["ref_chosen"],
                                        logps["policy_rejected"] - logps["ref_rejected"])
    ours, _ = L.dpo(logps["policy_chosen"], logps["policy_rejected"], logps["ref_chosen"], logps["ref_rejected"],
                    beta=beta, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, trl_losses, **TOL)
    leaves = list(logps.values())
    for ours_g, trl_g in zip(torch.autograd.grad(ours.sum(), leaves), torch.autograd.grad(trl_losses.sum(), leaves)):
        torch.testing.assert_close(ours_g, trl_g, **TOL)


# ---------------------------------------------------------------------------------------------------------
# KTO: KTOTrainer._compute_loss
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.33, 1.0), (1.0, 0.7)])
@pytest.mark.parametrize(("calculate_kl", "kl_shift"), [(True, 0.5), (True, -1.5), (False, 0.0)])
def test_kto_loss_and_gradients_match_trl(beta, weights, calculate_kl, kl_shift):
    n = 8
    g = torch.Generator().manual_seed(int(beta * 100) + int(weights[0] * 10) + calculate_kl)
    policy = (-1 - 20 * torch.rand(n, generator=g)).requires_grad_(True)
    ref = (policy.detach() + 1.5 * torch.randn(n, generator=g)).requires_grad_(True)
    kl_policy = -1 - 20 * torch.rand(n, generator=g)
    kl_ref = kl_policy - kl_shift - torch.rand(n, generator=g)  # kl_shift < 0: a negative estimate, clamped to 0
    desirable = torch.tensor([True, False, True, True, False, True, False, False])

    trainer = _trainer(trl_kto.KTOTrainer, beta=beta, loss_type="kto", desirable_weight=weights[0],
                       undesirable_weight=weights[1], calculate_KL=calculate_kl, precompute_ref_logps=True)
    input_ids, kl_input_ids = torch.zeros(n, SEQ, dtype=torch.long), torch.zeros(n, SEQ, dtype=torch.long)
    model = _LogProbModel({id(input_ids): _per_token(policy, SEQ), id(kl_input_ids): _per_token(kl_policy, SEQ)})
    trainer.model = model
    mask = _completion_mask(torch.full((n,), 3))
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": mask,
             "label": desirable, "ref_logps": ref}
    if calculate_kl:
        batch.update(KL_input_ids=kl_input_ids, KL_attention_mask=torch.ones_like(kl_input_ids),
                     KL_completion_mask=mask, ref_KL_logps=kl_ref)
    trl_loss = trainer._compute_loss(model, batch, return_outputs=False)

    kl = (kl_policy - kl_ref).mean() if calculate_kl else 0.0
    ours, metrics = L.kto(policy, ref, desirable, kl, beta=beta, desirable_weight=weights[0],
                          undesirable_weight=weights[1])
    torch.testing.assert_close(ours.mean(), trl_loss, **TOL)
    for ours_g, trl_g in zip(torch.autograd.grad(ours.mean(), [policy, ref]),
                             torch.autograd.grad(trl_loss, [policy, ref])):
        torch.testing.assert_close(ours_g, trl_g, **TOL)
    logged = trainer._metrics["eval"]
    assert metrics["rewards"][desirable].mean().item() == pytest.approx(logged["rewards/chosen"][-1], abs=1e-5)
    assert metrics["rewards"][~desirable].mean().item() == pytest.approx(logged["rewards/rejected"][-1], abs=1e-5)
    assert metrics["kl"][0].item() == pytest.approx(logged["kl"][-1], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# CPO, SimPO (CPO with loss_type="simpo"), AlphaPO, ORPO: get_batch_loss_metrics
# ---------------------------------------------------------------------------------------------------------


def _reference_free_inputs(seed: int, low: float, high: float):
    g = torch.Generator().manual_seed(seed)
    chosen = (low + (high - low) * torch.rand(BATCH, generator=g)).requires_grad_(True)
    rejected = (low + (high - low) * torch.rand(BATCH, generator=g)).requires_grad_(True)
    nll = (0.5 + 2 * torch.rand(BATCH, generator=g)).requires_grad_(True)
    return chosen, rejected, nll


def _run_batch_loss_metrics(trainer, chosen, rejected, nll):
    # TRL's NLL is one number for the batch; ours is per example, and its mean is what TRL would compute
    logits = torch.zeros(BATCH, 3, 5)
    trainer.concatenated_forward = lambda model, batch: (chosen, rejected, logits, logits, nll.mean())
    return trainer.get_batch_loss_metrics(model=None, batch={}, train_eval="train")


CPO_CASES = [(loss_type, beta, ls, cpo_alpha, gamma, alpha)
             for beta in BETAS for ls in (0.0, 0.2) for cpo_alpha in (0.0, 1.0)
             for loss_type, gamma, alpha in [("sigmoid", 0.0, 0.0), ("sigmoid", 0.0, 0.25),
                                              ("simpo", 0.5, 0.0), ("simpo", 1.0, 0.0)]]


@pytest.mark.parametrize(("loss_type", "beta", "label_smoothing", "cpo_alpha", "gamma", "alpha"), CPO_CASES)
def test_cpo_and_simpo_match_trl(loss_type, beta, label_smoothing, cpo_alpha, gamma, alpha):
    # "simpo" in TRL averages log-probs over tokens; here the inputs play that role (range [-3, -0.1])
    low, high = (-3.0, -0.1) if loss_type == "simpo" else (-10.0, -1.0)
    chosen, rejected, nll = _reference_free_inputs(seed=int(beta * 10 + gamma * 3 + alpha * 7), low=low, high=high)
    trainer = _trainer(trl_cpo.CPOTrainer, beta=beta, label_smoothing=label_smoothing, loss_type=loss_type,
                       cpo_alpha=cpo_alpha, simpo_gamma=gamma, alpha=alpha)
    trl_loss, trl_metrics = _run_batch_loss_metrics(trainer, chosen, rejected, nll)
    trl_per_example, _, _ = trainer.cpo_loss(chosen, rejected)

    ours, metrics = L.cpo(chosen, rejected, nll, beta=beta, cpo_alpha=cpo_alpha, label_smoothing=label_smoothing,
                          gamma=gamma, alpha=alpha)
    torch.testing.assert_close(ours.mean(), trl_loss, **TOL)
    torch.testing.assert_close(ours - cpo_alpha * nll, trl_per_example, **TOL)
    leaves = [chosen, rejected, nll]
    trl_grads = torch.autograd.grad(trl_loss, leaves, allow_unused=True, materialize_grads=True)
    for ours_g, trl_g in zip(torch.autograd.grad(ours.mean(), leaves, allow_unused=True, materialize_grads=True),
                             trl_grads):
        torch.testing.assert_close(ours_g, trl_g, **TOL)
    assert metrics["margins"].mean().item() == pytest.approx(trl_metrics["rewards/margins"], abs=1e-5)
    assert metrics["accuracies"].mean().item() == pytest.approx(trl_metrics["rewards/accuracies"], abs=1e-6)

    if loss_type == "simpo" and cpo_alpha == 0.0:  # SimPO proper is CPO-SimPO without the NLL term
        simpo_losses, _ = L.simpo(chosen, rejected, beta=beta, gamma=gamma, label_smoothing=label_smoothing)
        torch.testing.assert_close(simpo_losses, trl_per_example, **TOL)
        torch.testing.assert_close(torch.autograd.grad(simpo_losses.mean(), [chosen, rejected]),
                                   trl_grads[:2], **TOL)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("low", [-3.0, -0.3])  # mean token log-probs: p = exp(.) on both sides of 1/2
def test_orpo_matches_trl(beta, low):
    chosen, rejected, nll = _reference_free_inputs(seed=int(beta * 10 - low), low=low, high=-0.02)
    trainer = _trainer(trl_orpo.ORPOTrainer, beta=beta)
    trl_loss, trl_metrics = _run_batch_loss_metrics(trainer, chosen, rejected, nll)
    trl_ratio_terms, *_ = trainer.odds_ratio_loss(chosen, rejected)  # beta * log sigma(log odds ratio)

    ours, metrics = L.orpo(chosen, rejected, nll, beta=beta)
    torch.testing.assert_close(ours.mean(), trl_loss, **TOL)
    torch.testing.assert_close(ours, nll - trl_ratio_terms, **TOL)
    leaves = [chosen, rejected, nll]
    for ours_g, trl_g in zip(torch.autograd.grad(ours.mean(), leaves), torch.autograd.grad(trl_loss, leaves)):
        torch.testing.assert_close(ours_g, trl_g, **TOL)
    assert metrics["log_odds_ratio"].mean().item() == pytest.approx(trl_metrics["log_odds_ratio"], abs=1e-5)
    assert metrics["log_odds_chosen"].mean().item() == pytest.approx(trl_metrics["log_odds_chosen"], abs=1e-5)
