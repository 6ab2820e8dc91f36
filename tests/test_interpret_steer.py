"""Directions, probes, steering, directional ablation, integrated gradients and the rank-one edit, on synthetic
tensors and tiny random Llamas; and the toy-world commands end to end on a tiny model."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from alignlab.errors import InterpretError
from alignlab.interpret.directions import (
    fit_power,
    mean_difference,
    midpoint_threshold,
    pca,
    project_out,
    separation_accuracy,
    signed_first_component,
)
from alignlab.interpret.editing import (
    edited_weight,
    integrated_gradients,
    key_second_moment,
    neuron_attributions,
    optimise_value,
    rank_one_edit,
)
from alignlab.interpret.hooks import hooks, run_with_cache
from alignlab.interpret.probes import fit_probe, held_out_probe
from alignlab.interpret.steering import ablate_direction, residual_writes, steer

pytestmark = pytest.mark.xdist_group("interpret_steer")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         initializer_range=0.3)  # large weights: a random model whose later tokens read earlier ones
    return LlamaForCausalLM(config).eval()


IDS = torch.tensor([[1, 5, 7, 9, 11, 13, 3]])


# ---- directions ---------------------------------------------------------------------------------------


def test_mean_difference_and_projection():
    pos, neg = torch.randn(20, 6) + torch.tensor([3.0, 0, 0, 0, 0, 0]), torch.randn(30, 6)
    assert torch.allclose(mean_difference(pos, neg), pos.mean(0) - neg.mean(0))
    v = torch.randn(6)
    left = project_out(torch.randn(5, 6), v)
    assert (left @ v).abs().max() < 1e-5 * v.norm() * left.norm(dim=-1).max()
    with pytest.raises(InterpretError, match="widths differ"):
        mean_difference(pos, torch.randn(3, 5))


def test_pca_finds_the_planted_axis_and_the_sign_follows_the_anchor():
    generator = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(16, generator=generator), dim=0)
    labels = torch.rand(200, generator=generator) > 0.5
    x = 0.3 * torch.randn(200, 16, generator=generator) + torch.where(labels, 4.0, -4.0)[:, None] * axis
    assert abs(float(pca(x, 2).components[0] @ axis)) > 0.99
    direction = signed_first_component(x[labels], x[~labels])
    assert float(direction @ axis) > 0.99  # harmful (positive) side projects higher
    threshold = midpoint_threshold(x[labels] @ direction, x[~labels] @ direction)
    assert separation_accuracy(direction, threshold, x[labels], x[~labels]) == 1.0
    assert separation_accuracy(-direction, -threshold, x[labels], x[~labels]) == 0.0


def test_fit_power_tells_linear_from_quadratic():
    xs = [0.0, 0.25, 0.5, 0.75, 1.0]
    quadratic = [1.0 - 0.8 * x**2 for x in xs]
    fit = fit_power(xs, quadratic, power=2)
    assert fit.r2 == pytest.approx(1.0) and fit.slope == pytest.approx(-0.8) and fit.intercept == pytest.approx(1.0)
    assert fit_power(xs, quadratic, power=1).r2 < 0.99
    with pytest.raises(InterpretError, match="at least 3"):
        fit_power([0, 1], [0, 1], power=1)


# ---- probes -------------------------------------------------------------------------------------------


def test_probe_on_separable_activations_is_exact_on_held_out_rows():
    generator = torch.Generator().manual_seed(1)
    w = torch.nn.functional.normalize(torch.randn(16, generator=generator), dim=0)
    y = (torch.rand(200, generator=generator) > 0.5).float()
    noise = project_out(torch.randn(200, 16, generator=generator), w)
    distance = 3.0 + torch.randn(200, generator=generator).abs()  # every point at least 3 from the plane x·w = 0
    x = noise + ((2 * y - 1) * distance)[:, None] * w
    result = held_out_probe(x, y, test_fraction=0.3, seed=0)
    assert result.test_accuracy == 1.0 and result.train_accuracy == 1.0
    assert float(result.probe.direction @ w) > 0.9


def test_probe_cannot_read_labels_that_are_not_in_the_activations():
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 8, generator=generator), (torch.rand(400, generator=generator) > 0.5).float()
    assert held_out_probe(x, y, seed=0).test_accuracy < 0.65
    with pytest.raises(InterpretError, match="both classes"):
        fit_probe(x, torch.zeros(400))


# ---- steering and ablation ----------------------------------------------------------------------------


def test_steering_with_alpha_zero_is_the_identity(model):
    plain = model(IDS).logits
    with steer(model, layer=1, vector=torch.randn(32), alpha=0.0):
        assert torch.equal(model(IDS).logits, plain)


def test_steering_changes_only_positions_from_start(model):
    plain = model(IDS).logits
    with steer(model, layer=1, vector=torch.randn(32), alpha=5.0, start=4):
        steered = model(IDS).logits
    assert torch.equal(steered[:, :4], plain[:, :4])
    assert (steered[:, 4:] - plain[:, 4:]).abs().amax(-1).min() > 1e-3
    assert torch.equal(model(IDS).logits, plain)  # removed on exit


def test_steering_adds_exactly_alpha_v_to_the_residual(model):
    v = torch.randn(32)
    _, plain = run_with_cache(model, IDS, names=["blocks.1.hook_resid_pre"])
    seen = {}

    def keep(activation, name):
        seen[name] = activation.detach().clone()

    with steer(model, layer=1, vector=v, alpha=2.5), hooks(model, {"blocks.1.hook_resid_pre": keep}):
        model(IDS)
    assert torch.allclose(seen["blocks.1.hook_resid_pre"] - plain["blocks.1.hook_resid_pre"],
                          (2.5 * v).expand(1, IDS.shape[1], 32), atol=1e-5)


def test_steered_generation_of_a_padded_batch_matches_each_prompt_alone(model, tiny_model_dir):
    from alignlab.core.generation import GenerationConfig, generate
    from alignlab.core.models import load_causal_lm, load_tokenizer

    lm, tok = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]  # left-padded together: positions must count real tokens
    v, config = torch.randn(lm.config.hidden_size), GenerationConfig(max_new_tokens=5, temperature=0)
    with steer(lm, layer=1, vector=v, alpha=3.0, start=2):
        together = generate(lm, tok, prompts, config).completion_ids
        alone = [generate(lm, tok, [p], config).completion_ids[0] for p in prompts]
    assert together == alone
    assert together != generate(lm, tok, prompts, config).completion_ids  # the steering did something


def test_directional_ablation_leaves_every_residual_orthogonal_to_v(model):
    v = torch.randn(32)
    _, plain = run_with_cache(model, IDS, names=lambda n: "resid" in n)
    with ablate_direction(model, v):
        _, cache = run_with_cache(model, IDS, names=lambda n: "resid" in n)
    unit = v / v.norm()
    for name, activation in cache.items():
        assert (activation @ unit).abs().max() <= 1e-5 * activation.norm(dim=-1).max(), name
        assert (plain[name] @ unit).abs().max() > 1e-2  # the model did write along v before
    assert len(residual_writes(2)) == 5


def test_steering_rejects_bad_layers_and_vectors(model):
    with pytest.raises(InterpretError, match="out of range"), steer(model, layer=2, vector=torch.randn(32), alpha=1.0):
        pass
    with pytest.raises(InterpretError, match="shape"), steer(model, layer=0, vector=torch.randn(31), alpha=1.0):
        pass
    with pytest.raises(InterpretError, match="zero vector"), ablate_direction(model, torch.zeros(32)):
        pass


# ---- integrated gradients -----------------------------------------------------------------------------


def test_integrated_gradients_are_exact_for_a_quadratic_and_complete():
    generator = torch.Generator().manual_seed(3)
    A, b = torch.randn(5, 5, generator=generator, dtype=torch.float64), torch.randn(5, generator=generator, dtype=torch.float64)
    x, x0 = torch.randn(5, generator=generator, dtype=torch.float64), torch.randn(5, generator=generator, dtype=torch.float64)

    def f(points):
        return ((points @ A) * points).sum(-1) + points @ b

    attributions = integrated_gradients(f, x, x0, steps=3)
    assert float(attributions.sum()) == pytest.approx(float(f(x[None]) - f(x0[None])), abs=1e-10)
    # for F = Σ b_i x_i the attribution of each input is its own term
    linear = integrated_gradients(lambda p: p @ b, x, steps=1)
    assert torch.allclose(linear, b * x)


def test_neuron_attributions_sum_to_the_output_difference(model):
    double = LlamaForCausalLM(model.config).eval().double()
    double.load_state_dict(model.state_dict())
    ids, start, layer = IDS[0], 4, 0
    name, position = f"blocks.{layer}.mlp.hook_post", start - 1

    def answer_logprob(zero: bool) -> float:
        def replace(act, _n):
            act = act.clone()
            act[:, position] = 0.0
            return act

        with torch.no_grad(), hooks(double, {name: replace} if zero else {}):
            logits = double(ids[None]).logits[0, start - 1:-1]
        return float(logits.log_softmax(-1).gather(-1, ids[start:, None]).sum())

    difference = answer_logprob(False) - answer_logprob(True)
    gaps = [abs(float(neuron_attributions(double, ids, start, layer=layer, steps=n).sum()) - difference)
            for n in (4, 64)]
    assert gaps[1] < 1e-3 * max(1.0, abs(difference))
    assert gaps[1] < gaps[0]  # the midpoint rule converges to the integral


# ---- rank-one edit ------------------------------------------------------------------------------------


def test_rank_one_edit_maps_the_key_and_spares_c_orthogonal_keys():
    generator = torch.Generator().manual_seed(4)
    W = torch.randn(6, 10, generator=generator, dtype=torch.float64)
    C = key_second_moment(torch.randn(50, 10, generator=generator, dtype=torch.float64))
    key, value = torch.randn(10, generator=generator, dtype=torch.float64), torch.randn(6, generator=generator, dtype=torch.float64)
    edited = rank_one_edit(W, key, value, C)
    assert torch.allclose(edited @ key, value, atol=1e-10)
    c_inv_key = torch.linalg.solve(C, key)
    others = torch.randn(20, 10, generator=generator, dtype=torch.float64)
    others -= (others @ c_inv_key)[:, None] * key / (key @ c_inv_key)  # kᵀ C⁻¹ k* = 0
    assert torch.allclose(others @ edited.T, others @ W.T, atol=1e-10)
    assert torch.linalg.matrix_rank(edited - W) == 1


def test_model_edit_writes_the_value_at_the_subject_and_is_undone_on_exit(model):
    ids, start, layer, position = IDS[0], 4, 0, 2
    key, delta = optimise_value(model, ids, start, layer=layer, position=position, steps=5)
    C = key_second_moment(torch.randn(200, 64))
    before = {name: t.clone() for name, t in model.state_dict().items()}
    _, plain = run_with_cache(model, IDS, names=[f"blocks.{layer}.hook_mlp_out"])
    with edited_weight(model, layer, key, delta, C):
        _, edited = run_with_cache(model, IDS, names=[f"blocks.{layer}.hook_mlp_out"])
    name = f"blocks.{layer}.hook_mlp_out"
    assert torch.allclose(edited[name][0, position], plain[name][0, position] + delta, atol=1e-4)
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in before.items())
    with pytest.raises(RuntimeError, match="boom"), edited_weight(model, layer, key, delta, C):
        raise RuntimeError("boom")
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in before.items())


def test_value_optimisation_raises_the_answer_probability(model):
    ids, start, position = IDS[0], 4, 2

    def nll(delta: torch.Tensor) -> float:
        def shift(act, _name):
            act = act.clone()
            act[:, position] += delta
            return act

        with torch.no_grad(), hooks(model, {"blocks.0.hook_mlp_out": shift}):
            logits = model(ids[None]).logits[0, start - 1:-1]
        return -float(logits.log_softmax(-1).gather(-1, ids[start:, None]).sum())

    _, delta = optimise_value(model, ids, start, layer=0, position=position, steps=30)
    assert nll(delta) < nll(torch.zeros(32)) - 0.5


# ---- the toy-world commands ---------------------------------------------------------------------------


def run_command(argv: list[str]) -> None:
    from alignlab.cli import parse_args
    from alignlab.interpret import cli_steer

    parser = argparse.ArgumentParser(prog="alignlab interpret")
    cli_steer.add_commands(parser.add_subparsers(dest="interpret_command", required=True))
    args = parse_args(parser, argv)
    args.handler(args)


def test_harm_pca_and_truth_commands_write_results(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)
    run_command(["harm-pca", "--models", model, "--output", str(tmp_path / "pca"),
                 "--set", "seeds=[0,1]", "--set", "n_per_class=12"])
    record = json.loads((tmp_path / "pca" / "results.json").read_text())
    layers = record["results"]["models"][model]
    assert set(layers) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    assert all(0.0 <= v["pca"]["mean"] <= 1.0 and v["pca"]["n"] == 2 for v in layers.values())
    assert record["seed"] == [0, 1] and (tmp_path / "pca" / "report.html").exists()
    run_command(["truth", "--models", model, "--output", str(tmp_path / "truth"), "--set", "seeds=[0]",
                 "--set", "n_per_class=8", "--set", "strengths=[-0.1,0.0,0.1]", "--set", "max_new_tokens=3",
                 "--set", "eval_per_family=4"])
    truth = json.loads((tmp_path / "truth" / "results.json").read_text())["results"]["models"][model]
    assert len(truth["curves"]["honesty_unknown"]) == 3 and truth["layers_chosen"] == [1]


def test_refusal_command_sweeps_both_sides(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)
    run_command(["refusal", "--aligned", model, "--base", model, "--layer", "1", "--output", str(tmp_path / "r"),
                 "--set", "seeds=[0]", "--set", "n_train=4", "--set", "strengths=[-0.2,-0.1,0.0,0.1,0.2]",
                 "--set", "max_new_tokens=2", "--set", "eval_per_family=2"])
    results = json.loads((tmp_path / "r" / "results.json").read_text())["results"]
    assert set(results["curves"]) == {"aligned", "base_with_aligned_direction", "base"}
    fit = results["fits"]["base"]["harmlessness"]["negative"]
    assert set(fit) == {"power1", "power2"}
    # the same model as aligned and base: its direction is its own, cosine 1
    assert results["cosine_aligned_base"]["1"]["mean"] == pytest.approx(1.0, abs=1e-5)


def test_edit_command_refuses_a_model_that_knows_no_capital(tiny_model_dir, tmp_path):
    with pytest.raises(InterpretError, match="answers only 0 capitals"):
        run_command(["edit", "--model", str(tiny_model_dir), "--output", str(tmp_path / "e"),
                     "--set", "layers=[0]", "--set", "covariance_prompts=8", "--set", "max_new_tokens=3"])


def test_commands_refuse_foreign_output_and_bad_layers(tiny_model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InterpretError, match="did not write"):
        run_command(["harm-pca", "--models", str(tiny_model_dir), "--output", str(tmp_path)])
    with pytest.raises(InterpretError, match="out of range"):
        run_command(["refusal", "--aligned", str(tiny_model_dir), "--base", str(tiny_model_dir), "--layer", "5",
                     "--output", str(tmp_path / "r")])
    with pytest.raises(InterpretError, match="does not exist"):
        run_command(["truth", "--models", str(tmp_path / "missing"), "--output", str(tmp_path / "t")])


def test_steer_and_neurons_commands_on_any_model(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)
    run_command(["steer", "--model", model, "--output", str(tmp_path / "s"), "--layer", "1",
                 "--positive", "a,b,c,d,e", "--negative", "Hello!,Thanks.,Bye.,Hi there.,Good day.",
                 "--prompts", "What is the capital of Zorbia?", "--set", "max_new_tokens=4"])
    results = json.loads((tmp_path / "s" / "results.json").read_text())["results"]
    assert set(results["answers"]) == {"-1", "-0.5", "0", "0.5", "1", "ablated"}
    assert 0.0 <= results["probe"]["test_accuracy"] <= 1.0
    run_command(["neurons", "--model", model, "--output", str(tmp_path / "n"), "--prompt", "Two plus two is",
                 "--answer", " four.", "--set", "layers=[1]", "--set", "top=3"])
    layer = json.loads((tmp_path / "n" / "results.json").read_text())["results"]["layers"]["1"]
    assert len(layer["top"]) == 3 and layer["top"][0][1] >= layer["top"][2][1]
    with pytest.raises(InterpretError, match="needs --positive"):
        run_command(["steer", "--model", model, "--output", str(tmp_path / "s2"), "--prompts", "x"])


def test_value_optimised_through_the_edit_is_what_the_edited_weight_does(model):
    ids, start, layer, position = IDS[0], 4, 0, 2
    C = key_second_moment(torch.randn(200, 64))
    key, delta = optimise_value(model, ids, start, layer=layer, position=position, steps=5, C=C)
    u = torch.linalg.solve(C.double(), key.double())
    _, cache = run_with_cache(model, IDS, names=[f"blocks.{layer}.mlp.hook_post"])
    weights = (cache[f"blocks.{layer}.mlp.hook_post"][0].double() @ u / (key.double() @ u)).float()

    def shift(act, _name):
        return act + weights[:, None] * delta

    with torch.no_grad(), hooks(model, {f"blocks.{layer}.hook_mlp_out": shift}):
        hooked = model(IDS).logits
    with torch.no_grad(), edited_weight(model, layer, key, delta, C):
        edited = model(IDS).logits
    assert torch.allclose(hooked, edited, atol=1e-4)
    assert weights[position] == pytest.approx(1.0)
