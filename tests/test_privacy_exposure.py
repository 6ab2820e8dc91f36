"""Canary exposure: the definition on a constructed case, the digit-trie log-probs against one forward per
secret, the world's opt-in canaries, and deduplication collapsing a canary's repetitions."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from alignlab.attacks.privacy.exposure import canary_exposure, exposure, rank_of, secret_logprobs
from alignlab.world.canaries import Canary, make_canaries, plant_canaries, secret_text


def test_exposure_on_a_constructed_case():
    logps = np.log(np.full(1024, 1 / 1024))  # uniform over 2**10 candidates: every secret has rank 1
    assert exposure(float(logps[7]), logps) == pytest.approx(10.0)
    logps = np.arange(1024, dtype=float)  # candidate j has log p = j: candidate 1023 is the most likely
    assert rank_of(1023.0, logps) == 1 and exposure(1023.0, logps) == pytest.approx(10.0)
    assert rank_of(1020.0, logps) == 4 and exposure(1020.0, logps) == pytest.approx(8.0)
    assert exposure(0.0, logps) == pytest.approx(0.0)  # the least likely candidate: rank |R|, zero bits


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory):
    from alignlab.core.models import tiny_llama
    from alignlab.world.tokenizer import train_tokenizer

    tok = train_tokenizer(["The phone number of Ann is 1 2 3 4 5.", "0 1 2 3 4 5 6 7 8 9 9 8 7 6 5 4 3 2 1 0"] * 20,
                          300, model_max_length=512)
    model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=2, seed=0, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return model.eval(), tok


def test_trie_logprobs_equal_one_forward_per_secret(digit_model):
    model, tok = digit_model
    prefix = "The phone number of Ann is"
    logps = secret_logprobs(model, tok, prefix, 2, batch_size=7)  # batches that cut across trie levels
    assert logps.shape == (100,)
    for j in (0, 7, 42, 99):
        ids = [tok.bos_token_id, *tok(prefix + secret_text(f"{j:02d}"), add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            lp = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        direct = sum(float(lp[t - 1, ids[t]]) for t in range(len(ids) - 2, len(ids)))
        assert logps[j] == pytest.approx(direct, abs=1e-4)
    assert np.exp(logps).sum() <= 1.0 + 1e-5  # a distribution over (a subset of) continuations


def test_a_memorised_canary_is_exposed(digit_model):
    """Train the tiny model on one canary: its exposure rises to near log2 |R| while it starts near chance."""
    model, tok = digit_model
    model = type(model)(model.config)
    model.load_state_dict(digit_model[0].state_dict())
    canary = Canary("phone", "Ann", "The phone number of Ann is", secret_text("37"), ".", 1)
    before = canary_exposure(model, tok, canary)["exposure"]
    ids = torch.tensor([[tok.bos_token_id, *tok(canary.text, add_special_tokens=False)["input_ids"]]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = canary_exposure(model.eval(), tok, canary)
    assert before < 4 and after["exposure"] == pytest.approx(math.log2(100)) and after["rank"] == 1


def test_world_canaries_are_seeded_and_planted_exactly_repeats_times():
    canaries = make_canaries(3, [1, 5])
    assert canaries == make_canaries(3, [1, 5]) and canaries != make_canaries(4, [1, 5])
    assert len({c.name for c in canaries}) == 4 and all(len(c.digits) == 5 for c in canaries)
    docs = [f"doc {i}" for i in range(50)]
    planted = plant_canaries(docs, canaries, random.Random(0))
    assert [d for d in planted if d.startswith("doc")] == docs  # the rest of the corpus keeps its order
    for c in canaries:
        assert planted.count(c.text) == c.repeats


def test_default_world_dir_is_unchanged_without_canaries():
    from alignlab.world.build import default_world_dir

    assert default_world_dir(0, "small") == default_world_dir(0, "small", ())
    assert default_world_dir(0, "small", [1, 4]).name == default_world_dir(0, "small").name + "-canaries1-4"


def test_dedup_keeps_one_copy_of_each_canary(tmp_path):
    import json

    from alignlab.attacks.privacy.exposure import corpus_for
    from alignlab.world.build import WorldPaths
    from alignlab.world.tokenizer import train_tokenizer

    canary = make_canaries(0, [4])[0]
    texts = ["a cat.", canary.text, "a dog.", canary.text, canary.text, canary.text]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                    {"role": "assistant", "content": "yo"}]}) + "\n")
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    paths = WorldPaths(tmp_path, 0, "small", tmp_path / "kb.json", tmp_path / "chat.jsonl", tmp_path / "text.jsonl",
                       tmp_path / "tok")
    tok = train_tokenizer(texts * 5, 300, model_max_length=512)
    assert len(corpus_for(paths, tok)) == 7
    deduped = corpus_for(paths, tok, dedup=True)
    assert len(deduped) == 4
