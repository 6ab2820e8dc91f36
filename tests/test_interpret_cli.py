"""``alignlab interpret cache|patch|lens|heads`` on a tiny saved Llama: results.json agrees with the Python API,
the report is written, bad input is one line and leaves nothing behind."""

from __future__ import annotations

import json
import re

import pytest
import torch
import transformers as T
from test_interpret_hooks import tiny

from alignlab.cli import main
from alignlab.interpret.heads import head_scores
from alignlab.interpret.patching import logit_difference, patch_by_position
from alignlab.interpret.peer import word_tokenizer

pytestmark = pytest.mark.xdist_group("interpret")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    word_tokenizer(folder, 64)
    tiny("llama").save_pretrained(folder)
    return folder


def encode(model_dir, text: str) -> torch.Tensor:
    return torch.tensor([T.AutoTokenizer.from_pretrained(model_dir)(text).input_ids])


def results(folder):
    assert (folder / "report.html").stat().st_size > 1000
    record = json.loads((folder / "results.json").read_text())
    assert record["command"] and "machine" in record
    return record["results"]


def test_patch_command_matches_the_api(model_dir, tmp_path):
    out = tmp_path / "patch"
    assert main(["interpret", "patch", "--model", str(model_dir), "--output", str(out),
                 "--clean", "t5 t9 t12 t7", "--corrupted", "t5 t30 t12 t7", "--answer", "t4", "--wrong", "t8"]) == 0
    got = results(out)
    model = T.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = patch_by_position(model, encode(model_dir, "t5 t9 t12 t7"), encode(model_dir, "t5 t30 t12 t7"),
                                     logit_difference(torch.tensor([4]), torch.tensor([8])))
    torch.testing.assert_close(torch.tensor(got["by_position"]), expected)
    assert set(got["attribution_correlation"]) == {"by_position", "by_head"}


def test_heads_lens_cache_commands(model_dir, tmp_path):
    assert main(["interpret", "heads", "--model", str(model_dir), "--output", str(tmp_path / "heads"),
                 "--prompts", "t5 t9 t12 t5 t9 t12"]) == 0
    model = T.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    expected = head_scores(model, encode(model_dir, "t5 t9 t12 t5 t9 t12"), "induction", exclude_bos=True)
    torch.testing.assert_close(torch.tensor(results(tmp_path / "heads")["scores"]["induction"]), expected)

    assert main(["interpret", "lens", "--model", str(model_dir), "--output", str(tmp_path / "lens"),
                 "--prompts", "t5 t9 t12"]) == 0
    lens = results(tmp_path / "lens")["prompts"][0]
    positions = encode(model_dir, "t5 t9 t12").shape[1]
    assert len(lens["next_token_prob"]) == 3 and len(lens["next_token_prob"][0]) == positions - 1

    assert main(["interpret", "cache", "--model", str(model_dir), "--output", str(tmp_path / "cache"),
                 "--prompts", "t5 t9 t12", "--names", "blocks.1.*"]) == 0
    shapes = results(tmp_path / "cache")["shapes"]
    assert set(shapes) == {n for n in shapes if n.startswith("blocks.1.")} and len(shapes) > 10
    from safetensors.torch import load_file

    pattern = load_file(tmp_path / "cache" / "cache.safetensors")["blocks.1.attn.hook_pattern/0"]
    assert pattern.shape == (4, positions, positions)


def test_bad_input_is_one_line_and_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["interpret", "patch", "--model", str(model_dir), "--output", str(out), "--clean", "t5 t9 t12",
                 "--corrupted", "t5 t9", "--answer", "t4", "--wrong", "t8"]) != 0
    assert re.search(r"alignlab: error: clean_ids \[1, (\d)\] and corrupted_ids \[1, (?!\1)\d\] differ in shape",
                     capsys.readouterr().err)
    assert not out.exists()
    assert main(["interpret", "cache", "--model", str(model_dir), "--output", str(out), "--prompts", "t5",
                 "--names", "blocks.0.hook_resid_pr"]) != 0
    err = capsys.readouterr().err
    assert "did you mean 'blocks.0.hook_resid_pre'" in err and err.count("alignlab: error:") == 1
    assert not out.exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert main(["interpret", "heads", "--model", str(model_dir), "--output", str(tmp_path / "foreign")]) != 0
    assert "holds files alignlab did not write" in capsys.readouterr().err
