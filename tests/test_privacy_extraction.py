"""Training-data extraction: the three rankings on constructed log-probs, precision at k, and the attack's
bookkeeping (which samples are training text, which hold a canary) on scripted samples."""

from __future__ import annotations

import numpy as np
import pytest

from alignlab.attacks.privacy import extraction as ex
from alignlab.world.canaries import Canary, secret_text


def test_rankings_order_by_their_formulas():
    texts = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the capital of Vell", "xq"]
    target = [np.full(4, -1.0), np.full(4, -2.0), np.full(4, -0.5)]  # log-perplexities 1, 2, 0.5
    comparison = [np.full(4, -1.0), np.full(4, -8.0), np.full(4, -0.25)]  # ratios 1, 0.25, 2
    orders = ex.rank_samples(target, texts, comparison)
    assert orders["perplexity"] == [2, 0, 1]
    assert orders["comparison"] == [1, 0, 2]
    ratios = [lp / ex.zlib_entropy(t) for lp, t in zip([1.0, 2.0, 0.5], texts)]
    assert orders["zlib"] == list(np.argsort(ratios))
    assert ex.zlib_entropy("xq") == 8 * len(__import__("zlib").compress(b"xq"))
    assert "comparison" not in ex.rank_samples(target, texts)


def test_precision_at_k_and_secret_matching():
    assert ex.precision_at_k([True, True, False, False], 3) == pytest.approx(2 / 3)
    canary = Canary("phone", "Ann", "The phone number of Ann is", secret_text("40213"), ".", 4)
    assert ex.secret_in("is 4 0 2 1 3.", canary) and ex.secret_in("call 40213", canary)
    assert not ex.secret_in("is 4 0 2 1 4.", canary)


def test_attack_bookkeeping_on_scripted_samples(tiny_model_dir, monkeypatch):
    from alignlab.core import generation
    from alignlab.core.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    canary = Canary("phone", "Ann", "The phone number of Ann is", secret_text("12"), ".", 4)
    training = "The capital of Zorbia is Vell."
    scripted = [training + tok.eos_token, "Vell is not a capital.", canary.text, training[:12]]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in scripted]
    real = generation.generate

    def fake(model_, tok_, prompts, config, **kw):
        if prompts and prompts[0] == [tok.bos_token_id]:  # the unconditioned samples: scripted, cycled
            rows = [ids[i % len(ids)] for i in range(len(prompts))]
            return generation.GenerationOutput(prompt_ids=prompts, completion_ids=rows,
                                               texts=[tok.decode(r, skip_special_tokens=True) for r in rows],
                                               finished=[True] * len(rows), seconds=0.0)
        return real(model_, tok_, prompts, config, **kw)

    monkeypatch.setattr(generation, "generate", fake)
    corpus = "\n".join([tok.bos_token + training + tok.eos_token, tok.bos_token + canary.text + tok.eos_token])
    config = ex.ExtractionConfig(samples=8, k_values=[8], max_new_tokens=4)
    result = ex.extract_from(model, tok, corpus, [canary], config)
    # the whole training text and the prefix of it count; the made-up sentence does not; the canary text is a
    # canary but (without its EOS) also the start of a training text
    assert result["memorised_fraction"] == pytest.approx(3 / 4)
    assert result["canary_samples"] == 2
    for ranking in result["ranking"].values():
        assert ranking["canary_precision_at_8"] == pytest.approx(0.25)
        assert ranking["canaries_recovered_in_top_8"] == [4]
    assert {p["repeats"] for p in result["prompted"]} == {4}
    assert set(result["prompted"][0]) >= {"prefix", "direct", "jailbreak"}
