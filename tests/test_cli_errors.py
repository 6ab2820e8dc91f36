"""Careless input through the CLI: each is one `alignlab: error: ...` line naming the file (and line), exit 2,
never a traceback."""

import gzip
import json
import shutil
import warnings

import pytest
import torch

from alignlab.cli import main
from alignlab.evaluate.fixtures import build_tiny_lm

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?"] * 20
PAIR = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=1)


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("alignlab: error: ")
    return line


def train(tiny, data, tmp_path):
    return ["train", "dpo", "--model", tiny, "--data", str(data), "--output", str(tmp_path / "out"),
            "--set", "train.max_steps=1"]


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.jsonl.gz"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(tiny, tmp_path, capsys, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        raw = b"prompt,chosen,rejected\nHi,Hello,Go away\nHi,Caf\xe9,No\n"
    else:
        raw = (json.dumps(PAIR) + "\n").encode() + b'{"prompt": "Caf\xe9", "chosen": "a", "rejected": "b"}\n'
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    line = one_line_error(capsys, train(tiny, path, tmp_path))
    assert str(path) in line and "UTF-8" in line
    assert f"line {3 if name.endswith('.csv') else 2} " in line


@pytest.mark.parametrize("content", ["truncated", "not gzip"])
def test_a_broken_gzip_file_is_named(tiny, tmp_path, capsys, content):
    path = tmp_path / "d.jsonl.gz"
    whole = gzip.compress(("".join(json.dumps(PAIR) + "\n" for _ in range(200))).encode())
    path.write_bytes(whole[: len(whole) // 2] if content == "truncated" else b"plain text, not gzip\n")
    line = one_line_error(capsys, train(tiny, path, tmp_path))
    assert str(path) in line and "gzip" in line


def test_invalid_json_in_a_json_array_names_its_line_and_column(tiny, tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text("[\n  " + json.dumps(PAIR) + ",\n  {\"prompt\": \"x\",, \"chosen\": \"a\"}\n]\n")
    line = one_line_error(capsys, train(tiny, path, tmp_path))
    assert str(path) in line and "line 3, column 18" in line


def broken_model(tiny, tmp_path, how):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    weights = model / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif how == "random":
        weights.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif how == "pickle":
        torch.save({"w": torch.zeros(2)}, model / "pytorch_model.bin")
        weights.unlink()
    return model


@pytest.mark.parametrize("how", ["truncated", "random", "pickle"])
def test_unloadable_weights_are_a_one_line_error(tiny, tmp_path, capsys, how):
    model = broken_model(tiny, tmp_path, how)
    line = one_line_error(capsys, ["eval", "--model", str(model), "--tasks", "crows_pairs", "--limit", "1",
                                   "--output", str(tmp_path / "eval")])
    assert str(model) in line
    if how == "pickle":
        assert "pickle" in line and "weights_only" not in line and "safetensors" in line


def test_a_missing_relative_model_path_is_reported_as_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    line = one_line_error(capsys, ["eval", "--model", "runs/nothere", "--tasks", "crows_pairs", "--limit", "1",
                                   "--output", "out"])
    assert "'runs/nothere' does not exist" in line and "hub" not in line.lower().split("does not exist")[0]


def test_custom_code_is_not_loaded_but_the_user_is_told_and_it_is_not_copied(tiny, tmp_path):
    from alignlab.core.models import load_causal_lm, load_tokenizer, save_pretrained_atomic

    model_dir = tmp_path / "custom"
    shutil.copytree(tiny, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="auto_map.*not loaded"):
        model = load_causal_lm(str(model_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_pretrained_atomic(model, load_tokenizer(str(model_dir)), tmp_path / "out")
    assert "auto_map" not in json.loads((tmp_path / "out" / "config.json").read_text())


def test_a_yaml_block_given_a_number_names_the_yaml_key(tiny, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train: 5\n")
    line = one_line_error(capsys, ["train", "sft", "--config", str(config), "--model", tiny,
                                   "--data", "x.jsonl", "--output", str(tmp_path / "o"), "--max-steps", "3"])
    assert "'train'" in line and "--max-steps" not in line and str(config) in line


def test_a_url_where_a_local_model_is_needed_says_so():
    from alignlab.core.models import load_causal_lm
    from alignlab.errors import ModelError

    with pytest.raises(ModelError, match="is a URL; this command needs a local model"):
        load_causal_lm("http://127.0.0.1:8000/v1")


def test_a_list_flag_of_numbers_gives_numbers_and_a_bad_item_names_the_flag(capsys):
    import argparse

    from alignlab.cli import parse_command_config
    from alignlab.errors import ConfigError
    from alignlab.experiments.selection_bench import SelectionBenchConfig

    def parse(*argv):
        args = argparse.Namespace(config_command="alignlab bench selection", argv=list(argv))
        return parse_command_config(SelectionBenchConfig, args, lists=["seeds", "fractions", "selectors"])

    config = parse("--seeds", "0,1", "--seeds", "2", "--fractions", "0.5", "--selectors", "random")
    assert config.seeds == [0, 1, 2] and config.fractions == [0.5] and config.selectors == ["random"]
    with pytest.raises(ConfigError, match="--seeds: expected int items"):
        parse("--seeds", "0,one")
