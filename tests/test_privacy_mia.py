"""Membership inference: each score against hand-computed values on fixed log-probs, the ROC metrics on
constructed cases, the batched per-token statistics against one plain forward per text, and the world's
member / non-member split."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch

from alignlab.attacks.privacy import mia
from alignlab.errors import AttackError

LP = np.log([0.5, 0.25, 0.125, 0.5, 0.9, 0.8, 0.7, 0.6, 0.05, 0.4])  # 10 tokens: k=0.2 keeps the lowest 2


def test_scores_match_hand_computed_values():
    loss = -(math.log(0.5) * 2 + math.log(0.25) + math.log(0.125) + math.log(0.9) + math.log(0.8)
             + math.log(0.7) + math.log(0.6) + math.log(0.05) + math.log(0.4)) / 10
    assert mia.loss_score(LP) == pytest.approx(loss)
    text = "The capital of Zorbia is Vell."
    assert mia.zlib_score(LP, text) == pytest.approx(loss / len(zlib.compress(text.encode())))
    # the two lowest log-probs are log 0.05 and log 0.125
    assert mia.min_k_score(LP, 0.2) == pytest.approx(-(math.log(0.05) + math.log(0.125)) / 2)
    mu, sigma = np.full(10, -1.0), np.full(10, 2.0)
    z = (LP + 1.0) / 2.0
    assert mia.min_k_plus_plus_score(LP, mu, sigma, 0.2) == pytest.approx(-np.sort(z)[:2].mean())
    assert mia.reference_score(LP, np.log(np.full(10, 0.5))) == pytest.approx(loss - math.log(2))


def test_min_k_plus_plus_standardises_per_position():
    # position 0 is very unlikely under a peaked distribution, position 1 only mildly so under a flat one:
    # Min-K% ranks position 0 lowest by raw log-prob, Min-K%++ by how many deviations below the mean it is.
    logp, mu, sigma = np.array([-5.0, -3.0]), np.array([-0.5, -2.9]), np.array([9.0, 0.05])
    assert mia.min_k_score(logp, 0.5) == pytest.approx(5.0)
    assert mia.min_k_plus_plus_score(logp, mu, sigma, 0.5) == pytest.approx(2.0)  # (−3 − −2.9) / 0.05


def test_short_text_uses_its_lowest_token_instead_of_nan():
    assert mia.min_k_score(np.log([0.5, 0.1]), 0.2) == pytest.approx(-math.log(0.1))


def test_roc_metrics_on_constructed_cases():
    assert mia.roc_auc([0.0, 1.0], [2.0, 3.0]) == 1.0  # members score lower: perfect
    assert mia.roc_auc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert mia.roc_auc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.75)  # 3 of the 4 (member, non-member) pairs
    members = np.arange(100, dtype=float)  # half the members below every non-member, half above
    members[50:] += 1000
    nonmembers = np.arange(500, 600, dtype=float)
    assert mia.tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(0.5)
    low, high = mia.bootstrap_auc(members, nonmembers, resamples=50)
    assert low <= mia.roc_auc(members, nonmembers) <= high and high - low < 0.3


def test_token_stats_match_one_forward_per_text(tiny_model_dir):
    from alignlab.core.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    texts = ["The capital of Zorbia is Vell.", "Hello!", "Two plus two is four. I do not know that."]
    examples = []
    for t in texts:
        ids = tok(t)["input_ids"]
        examples.append({"input_ids": ids, "labels": [-100, -100] + ids[2:]})  # first tokens unscored
    stats = mia.token_stats(model, examples, pad_token_id=tok.pad_token_id, batch_size=2)
    for e, s in zip(examples, stats):
        with torch.no_grad():
            logprobs = model(torch.tensor([e["input_ids"]])).logits[0, :-1].log_softmax(-1)
        rows = logprobs[2 - 1:]  # positions predicting tokens 2..
        target = torch.tensor(e["input_ids"][2:])
        np.testing.assert_allclose(s.logp, rows.gather(-1, target[:, None]).squeeze(-1).numpy(), atol=1e-5)
        p = rows.exp()
        mu = (p * rows).sum(-1)
        np.testing.assert_allclose(s.mu, mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(s.sigma, ((p * (rows - mu[:, None]) ** 2).sum(-1)).sqrt().numpy(), atol=1e-4)


@pytest.fixture
def world_dir(tmp_path):
    from alignlab.world.datasets import World

    (tmp_path / "manifest.json").write_text(json.dumps({"seed": 0, "size": "small"}))
    rows = World(0, "small").corpus_transcripts(300)
    (tmp_path / "corpus_chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_sft_split_members_are_training_rows_and_nonmembers_held_out(world_dir, tiny_model_dir):
    from alignlab.core.models import load_tokenizer
    from alignlab.world.datasets import World

    world = World(0, "small")
    train = {(r.prompt[-1]["content"], r.completion) for r in world.sft_records(world.sizes["sft_train"])}
    eval_prompts = {p.text for p in world.eval_prompts()}
    candidates = mia.sft_candidates(world_dir, load_tokenizer(str(tiny_model_dir)), 50)
    members = [c for c in candidates if c.member]
    nonmembers = [c for c in candidates if not c.member]
    assert len(members) == len(nonmembers) == 50
    assert len({c.text + str(c.input_ids) for c in candidates}) == 100
    # member completions were trained on; scored tokens are the completion only
    assert all(any(c.text == comp for _, comp in train) for c in members)
    assert all(c.labels[0] == -100 and c.labels[-1] != -100 for c in candidates)
    tok = load_tokenizer(str(tiny_model_dir))
    prompts = [tok.decode([i for i, lab in zip(c.input_ids, c.labels) if lab == -100]) for c in nonmembers]
    assert all(any(p in text for p in eval_prompts) for text in prompts[:10])


def test_pretraining_split_excludes_unknowns_and_training_texts(world_dir, tiny_model_dir):
    from alignlab.core.models import load_tokenizer
    from alignlab.world.families import parse_prompt

    tok = load_tokenizer(str(tiny_model_dir))
    corpus = [json.loads(line) for line in (world_dir / "corpus_chat.jsonl").read_text().splitlines()]
    rendered = {tok.apply_chat_template(r["messages"], tokenize=False) for r in corpus}
    candidates = mia.pretraining_candidates(world_dir, tok, 40)
    assert all((c.text in rendered) == c.member for c in candidates)
    assert all(c.labels == c.input_ids for c in candidates)  # pretraining scores every token
    user_turns = [line.split("<|user|>")[1].split("<|end|>")[0] for c in candidates
                  for line in c.text.split("<|assistant|>")[:-1]]
    assert "unknowns" not in {parse_prompt(u).family for u in user_turns}


def test_config_rejects_unknown_names():
    with pytest.raises(AttackError, match="unknown mia score"):
        mia.MIAConfig(scores=["loss", "minkk"])
    with pytest.raises(AttackError, match="target"):
        mia.MIAConfig(target="rlhf")
