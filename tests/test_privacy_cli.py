"""The privacy and backdoor commands: one end-to-end run of ``mia`` through the command line, and the one-line
errors a mistyped option gives."""

from __future__ import annotations

import json

from alignlab.attacks.privacy import cli


def test_mia_command_end_to_end(tmp_path, tiny_model_dir, capsys):
    from alignlab.world.datasets import World

    world = tmp_path / "world"
    world.mkdir()
    (world / "manifest.json").write_text(json.dumps({"seed": 0, "size": "small"}))
    rows = World(0, "small").corpus_transcripts(200)
    (world / "corpus_chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mia"
    code = cli.main(["mia", "--model", str(tiny_model_dir), "--target", "pretrain", "--n", "20", "--output", str(out),
                     "--set", f"world={world}", "--set", "resamples=20", "--scores", "loss,min_k"])
    assert code == 0
    record = json.loads((out / "results.json").read_text())
    assert record["results"]["n_members"] == record["results"]["n_nonmembers"] == 20
    assert set(record["results"]["scores"]) == {"loss", "min_k"}
    assert 0.0 <= record["results"]["scores"]["loss"]["auc"] <= 1.0 and record["seed"] == 0
    assert "results in" in capsys.readouterr().out


def test_mistyped_names_are_one_line_errors(capsys):
    assert cli.main(["backdoor", "--attack", "rewad"]) == 2
    assert "did you mean 'reward'" in capsys.readouterr().err
    assert cli.main(["exposure", "--defences", "none,dpp"]) == 2
    assert "unknown defence" in capsys.readouterr().err
    assert cli.main(["invert", "--methods", "dlgg"]) == 2
    assert "unknown gradient inversion method" in capsys.readouterr().err
