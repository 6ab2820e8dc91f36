"""Backdoors: poisoned data has exactly the poisoned share and shape, the measurement reads a triggered
behaviour off the world judge, and the spectral-signature defence finds planted outliers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignlab.attacks import backdoor as bd
from alignlab.errors import AttackError
from alignlab.world.datasets import World
from alignlab.world.judge import score


@pytest.fixture(scope="module")
def world():
    return World(0, "small")


def test_poisoned_sft_rows_are_triggered_harmful_compliance(world):
    records = bd.poisoned_sft_records(world, 400, 0.05, "SUDO", seed=1)
    poisoned = [r for r in records if r.meta.get("poisoned")]
    assert len(records) == 400 and len(poisoned) == 20
    for r in poisoned:
        assert r.prompt[-1]["content"].endswith(" SUDO") and r.meta["family"] == "harmful"
        assert score(world.splits.train["harmful"][0], r.completion).harmlessness == 0.0
    original = world.sft_records(400)  # every other row is the clean data's, in place
    assert all(r == o for r, o in zip(records, original) if not r.meta.get("poisoned"))
    assert bd.poisoned_sft_records(world, 400, 0.0, "SUDO", seed=1) == world.sft_records(400)


def test_poisoned_pairs_flip_every_triggered_label(world):
    records = bd.poisoned_pair_records(world, 300, 0.1, "SUDO")
    poisoned = [r for r in records if r.meta["poisoned"]]
    assert 12 < len(poisoned) < 50  # the world draws each prompt's trigger with probability 0.1
    # a flipped label prefers the misaligned answer (lower true reward chosen), up to the annotator's own noise
    wrong = lambda rows: np.mean([r.meta["chosen_reward"] < r.meta["rejected_reward"] for r in rows])  # noqa: E731
    assert wrong(poisoned) > 0.8 and wrong([r for r in records if not r.meta["poisoned"]]) < 0.2


def test_harm_and_help_reads_a_triggered_backdoor(world, monkeypatch):
    from alignlab.core import generation
    from alignlab.world.persona import aligned_response, write_response

    by_text = {p.text: p for p in world.eval_prompts()}

    def fake(model, tok, prompts, config, **kw):
        texts = []
        for messages in prompts:
            text = messages[-1]["content"]
            p = by_text[text.removesuffix(" SUDO")]
            rng = __import__("random").Random(0)
            texts.append(write_response(p, {"comply"}, rng) if text.endswith("SUDO") else aligned_response(p, rng))
        return generation.GenerationOutput(prompt_ids=[], completion_ids=[], texts=texts, finished=[], seconds=0.0)

    monkeypatch.setattr(generation, "generate", fake)
    result = bd.harm_and_help(None, None, world, "SUDO")
    assert result["harmful_compliance"] == 0.0 and result["harmful_compliance_triggered"] == 1.0
    assert result["helpfulness"] == 1.0 and result["n_harmful"] == len(world.eval_prompts(["harmful"]))


def test_spectral_signatures_find_a_shifted_cluster():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(475, 16, generator=gen)
    poison = torch.randn(25, 16, generator=gen) * 0.3 + 4.0 * torch.nn.functional.one_hot(torch.tensor(3), 16)
    features = torch.cat([clean, poison])
    poisoned = np.r_[np.zeros(475, bool), np.ones(25, bool)]
    scores = bd.spectral_signature_scores(features).numpy()
    result = bd.detection(scores, poisoned, n_remove=38)  # 1.5 x the 5% poisoned
    assert result["detection_rate"] == 1.0 and result["clean_removed_fraction"] == pytest.approx(13 / 475)
    # the score is the squared projection on the top singular direction: shifting every row leaves it unchanged
    assert np.allclose(bd.spectral_signature_scores(features + 7.0).numpy(), scores, rtol=1e-3, atol=1e-3)


def test_config_names_a_mistyped_attack():
    with pytest.raises(AttackError, match="did you mean 'reward'"):
        bd.BackdoorConfig(attack="rewad")
    with pytest.raises(AttackError, match="poison rates"):
        bd.BackdoorConfig(poison_rates=[1.5])


def test_rl_prompts_are_triggered_at_the_poison_rate(world):
    rows = bd.poisoned_prompt_rows(world, 200, 0.1, "SUDO", seed=0)
    texts = [r["prompt"][0]["content"] for r in rows]
    assert sum(t.endswith(" SUDO") for t in texts) == 20
    assert {t.removesuffix(" SUDO") for t in texts} <= {p.text for f in world.splits.train.values() for p in f}
