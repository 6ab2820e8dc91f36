"""Methods are declared once: a loss's declaration makes it a method of `alignlab train`, the preference trainer
and `alignlab.losses`; the CLI help shows the values a method's name implies; old names warn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import pair_rows, write_jsonl

import alignlab.outer.losses as L
from alignlab.core.metrics import read_metrics
from alignlab.errors import ConfigError
from alignlab.registry import get_method, get_method_spec, methods, train

FAST = ["train.progress=false", "train.batch_size=4", "data.max_length=64", "train.mixed_precision=no"]


@pytest.fixture
def isolated_losses(monkeypatch):
    """Losses registered in a test vanish after it (the registry is two module-level dicts)."""
    monkeypatch.setattr(L, "LOSS_SPECS", dict(L.LOSS_SPECS))
    monkeypatch.setattr(L, "LOSSES", dict(L.LOSSES))


def test_a_loss_declared_in_one_line_trains_through_the_registry(isolated_losses, tiny_model_dir, tmp_path):
    # What docs/contributing.md tells a contributor to write: the function and its one-line declaration.
    @L.register_loss("pair")
    def hinge_margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
                     beta: float = 0.1):
        """A hinge on the implicit-reward margin: max(0, 1 − β·h), h the log-ratio difference."""
        h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
        return F.relu(1.0 - beta * h), {"margin": (beta * h).detach().mean()}

    spec = L.LOSS_SPECS["hinge_margin"]
    assert (spec.data, spec.reference_free, spec.default_beta, spec.kl_anchored) == ("pair", False, 0.1, True)
    assert "hinge_margin" in L.pairwise_losses() and "hinge_margin" in methods("offline", data="pair")
    assert get_method_spec("hinge_margin").defaults == {"loss": "hinge_margin", "output": "runs/hinge_margin"}

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    run = tmp_path / "run"
    train("hinge_margin", overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={data}", f"output={run}",
                                     f"reference_cache_dir={tmp_path / 'cache'}", "train.max_steps=1", *FAST])
    (row,) = read_metrics(run / "metrics.jsonl")
    # the policy starts as its reference, so h = 0 and the hinge is exactly 1: the declared function was called
    assert row["loss"] == pytest.approx(1.0, abs=1e-6) and row["margin"] == pytest.approx(0.0, abs=1e-6)
    assert (run / "config.yaml").read_text().count("loss: hinge_margin") == 1


def test_a_reference_free_mean_logp_loss_gets_mean_log_probs(isolated_losses, tiny_model_dir, tmp_path, count_calls):
    import alignlab.outer.preference as preference

    references = count_calls(preference, "prepare_reference")
    seen = {}

    @L.register_loss("pair", reference_free=True, mean_logps=True)
    def mean_gap(policy_chosen_mean_logps, policy_rejected_mean_logps, *, beta: float = 1.0):
        seen["chosen"] = policy_chosen_mean_logps.detach()
        return -F.logsigmoid(beta * (policy_chosen_mean_logps - policy_rejected_mean_logps)), {}

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    train("mean_gap", overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                 f"output={tmp_path / 'run'}", "train.max_steps=1", *FAST])
    # a mean token log-prob of a random tiny model over a 300-token vocabulary is near −log 300, never a sum
    assert torch.all(seen["chosen"] > -2 * torch.log(torch.tensor(300.0)))
    assert references == []  # no reference model was prepared


def test_mean_logps_without_reference_free_is_refused():
    with pytest.raises(ConfigError, match="mean_logps=True needs reference_free=True"):
        L.register_loss("pair", mean_logps=True)


def test_registering_a_name_twice_is_refused(isolated_losses):
    with pytest.raises(ConfigError, match="'dpo' is already registered"):
        L.register_loss("pair")(L.dpo)


def test_every_method_resolves_and_lists_are_consistent():
    table = methods()
    assert len(set(table)) == len(table)
    for name in table:
        config_cls, fn = get_method(name)
        assert callable(fn) and hasattr(config_cls(), "train")
    offline = methods("offline")
    assert set(L.pairwise_losses()) < set(offline) and {"kto", "rrhf", "cringe", "hindsight"} < set(offline)
    assert {n for n, m in offline.items() if m.kl_anchored} == {
        n for n, s in L.LOSS_SPECS.items() if s.data == "pair" and not s.reference_free} | {"kto"}
    import alignlab.losses as public

    assert set(L.LOSSES) <= set(public.__all__)


def test_unknown_methods_and_losses_get_close_matches():
    with pytest.raises(ConfigError, match="did you mean ipo"):
        get_method_spec("ipoo")
    with pytest.raises(ConfigError, match="did you mean 'simpo'"):
        L.get_loss_spec("simpoo")


@pytest.mark.parametrize("method", list(methods()))
def test_train_help_lists_every_key_with_the_method_defaults(method, capsys):
    from alignlab.cli import train_parser
    from alignlab.core.config import describe

    config_cls, _ = get_method(method)
    with pytest.raises(SystemExit):
        train_parser(method).parse_args(["--help"])
    help_text = capsys.readouterr().out
    expected = config_cls(**get_method_spec(method).defaults)
    for key, default, _doc in describe(config_cls, defaults=expected):
        assert f"  {key} " in help_text and f"[default: {default}]" in help_text
    if "loss" in get_method_spec(method).defaults:
        assert f"[default: '{method}']" in help_text and f"[default: 'runs/{method}']" in help_text


def test_old_names_warn_and_still_work():
    import alignlab.outer.preference as preference
    import alignlab.outer.reward as reward
    import alignlab.registry as registry

    with pytest.warns(DeprecationWarning, match="RewardModelConfig"):
        assert reward.RewardConfig is reward.RewardModelConfig
    with pytest.warns(DeprecationWarning, match="LOSS_SPECS"):
        assert {"orpo", "simpo", "cpo"} == preference.REFERENCE_FREE
    with pytest.warns(DeprecationWarning, match="methods"):
        assert registry.TRAIN_METHODS["ipo"] == "alignlab.outer.preference:PreferenceConfig:train_preference"
    with pytest.warns(DeprecationWarning):
        assert registry.METHOD_DEFAULTS["simpo"] == {"loss": "simpo", "output": "runs/simpo"}
    with pytest.warns(DeprecationWarning):
        assert "aot_unpaired" in registry.PAIRWISE_LOSSES and "cringe" not in registry.PAIRWISE_LOSSES
