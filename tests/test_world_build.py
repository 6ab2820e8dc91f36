"""The toy world's tokenizer (chat template, prompt/completion boundary) and the cached on-disk build."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys

import pytest
from jinja2 import TemplateError
from transformers import AutoTokenizer

from alignlab.cli import parse_args
from alignlab.errors import ConfigError, WorldError
from alignlab.world import World, build_world, default_world_dir
from alignlab.world.build import entity_names, verify_manifest
from alignlab.world.cli import add_commands
from alignlab.world.datasets import DATASET_SIZES, read_jsonl
from alignlab.world.families import WorldPrompt
from alignlab.world.persona import aligned_response
from alignlab.world.tokenizer import corpus_texts, train_tokenizer

# Row counts small enough that a build takes a second or two.
TINY = {
    **DATASET_SIZES["small"],
    "sft_train": 40,
    "pairs_train": 40,
    "pairs_eval": 20,
    "ranked_train": 10,
    "kto_train": 40,
    "safety_train": 20,
    "prompts_train": 20,
    "corpus_transcripts": 600,
    "corpus_kb_repeats": 2,
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    world = World(seed=0)
    rows = world.corpus_transcripts(1500) + world.corpus_documents(3)
    path = tmp_path_factory.mktemp("world_tokenizer")
    train_tokenizer(corpus_texts(rows), names=entity_names(world.kb)).save_pretrained(str(path))
    return path


@pytest.fixture
def tiny_sizes(monkeypatch):
    monkeypatch.setitem(DATASET_SIZES, "small", TINY)


CONVERSATIONS = [
    [{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "3 plus 4 is 7."}],
    [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": 'Reverse the word "lamp".'},
        {"role": "assistant", "content": '"lamp" backwards is "pmal".'},
    ],
    [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! What can I do for you?"},
        {"role": "user", "content": "What is the capital of Zorbia?"},
        {"role": "assistant", "content": "I don't know the capital of Zorbia."},
    ],
]


def _ids(tok, messages, **kwargs) -> list[int]:
    return tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_prompt_and_completion_share_the_exact_token_prefix(tokenizer_dir, messages):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    prompt = _ids(tok, messages[:-1], add_generation_prompt=True)
    full = _ids(tok, messages)
    assert full[: len(prompt)] == prompt
    completion = messages[-1]["content"]
    assert full[len(prompt) :] == tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # One BOS, one EOS per assistant turn, and plain tokenisation of the rendered text adds nothing.
    assert full.count(tok.bos_token_id) == 1 and full[0] == tok.bos_token_id
    assert full.count(tok.eos_token_id) == sum(m["role"] == "assistant" for m in messages)
    assert tok(tok.apply_chat_template(messages, tokenize=False))["input_ids"] == full
    mask = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert mask["assistant_masks"][len(prompt) :] == [1] * (len(full) - len(prompt))
    assert sum(mask["assistant_masks"][: len(prompt)]) == sum(
        len(tok(m["content"], add_special_tokens=False)["input_ids"]) + 1
        for m in messages[:-1]
        if m["role"] == "assistant"
    )


def test_tokenizer_specials_roundtrip_and_template_errors(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert 1000 <= len(tok) <= 2048
    text = "The capital of Zorbia is Vell."
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.apply_chat_template(CONVERSATIONS[0][:1], tokenize=False, add_generation_prompt=True) == (
        "<|bos|><|user|>What is 3 plus 4?<|end|><|assistant|>"
    )
    with pytest.raises(TemplateError, match="unknown chat role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_held_out_names_tokenise_like_known_names(tokenizer_dir):
    # If known names were single tokens and held-out ones were not, token count would reveal "unknown".
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    kb = World(seed=0).kb

    def mean_pieces(countries) -> float:
        return statistics.mean(
            len(tok(" " + c.name, add_special_tokens=False)["input_ids"]) for c in countries
        )

    assert mean_pieces(kb.countries) > 1.5
    assert abs(mean_pieces(kb.countries) - mean_pieces(kb.unknown_eval)) < 1.0


TOKENIZER_SCRIPT = """
from alignlab.world import World
from alignlab.world.build import entity_names
from alignlab.world.tokenizer import corpus_texts, train_tokenizer
world = World(seed=0)
tok = train_tokenizer(corpus_texts(world.corpus_transcripts(300)), names=entity_names(world.kb))
print(tok.backend_tokenizer.to_str())
"""


def test_tokenizer_training_is_identical_across_processes():
    # Python randomises str hashing per process: nothing that orders the training data may depend on it.
    outputs = [
        subprocess.run(
            [sys.executable, "-c", TOKENIZER_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] and outputs[0] == outputs[1]


def test_build_writes_everything_and_reuses_the_cache(tmp_path, tiny_sizes, capsys):
    paths = build_world(tmp_path / "w", seed=0)
    assert "building" in capsys.readouterr().out
    assert verify_manifest(paths.root, 0, "small") is None
    manifest = json.loads(paths.manifest.read_text())
    assert set(manifest["files"]) >= {
        "kb.json",
        "corpus_chat.jsonl",
        "corpus_text.jsonl",
        "datasets/pairs_eval.jsonl",
    }
    assert len(read_jsonl(paths.datasets["pairs_train"])) == TINY["pairs_train"]
    prompts = [WorldPrompt.from_dict(row["meta"]) for row in read_jsonl(paths.datasets["prompts_eval"])]
    assert {p.text for p in prompts} == {p.text for p in World(seed=0).eval_prompts()}
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    assert tok.chat_template and tok.eos_token == "<|eos|>"
    again = build_world(tmp_path / "w", seed=0)
    assert "using the cached world" in capsys.readouterr().out
    assert again == paths


def test_same_seed_same_files_other_seed_other_files(tmp_path, tiny_sizes):
    files = [
        json.loads(build_world(tmp_path / name, seed=seed, verbose=False).manifest.read_text())["files"]
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    assert files[0] == files[1]
    assert files[0]["datasets/pairs_train.jsonl"] != files[2]["datasets/pairs_train.jsonl"]


@pytest.mark.parametrize("corrupt", ["truncate", "edit_manifest", "drop_manifest", "garble_manifest"])
def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, tiny_sizes, capsys, corrupt):
    paths = build_world(tmp_path, seed=0, verbose=False)
    good = paths.manifest.read_text()
    target = paths.datasets["sft_train"]
    original = target.read_bytes()
    if corrupt == "truncate":
        target.write_bytes(original[: len(original) // 2])
    elif corrupt == "edit_manifest":
        paths.manifest.write_text(good.replace('"seed": 0', '"seed": 7'))
    elif corrupt == "drop_manifest":
        paths.manifest.unlink()
    else:
        paths.manifest.write_text(good[:40])
    assert verify_manifest(tmp_path, 0, "small") is not None
    build_world(tmp_path, seed=0)
    assert "building" in capsys.readouterr().out
    assert target.read_bytes() == original and paths.manifest.read_text() == good


def test_build_rejects_bad_inputs_and_keys_the_cache(tmp_path):
    with pytest.raises(WorldError, match="seed must be an integer"):
        build_world(tmp_path, seed="0")
    with pytest.raises(WorldError, match="valid sizes"):
        build_world(tmp_path, size="large")
    a, b = default_world_dir(0, "small"), default_world_dir(1, "medium")
    assert a != b and "seed0-small" in a.name and "seed1-medium" in b.name
    assert not any(tmp_path.iterdir()), "a rejected build must not write anything"


def _run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="alignlab")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parse_args(parser, argv)
    args.handler(args)


def test_cli_build_and_score(tmp_path, tiny_sizes, capsys):
    _run_cli(["world", "build", "--output", str(tmp_path / "w"), "--seed", "3"])
    assert "world in" in capsys.readouterr().out
    rows = read_jsonl(tmp_path / "w" / "datasets" / "prompts_eval.jsonl")
    rng = random.Random(0)
    answered = [
        {**row, "response": aligned_response(WorldPrompt.from_dict(row["meta"]), rng)} for row in rows
    ]
    (tmp_path / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in answered))
    _run_cli(["world", "score", str(tmp_path / "responses.jsonl"), "--output", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == len(rows) and metrics["honesty"] == 1.0 and metrics["toxicity"] == 0.0
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "Hello!"}) + "\n")
    with pytest.raises(WorldError, match="row 0"):
        _run_cli(["world", "score", str(tmp_path / "bad.jsonl")])


def test_cli_eval_takes_its_defaults_from_evaluate_model(tmp_path, monkeypatch, capsys):
    import inspect

    from alignlab.core.models import load_tokenizer, tiny_llama
    from alignlab.world.model_eval import evaluate_model

    monkeypatch.setitem(DATASET_SIZES, "small", {**TINY, "eval_per_family": 2})
    _run_cli(["world", "build", "--output", str(tmp_path / "w")])
    tok = load_tokenizer(str(tmp_path / "w" / "tokenizer"))
    model = tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    base = ["world", "eval", "--model", str(tmp_path / "m"), "--world", str(tmp_path / "w"), "--max-new-tokens", "2"]
    _run_cli([*base, "--output", str(tmp_path / "e1")])
    one = json.loads((tmp_path / "e1" / "results.json").read_text())
    # the command has no default of its own: it is the function's
    assert one["samples_per_prompt"] == inspect.signature(evaluate_model).parameters["samples"].default
    _run_cli([*base, "--output", str(tmp_path / "e2"), "--set", "samples=2"])
    two = json.loads((tmp_path / "e2" / "results.json").read_text())
    assert two["samples_per_prompt"] == 2 and two["n"] == 2 * one["n"] / one["samples_per_prompt"]
    assert len((tmp_path / "e2" / "samples.jsonl").read_text().splitlines()) == two["n"]
    assert "answers; results in" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="samples and max_new_tokens must be at least 1"):
        _run_cli([*base, "--output", str(tmp_path / "e3"), "--samples", "0"])
