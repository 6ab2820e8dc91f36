"""UDDIA-style inference-time adaptive optimisation: bias terms tuned on an attribute probe while decoding."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, build_tokenizer
from test_outer_sensei import PROMPTS

from alignlab.core.generation import GenerationConfig, generate
from alignlab.errors import ConfigError
from alignlab.interpret.probes import LinearProbe
from alignlab.outer.uddia import (
    UDDIAConfig,
    answer_states,
    fit_attribute_probe,
    residual_biases,
    uddia_generate,
    uddia_loss,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("uddia")
    tok = build_tokenizer(root)
    return tok, build_model(root, tok, seed=3).eval()


def test_uddia_loss_is_the_attribute_log_loss_plus_the_weighted_kl() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    base = torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]))
    mask = torch.tensor([[1.0, 1.0]])
    kl_second = 0.9 * torch.log(torch.tensor(1.8)) + 0.1 * torch.log(torch.tensor(0.2))
    expected = -torch.log(1 - torch.sigmoid(torch.tensor(0.3))) + 2.0 * kl_second / 2
    assert torch.allclose(uddia_loss(torch.tensor([0.3]), logits, base, mask, 2.0), expected[None], atol=1e-6)


def test_bias_hooks_shift_the_residual_stream_per_row_and_are_removed(tiny) -> None:
    tok, model = tiny
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    plain = model(input_ids=ids).logits
    biases = torch.zeros(2, 1, model.config.hidden_size)
    biases[1, 0, 0] = 3.0
    with residual_biases(model, biases):
        shifted = model(input_ids=ids).logits
    assert torch.allclose(shifted[0], plain[0], atol=1e-6) and not torch.allclose(shifted[1], plain[1], atol=1e-3)
    assert torch.allclose(model(input_ids=ids).logits, plain)


def test_without_interventions_uddia_decodes_as_the_plain_generator(tiny) -> None:
    """threshold = 1 never triggers: greedy answers equal the one generator's, segment boundaries notwithstanding."""
    tok, model = tiny
    probe = LinearProbe(torch.zeros(model.config.hidden_size), 0.0)
    gen = GenerationConfig(max_new_tokens=10, temperature=0.0)
    out = uddia_generate(model, tok, PROMPTS[:3], probe, UDDIAConfig(generation=gen, segment=3, threshold=1.0))
    assert out.completion_ids == generate(model, tok, PROMPTS[:3], gen).completion_ids
    assert out.interventions == 0 and out.redos == 0


def test_adaptive_optimisation_lowers_the_attribute_of_what_it_writes(tiny) -> None:
    """A probe fitted on the model's own answers ('undesired' = holds an 'e'); with UDDIA the answers' attribute
    probability under the unchanged model falls below plain sampling's (same seed); every intervention is a redo,
    and the model's weights are untouched. (Whether the probe's attribute is the true one is the world bench's
    question: a random tiny model's probe barely reads letters.)"""
    tok, model = tiny
    gen = GenerationConfig(max_new_tokens=8, seed=0)
    prompts = PROMPTS * 4
    sampled = generate(model, tok, [p for p in PROMPTS for _ in range(16)], gen)
    rows = [{"prompt": p, "answer": t, "label": int("e" in t)}
            for p, t in zip([p for p in PROMPTS for _ in range(16)], sampled.texts)]
    probe = fit_attribute_probe(model, tok, rows)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = generate(model, tok, prompts, replace_seed(gen, 5))
    steered = uddia_generate(model, tok, prompts, probe, UDDIAConfig(generation=replace_seed(gen, 5), segment=4,
                                                                     threshold=0.3, steps=5, lr=0.3, max_redo=2))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

    def attribute(out) -> float:
        with torch.no_grad():
            pooled = answer_states(model, out.prompt_ids, [c or [tok.eos_token_id] for c in out.completion_ids])[0]
        return float(torch.sigmoid(pooled @ probe.weight + probe.bias).mean())

    assert steered.interventions > 0 and steered.redos == steered.interventions
    assert attribute(steered) < attribute(plain) - 0.05


def replace_seed(config: GenerationConfig, seed: int) -> GenerationConfig:
    from dataclasses import replace

    return replace(config, seed=seed)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        UDDIAConfig(threshold=1.5)


def test_the_gate_reads_the_unchanged_model_so_tuning_the_probe_read_out_cannot_blind_it(tiny) -> None:
    """A probe that flags every answer of the unchanged model (large bias). The tuned biases sit on the very
    states the probe reads, so a big Adam step along −w drives the *biased* read-out to ~0 without fixing any
    text; the gate must still flag every segment (each redone max_redo times) and the reported attribute must be
    the unchanged model's."""
    tok, model = tiny
    weight = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    probe = LinearProbe(weight, 6.0)
    gen = GenerationConfig(max_new_tokens=6, temperature=0.0)
    prompts = PROMPTS[:2]
    out = uddia_generate(model, tok, prompts, probe, UDDIAConfig(generation=gen, segment=3, threshold=0.5, steps=3,
                                                                 lr=10.0, kl_weight=0.0, max_redo=1, layers=1))
    with torch.no_grad():
        pooled = answer_states(model, out.prompt_ids, [c or [tok.eos_token_id] for c in out.completion_ids])[0]
        unchanged = torch.sigmoid(pooled @ probe.weight + probe.bias)
    assert (unchanged > 0.5).all()  # the text stays flagged by the unchanged model ...
    assert torch.allclose(torch.tensor(out.attribute), unchanged, atol=1e-5)  # ... and that is what is reported
    segments = [-(-len(c) // 3) for c in out.completion_ids]
    assert out.interventions == sum(segments)  # every segment of every answer was flagged and redone once
