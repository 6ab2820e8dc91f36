"""Tokenisation (prompt/completion boundary, masks, truncation) and log-prob correctness."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tokenizer

from alignlab.core.logprobs import pair_logprobs, selective_log_softmax, sequence_logprobs, token_logprobs
from alignlab.core.models import tiny_llama
from alignlab.core.records import assistant, user
from alignlab.core.tokenize import (
    IGNORE_INDEX,
    CompletionCollator,
    PairCollator,
    batch_order,
    encode_completion,
    pack,
    split_rendering,
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_boundary_is_the_generation_prompt_token_by_token(tok):
    prompt = [user("What is the capital of Zorbia?")]
    enc = encode_completion(tok, prompt, "Vell.")
    gen_prompt_ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"]
    # The model is trained on exactly the ids it will see at generation time, then the answer.
    assert enc["input_ids"][: len(gen_prompt_ids)] == gen_prompt_ids
    assert enc["prompt_ids"] == gen_prompt_ids
    assert tok.decode(enc["completion_ids"]) == "Vell." + tok.eos_token
    assert enc["labels"] == [IGNORE_INDEX] * len(gen_prompt_ids) + enc["completion_ids"]
    # exactly one BOS and one EOS: nothing is added twice
    assert enc["input_ids"].count(tok.bos_token_id) == 1 and enc["input_ids"].count(tok.eos_token_id) == 1


def test_multi_turn_prompt_keeps_history(tok):
    prompt = [user("Hi"), assistant("Hello!"), user("Two plus two?")]
    prompt_text, completion_text = split_rendering(tok, prompt, "Four.")
    assert "Hello!" in prompt_text and completion_text.startswith("Four.")


def test_truncation_keeps_prompt_end_and_completion_start(tok):
    enc = encode_completion(tok, [user("word " * 200 + "END?")], "answer " * 200, max_length=40, max_prompt_length=10)
    assert len(enc["prompt_ids"]) == 10 and len(enc["input_ids"]) == 40
    assert tok.decode(enc["prompt_ids"]).endswith("<|assistant|>")
    assert "END" in tok.decode(enc["prompt_ids"])


def test_collators_and_packing(tok):
    a = encode_completion(tok, [user("Hi")], "Hello there.")
    b = encode_completion(tok, [user("Two plus two, please?")], "Four.")
    batch = CompletionCollator(tok.pad_token_id, pad_to_multiple_of=8)([a, b])
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["attention_mask"].sum().item() == len(a["input_ids"]) + len(b["input_ids"])
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    pairs = PairCollator(tok.pad_token_id)([{"chosen": a, "rejected": b, "margin": 1.5}])
    assert pairs["input_ids"].shape[0] == 2 and pairs["margin"].tolist() == [1.5]
    blocks = pack([a, b] * 10, block_size=16)
    assert all(len(x["input_ids"]) == 16 == len(x["labels"]) for x in blocks)


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    lengths = [5, 50, 7, 48, 6, 49, 8, 47] * 4
    first = batch_order(lengths, 4, seed=1, epoch=0)
    assert first == batch_order(lengths, 4, seed=1, epoch=0)
    assert first != batch_order(lengths, 4, seed=1, epoch=1)
    assert sorted(i for b in first for i in b) == list(range(len(lengths)))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert max(spread) <= 3  # grouped by length: little padding


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_log_softmax_matches_naive(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(3, 7, 50) * 5).to(dtype)
    index = torch.randint(0, 50, (3, 7))
    naive = logits.float().log_softmax(-1).gather(-1, index[..., None]).squeeze(-1)
    torch.testing.assert_close(selective_log_softmax(logits, index), naive, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_log_softmax_gradient_matches_autograd(dtype):
    """The hand-written backward (g·(onehot − softmax), block by block) against autograd's, on a sliced view,
    with rows spanning several blocks and weights of both signs."""
    torch.manual_seed(0)
    base = (torch.randn(3, 20, 50) * 5).to(dtype)
    index = torch.randint(0, 50, (3, 19))
    weight = torch.randn(3, 19)
    ours, naive = base.clone().requires_grad_(), base.clone().requires_grad_()
    (selective_log_softmax(ours[:, :-1], index) * weight).sum().backward()
    (naive[:, :-1].float().log_softmax(-1).gather(-1, index[..., None]).squeeze(-1) * weight).sum().backward()
    assert ours.grad.dtype == dtype and not ours.grad[:, -1].any()
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # bf16: one rounding of each gradient entry
    torch.testing.assert_close(ours.grad.float(), naive.grad.float(), atol=tol, rtol=tol)


def test_token_and_pair_logprobs_match_full_forward(tok):
    model = tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, seed=0, pad_token_id=tok.pad_token_id).eval()
    chosen = encode_completion(tok, [user("Capital of Zorbia?")], "Vell.")
    rejected = encode_completion(tok, [user("Capital of Zorbia?")], "I think it is Paris, of course.")
    batch = PairCollator(tok.pad_token_id)([{"chosen": chosen, "rejected": rejected}])
    with torch.no_grad():
        out = pair_logprobs(model, batch)
        for i, enc in enumerate([chosen, rejected]):
            ids = torch.tensor([enc["input_ids"]])
            full = model(ids).logits.log_softmax(-1)[0]  # naive: the whole vocabulary, every position
            p = len(enc["prompt_ids"])
            expected = sum(full[t - 1, ids[0, t]] for t in range(p, ids.shape[1]))
            got = out["chosen_logp" if i == 0 else "rejected_logp"][0]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert out["chosen_len"].item() == len(chosen["completion_ids"])
        logps, mask = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        assert (logps[~mask] == 0).all() and (logps[mask] < 0).all()
        total, _ = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        torch.testing.assert_close(total, torch.cat([out["chosen_logp"], out["rejected_logp"]]))
