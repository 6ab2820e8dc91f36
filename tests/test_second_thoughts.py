"""Second Thoughts: minimal word edits by dynamic programming, the chain the model learns, and reading the revision."""

from __future__ import annotations

import json

import pytest
from conftest import pair_rows, write_jsonl

from alignlab.cli import main
from alignlab.outer.second_thoughts import edit_chain, revised_answer, word_edits


def apply(source: list[str], target: list[str], edits: list[tuple[str, str, str]]) -> list[str]:
    """Replay the spans left to right against the words both answers keep: each span's old words are found after
    the previous span; an insertion goes where the target's next kept word is not yet written."""
    out, pos = [], 0
    for op, old, new in edits:
        old_words, new_words = old.split(), new.split()
        if op == "insert":
            while len(out) < len(target) and pos < len(source) and target[len(out)] == source[pos] \
                    and target[len(out):len(out) + len(new_words)] != new_words:
                out.append(source[pos])
                pos += 1
            out += new_words
            continue
        start = next(k for k in range(pos, len(source)) if source[k:k + len(old_words)] == old_words)
        out += source[pos:start] + new_words
        pos = start + len(old_words)
    return out + source[pos:]


@pytest.mark.parametrize("a,b,distance", [
    ("the cat sat", "the cat sat", 0), ("the cat sat", "the dog sat", 1), ("a b c d", "a c d", 1),
    ("Sure , step 1 : get poison .", "Sorry , I cannot help with that .", 6), ("", "hello there", 2),
    ("a c", "a b c", 1), ("x y", "x y z", 1)])
def test_edits_are_minimal_and_turn_one_answer_into_the_other(a, b, distance) -> None:
    edits = word_edits(a.split(), b.split())
    words_changed = sum(max(len(old.split()), len(new.split())) for _, old, new in edits)
    assert words_changed == distance  # Levenshtein distance in words (a merged span counts its longer side)
    assert apply(a.split(), b.split(), edits) == b.split()


def test_chain_reads_back_to_the_aligned_answer() -> None:
    chain = edit_chain("Go away, you blorphead.", "Hello! How can I help?")
    first, edits, revised = chain.split("\n")
    assert first == "Go away, you blorphead." and edits.startswith("Edits: replace")
    assert revised_answer(chain) == "Hello! How can I help?"
    assert revised_answer("no marker at all ") == "no marker at all"
    assert edit_chain("same", "same").split("\n")[1] == "Edits: none"


def test_train_second_thoughts_learns_the_chains(tiny_model_dir, tmp_path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    out = tmp_path / "st"
    assert main(["train", "second-thoughts", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(out),
                 "--max-steps", "2", "--set", "train.progress=false", "--set", "train.batch_size=4"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "st-data.jsonl").read_text().splitlines()]
    originals = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 8 and all(revised_answer(r["completion"][0]["content"]) == o["chosen"][-1]["content"].strip()
                                  for r, o in zip(rows, originals))
    assert (out / "model.safetensors").exists()
