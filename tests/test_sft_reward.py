"""SFT and reward modelling end to end, through the Python API and the CLI, and their bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import pair_rows, sft_rows, write_jsonl

from alignlab.cli import main
from alignlab.config import load_config
from alignlab.core.metrics import read_metrics
from alignlab.core.models import load_causal_lm, load_reward_model
from alignlab.errors import ConfigError, DataError, ModelError
from alignlab.outer.reward import RewardModelConfig, train_reward
from alignlab.outer.sft import SFTConfig, train_sft

FAST = ["train.progress=false", "train.batch_size=4", "data.max_length=64"]


def test_sft_cli_writes_run_directory_and_learns(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(32))
    out = tmp_path / "run"
    code = main(["train", "sft", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(out),
                 "--max-steps", "12", "--set", "train.lr=3e-3", *sum((["--set", s] for s in FAST), [])])
    assert code == 0, capsys.readouterr().err
    assert (out / "config.yaml").exists() and (out / "model.safetensors").exists()
    assert (out / "tokenizer.json").exists()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13)) and all("loss" in r for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    trained, base = load_causal_lm(str(out)), load_causal_lm(str(tiny_model_dir))
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    assert "done: 12 steps" in capsys.readouterr().out


def test_sft_with_lora_and_packing(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(64))
    cfg = load_config(SFTConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                        f"output={tmp_path / 'run'}", "train.max_steps=3", "model.lora_r=4",
                                        "packing=true", "data.max_length=32", *FAST[:2]])
    result = train_sft(cfg)
    assert result.steps == 3
    merged = load_causal_lm(str(tmp_path / "run"))  # the adapter was merged: loads as a plain model
    assert not hasattr(merged, "peft_config")


def test_reward_model_learns_the_preference(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(64))
    cfg = load_config(RewardModelConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                           f"output={tmp_path / 'rm'}", "train.max_steps=25", "train.lr=3e-3",
                                           "data.eval_fraction=0.25", *FAST])
    result = train_reward(cfg)
    assert result.eval["eval/accuracy"] == 1.0
    rows = read_metrics(tmp_path / "rm" / "metrics.jsonl")
    assert rows[-2]["loss"] < rows[0]["loss"]
    model = load_reward_model(str(tmp_path / "rm"))
    assert model.config.num_labels == 1
    assert json.loads((tmp_path / "rm" / "results.json").read_text())["eval"]["eval/accuracy"] == 1.0


def test_reward_on_real_hh_rlhf_rows(tiny_model_dir, tmp_path, shared_data):
    cfg = load_config(RewardModelConfig, None, [f"model.name_or_path={tiny_model_dir}",
                                           f"data.path={shared_data / 'hh_harmless_base_test.jsonl.gz'}",
                                           "data.limit=16", "data.eval_fraction=0", f"output={tmp_path / 'rm'}",
                                           "train.max_steps=2", *FAST])
    assert train_reward(cfg).steps == 2


@pytest.mark.parametrize("args, message", [
    (["--model", "/does/not/exist"], "does not exist"),
    (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
    (["--data", "/no/such/data.jsonl"], "data.jsonl"),
])
def test_bad_input_is_one_clear_line(tiny_model_dir, tmp_path, capsys, args, message):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    base = {"--model": str(tiny_model_dir), "--data": str(data), "--output": str(tmp_path / "o")}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["train", "sft", *[x for kv in base.items() if kv[0] != "--set" for x in kv]]
    if "--set" in base:
        argv += ["--set", base["--set"]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignlab: error:") and message in err and "Traceback" not in err


def test_malformed_row_names_row_and_field_and_keeps_output(tiny_model_dir, tmp_path):
    rows = sft_rows(8)
    rows[3] = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}]}
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "run"
    out.mkdir()
    (out / "alignlab-run.json").write_text("{}")  # an alignlab run directory (a foreign one is refused first)
    (out / "keep.txt").write_text("precious")
    cfg = load_config(SFTConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                        f"output={out}", *FAST])
    with pytest.raises(DataError, match=r"row 3.*content"):
        train_sft(cfg)
    assert (out / "keep.txt").read_text() == "precious" and not (out / "config.yaml").exists()


def test_model_errors():
    with pytest.raises(ModelError, match="does not exist"):
        load_causal_lm("./missing-model")
    with pytest.raises(ModelError, match="float16"):
        load_causal_lm("./missing-model", dtype="float16")
    with pytest.raises(ConfigError, match="did you mean sft"):
        from alignlab.registry import get_method
        get_method("sfft")


def test_reward_model_from_a_causal_lm_loads_quietly_and_real_gaps_warn(tiny_model_dir, tmp_path, capfd):
    import shutil
    import warnings

    from safetensors.torch import load_file, save_file

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected new score head and unused lm_head: no warning
        load_reward_model(str(tiny_model_dir))
    assert "LOAD REPORT" not in capfd.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"newly initialised \['model.norm.weight'\]"):
        load_reward_model(str(broken))
