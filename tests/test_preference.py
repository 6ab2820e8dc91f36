"""Offline preference training: every pairwise loss trains; the three reference modes agree."""

from __future__ import annotations

import pytest
import torch
from conftest import pair_rows, write_jsonl

from alignlab.config import load_config
from alignlab.core.metrics import read_metrics
from alignlab.errors import ConfigError
from alignlab.outer.losses import pairwise_losses
from alignlab.outer.preference import PreferenceConfig, train_preference

FAST = ["train.progress=false", "train.batch_size=4", "data.max_length=64", "train.mixed_precision=no"]


def config(tiny_model_dir, tmp_path, *overrides):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    return load_config(PreferenceConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                                f"reference_cache_dir={tmp_path / 'cache'}", *FAST, *overrides])


@pytest.mark.parametrize("loss", pairwise_losses())
def test_every_pairwise_loss_trains(tiny_model_dir, tmp_path, loss):
    cfg = config(tiny_model_dir, tmp_path, f"loss={loss}", f"output={tmp_path / 'run'}", "train.max_steps=2",
                 "train.lr=1e-3")
    train_preference(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert "accuracies" in rows[0] or "rewards_chosen" in rows[0]


def test_dpo_starts_at_log2_and_improves(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path, f"output={tmp_path / 'run'}", "train.max_steps=15", "train.lr=3e-3",
                 "beta=0.5")
    train_preference(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx(0.693147, abs=1e-4)  # policy == reference at step 1
    assert rows[-1]["loss"] < 0.5 and rows[-1]["accuracies"] == 1.0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_reference_modes_agree(tiny_model_dir, tmp_path):
    """Precomputed, separate-model and LoRA-disabled references give the same first-step loss."""
    first = {}
    for mode in ["precompute", "model", "adapter"]:
        cfg = config(tiny_model_dir, tmp_path, f"output={tmp_path / mode}", "train.max_steps=2", f"reference={mode}",
                     "model.lora_r=4", "train.lr=1e-2")
        train_preference(cfg)
        rows = read_metrics(tmp_path / mode / "metrics.jsonl")
        first[mode] = rows
        assert rows[1]["loss"] != rows[0]["loss"]  # it trained
    for mode in ["model", "adapter"]:
        assert first[mode][0]["loss"] == pytest.approx(first["precompute"][0]["loss"], abs=1e-5)
        assert first[mode][1]["loss"] == pytest.approx(first["precompute"][1]["loss"], abs=1e-4)


def test_precompute_cache_is_reused(tiny_model_dir, tmp_path, monkeypatch):
    import alignlab.outer.preference as pref

    calls = []
    real = pref.pair_logprobs
    monkeypatch.setattr(pref, "pair_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    train_preference(config(tiny_model_dir, tmp_path, f"output={tmp_path / 'a'}", "train.max_steps=1"))
    first = len(calls)
    train_preference(config(tiny_model_dir, tmp_path, f"output={tmp_path / 'b'}", "train.max_steps=1"))
    # 16 pairs at batch 8 → 2 reference batches the first time; none once cached (1 policy forward each run)
    assert first == 3 and len(calls) - first == 1


def test_bad_preference_configs(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'dpo'"):
        config(tiny_model_dir, tmp_path, "loss=dpp")
    with pytest.raises(ConfigError, match="does not train on pairs"):
        config(tiny_model_dir, tmp_path, "loss=kto")
    with pytest.raises(ConfigError, match="lora_r"):
        config(tiny_model_dir, tmp_path, "reference=adapter")
    with pytest.raises(ConfigError, match="takes no argument"):
        train_preference(config(tiny_model_dir, tmp_path, f"output={tmp_path / 'x'}", "loss_kwargs={nope: 1}",
                                "train.max_steps=1"))


def test_method_name_selects_the_loss(tiny_model_dir, tmp_path):
    """`alignlab train ipo` trains with IPO, not DPO: the name is a default the config can still override."""
    from alignlab.cli import main

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    argv = ["train", "ipo", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(tmp_path / "ipo"),
            "--max-steps", "1", "--set", f"reference_cache_dir={tmp_path / 'cache'}"]
    for item in FAST:
        argv += ["--set", item]
    assert main(argv) == 0
    import yaml

    assert yaml.safe_load((tmp_path / "ipo" / "config.yaml").read_text())["loss"] == "ipo"
    rows = read_metrics(tmp_path / "ipo" / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-3)  # IPO at zero margin: (1/2β)²


def test_unset_beta_is_each_loss_own_default():
    from alignlab.outer import losses as L
    from alignlab.outer.preference import call_loss

    policy = {"chosen_logp": torch.tensor([-4.0, -6.0]), "rejected_logp": torch.tensor([-5.0, -3.0]),
              "chosen_len": torch.tensor([2, 3]), "rejected_len": torch.tensor([2, 2])}
    reference = {"chosen_logp": torch.tensor([-4.5, -5.0]), "rejected_logp": torch.tensor([-4.0, -4.0])}
    means = (policy["chosen_logp"] / policy["chosen_len"], policy["rejected_logp"] / policy["rejected_len"])
    simpo = call_loss("simpo", policy, None, beta=None, label_smoothing=None, extra={})[0]
    assert torch.allclose(simpo, L.simpo(*means, beta=2.0)[0])  # SimPO's own β, not the DPO family's 0.1
    assert not torch.allclose(simpo, L.simpo(*means, beta=0.1)[0])
    dpo = call_loss("dpo", policy, reference, beta=None, label_smoothing=None, extra={})[0]
    assert torch.allclose(dpo, L.dpo(policy["chosen_logp"], policy["rejected_logp"], reference["chosen_logp"],
                                     reference["rejected_logp"], beta=0.1)[0])
    set_beta = call_loss("dpo", policy, reference, beta=0.5, label_smoothing=None, extra={})[0]
    assert torch.allclose(set_beta, L.dpo(policy["chosen_logp"], policy["rejected_logp"], reference["chosen_logp"],
                                          reference["rejected_logp"], beta=0.5)[0])
