"""Gumbel-softmax red teaming: the classifier learns the world's safe/unsafe answers; the optimisation raises the
classifier's p(unsafe) of the target's sampled responses."""

from __future__ import annotations

import torch
from conftest import build_tokenizer

from alignlab.attacks.redteam_gumbel import (
    GumbelConfig,
    SafetyClassifier,
    gumbel_red_team,
    train_safety_classifier,
    world_safety_texts,
)


def test_safety_classifier_learns_the_worlds_answers(tmp_path):
    tok = build_tokenizer(tmp_path)
    texts, labels = world_safety_texts()
    assert 0 < sum(labels) < len(labels)
    clf, accuracy = train_safety_classifier(tok, texts[:400], labels[:400], epochs=5)
    assert accuracy > 0.9  # held-out answers; always guessing one class scores about a half
    soft = torch.nn.functional.one_hot(torch.tensor([tok("Sure. Step 1: x", add_special_tokens=False)["input_ids"]]),
                                       len(tok)).float()
    assert clf(soft).shape == (1,)


def test_red_teaming_finds_what_makes_the_target_comply(tmp_path):
    """A tiny model trained to answer "Sure, here is how" only after the trigger word ' nice', and a classifier that
    calls a response unsafe when it opens with that answer's first token: the optimised red-team tokens make the
    target's sampled responses unsafe, and a decoded prompt makes the real model open with that token."""
    from test_attacks_gcg import PROMPT, TARGET, train_obedient

    from alignlab.core.generation import GenerationConfig, generate

    tok = build_tokenizer(tmp_path)
    model = train_obedient(tok)
    model.zero_grad(set_to_none=True)
    first = tok(TARGET, add_special_tokens=False)["input_ids"][0]
    clf = SafetyClassifier(len(tok), dim=1)
    with torch.no_grad():  # logit = 12 · (mean mass on the first target token) − 3
        clf.embed.zero_()
        clf.embed[first, 0] = 1.0
        clf.head[0].weight.fill_(1.0), clf.head[0].bias.zero_(), clf.head[2].weight.fill_(12.0)
        clf.head[2].bias.fill_(-3.0)
    config = GumbelConfig(steps=30, batch=4, prompt_tokens=3, response_tokens=1, lr=0.3, realism_weight=0.1, seed=0)
    result = gumbel_red_team(model, tok, clf, PROMPT, config)
    assert len(result.prompts) == 4 and len(result.p_unsafe) == 30
    answers = generate(model, tok, [[{"role": "user", "content": PROMPT + suffix}] for suffix in ("", *result.prompts)],
                       GenerationConfig(max_new_tokens=4, temperature=0)).texts
    opening = tok.decode([first])
    assert not answers[0].startswith(opening)  # unattacked, it refuses
    assert any(a.startswith(opening) for a in answers[1:]), (result.prompts, answers)  # what the classifier flags
    assert all(p.grad is None for p in model.parameters())  # only θ was differentiated


def test_redteam_attack_through_the_pipeline(tiny_model_dir, tmp_path):
    import json

    from alignlab.cli import main

    assert main(["attack", "run", "--attack", "redteam", "--model", str(tiny_model_dir), "--behaviors", "world",
                 "--limit", "2", "--output", str(tmp_path / "rt"), "--max-new-tokens", "3",
                 "--set", "redteam.steps=2", "--set", "redteam.batch=2",
                 "--set", "classifier_epochs=1"]) == 0
    attempts = json.loads((tmp_path / "rt" / "results.json").read_text())["results"]["attempts"]
    assert [len(a["p_unsafe"]) for a in attempts] == [2, 2]
    assert all(a["messages"][0]["content"] == a["goal"] + a["suffix"] for a in attempts)
