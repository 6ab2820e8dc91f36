"""The local LM backend: tree rows give the same numbers as separate rows, order and duplicates are
handled, greedy flags are right, generation respects stop strings and chat prompts."""

import pytest
import torch

from alignlab.errors import EvalError
from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.lm import HuggingFaceLM, build_tree_rows, cut_at_stop, load_lm, tree_attention_mask

TEXTS = [
    "The cat sat on the mat.",
    "The cat sat on the hat.",
    "A dog ran in the park.",
    "Hello there, friend.",
] * 20


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=2)
    model = HuggingFaceLM(path, batch_size=3, device="cpu")
    model.model.double()  # exact comparisons between batchings
    return model


def test_tree_attention_mask():
    # root 0 -> 1 -> {2 -> 3, 4}: token 4 branches off after token 1
    allowed = tree_attention_mask([-1, 0, 1, 2, 1])
    assert allowed[4].tolist() == [True, True, False, False, True]  # skips the other branch
    assert allowed[3].tolist() == [True, True, True, True, False]
    assert allowed[1].tolist() == [True, True, False, False, False]


def test_build_tree_rows_shares_every_common_prefix():
    inputs = [[1, 2, 3, 4, 5, 6], [9, 9], [1, 2, 3, 4, 7], [1, 2, 8]]
    rows = build_tree_rows(inputs, min_shared=2)
    tree = next(r for r in rows if len(r.members) == 3)
    # sorted: [1,2,3,4,5,6], [1,2,3,4,7], [1,2,8] -> 6 + 1 + 1 tokens instead of 14
    assert tree.tokens == [1, 2, 3, 4, 5, 6, 7, 8] and tree.positions == [0, 1, 2, 3, 4, 5, 4, 2]
    assert tree.parent == [-1, 0, 1, 2, 3, 4, 3, 1]
    for uid, cols in tree.members:  # each member's columns reproduce its tokens at their positions
        assert [tree.tokens[c] for c in cols] == inputs[uid]
        assert [tree.positions[c] for c in cols] == list(range(len(inputs[uid])))
    assert all(len(r.members) == 1 for r in build_tree_rows(inputs, max_members=1))


def test_tree_rows_equal_separate_rows_and_order_is_kept(lm):
    requests = [("The cat sat on the", c) for c in (" mat.", " hat.", " mat. And then it slept.")]
    requests += [("", "Hello there, friend."), ("The cat sat on the", " mat."), ("A dog", " ran")]
    shared = lm.loglikelihood(requests)
    lm.share_prefix = False
    try:
        separate = lm.loglikelihood(requests)
        one_by_one = [lm.loglikelihood([r])[0] for r in requests]
    finally:
        lm.share_prefix = True
    for a, b, c in zip(shared, separate, one_by_one):
        assert a[0] == pytest.approx(b[0], abs=1e-9) and a[0] == pytest.approx(c[0], abs=1e-9)
        assert a[1] == b[1] == c[1]
    assert shared[1] == shared[1] and shared[4] == shared[0]  # duplicate request, same answer
    assert all(ll < 0 for ll, _ in shared)


def test_greedy_continuation_is_flagged_greedy(lm):
    ctx = lm.encode_prompt("The cat sat")
    [cont] = lm.generate_ids([ctx], max_tokens=5)
    assert cont
    ll, greedy = lm.loglikelihood_tokens([(ctx, cont)])[0]
    assert greedy and ll <= 0
    other = [(ctx, [(cont[0] + 1) % len(lm.tokenizer)] + cont[1:])]
    assert lm.loglikelihood_tokens(other)[0][1] is False


def test_generate_stop_chat_and_order(lm):
    prompts = ["The cat", "A dog ran in the park and then", [{"role": "user", "content": "Hi"}]]
    free = lm.generate(prompts, max_tokens=8)
    assert [lm.generate([p], max_tokens=8)[0] for p in prompts] == free  # batching/sorting keeps order
    stop = free[1][2:4]
    if stop.strip():
        assert stop not in lm.generate([prompts[1]], max_tokens=8, stop=[stop])[0]
    assert cut_at_stop("abc\n\nQ: x", ["\n\n", "Q:"]) == "abc"


def test_errors_are_eval_errors(lm, tmp_path):
    with pytest.raises(EvalError, match="empty continuation"):
        lm.loglikelihood([("context", "")])
    with pytest.raises(EvalError, match="run directory"):
        load_lm(str(tmp_path))
    # asking for the whole context window leaves no room for the prompt (a [-0:] cut would keep all of it)
    with pytest.raises(EvalError, match="no room for a prompt"):
        lm.generate(["The cat"], max_tokens=lm.max_length)
    prompt = lm.encode_prompt("The cat sat on the mat and then")
    [kept] = lm.complete([prompt], max_tokens=lm.max_length - 3).prompt_ids
    assert list(kept) == list(prompt)[-3:]  # cut on the left to the room left
    (tmp_path / "final").mkdir()
    lm.model.save_pretrained(tmp_path / "final")
    lm.tokenizer.save_pretrained(tmp_path / "final")
    assert isinstance(load_lm(str(tmp_path)), HuggingFaceLM)  # a run dir resolves to its final/ model


def test_out_of_memory_halves_the_batch(lm, monkeypatch):
    requests = [("", t) for t in TEXTS[:4]] + [("A dog", " ran in the park."), ("Hello", " there")]
    monkeypatch.setattr(lm, "batch_size", 16)
    want = lm.loglikelihood(requests)
    forward, widths = lm.model.forward, []

    def small_memory(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("pretend")
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", small_memory)
    assert lm.loglikelihood(requests) == want
    assert max(widths) > 1 and widths[-1] == 1  # it tried bigger batches first, then went down to one row


def test_shared_prefix_runs_once_and_keeps_greedy_flags(lm, monkeypatch):
    # Every input starts with BOS: it goes through the model once for the whole call, and the request
    # whose first continuation token is predicted *at* the BOS position is scored from that prefix.
    bos = [lm.encoder.prefix_token_id]
    [greedy_cont] = lm.generate_ids([bos], max_tokens=4)
    wrong_first = [(greedy_cont[0] + 1) % len(lm.tokenizer)] + greedy_cont[1:]
    requests = [(bos, greedy_cont), (bos, wrong_first), (bos, greedy_cont[:2])]
    requests += [
        lm.encoder.encode_pair(c, x) for c, x in [("The cat sat", " on the mat."), ("A dog", " ran in the park.")]
    ]
    monkeypatch.setattr(lm, "share_prefix", False)
    separate = lm.loglikelihood_tokens(requests)
    monkeypatch.setattr(lm, "share_prefix", True)
    forward, prefix_calls = lm.model.forward, []

    def counting(*args, **kwargs):
        if kwargs.get("use_cache"):
            prefix_calls.append(kwargs["input_ids"].tolist())
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", counting)
    shared = lm.loglikelihood_tokens(requests)
    assert prefix_calls == [[bos]]  # once, though batch_size 3 makes several forwards
    assert [g for _, g in shared] == [g for _, g in separate]
    assert shared[0][1] and not shared[1][1] and shared[2][1]  # the flip at the BOS position is seen
    for a, b in zip(shared, separate):
        assert a[0] == pytest.approx(b[0], abs=1e-9)


def test_results_do_not_depend_on_order_or_batch_size(lm, monkeypatch):
    requests = [("", t) for t in TEXTS[:4]] + [("The cat sat on the", c) for c in (" mat.", " hat.")]
    requests += [("A dog", " ran in the park."), ("Hello", " there, friend.")]
    want = lm.loglikelihood(requests)
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    for batch_size in (1, 2, 5, 64):
        monkeypatch.setattr(lm, "batch_size", batch_size)
        got = lm.loglikelihood([requests[i] for i in order])
        for i, (ll, greedy) in zip(order, got):
            assert ll == pytest.approx(want[i][0], abs=1e-9) and greedy == want[i][1]


def test_logsumexp_argmax_matches_torch():
    from alignlab.evaluate.lm import _logsumexp_argmax

    logits = torch.randn(7, 50, dtype=torch.float64) * 10
    lse, best = _logsumexp_argmax(logits.clone())
    assert torch.allclose(lse, torch.logsumexp(logits, dim=-1)) and torch.equal(best, logits.argmax(dim=-1))
    copy = logits.clone()
    _logsumexp_argmax(copy, in_place=True)
    assert not torch.equal(copy, logits)  # in place means in place: the caller's logits are spent


def test_continuation_longer_than_the_window_is_scored_on_what_fits(tiny_model_dir):
    from alignlab.evaluate.lm import HuggingFaceLM

    lm = HuggingFaceLM(str(tiny_model_dir), device="cpu", max_length=8)
    ctx, cont = [1, 5, 6], list(range(10, 22))  # 12 continuation tokens, an 8-token window
    (long_ll, _), = lm.loglikelihood_tokens([(ctx, cont)])
    # the window predicts the last 8 tokens from the 4 before them: the same as asking for exactly those
    (fit_ll, _), = lm.loglikelihood_tokens([(cont[:4], cont[4:])])
    assert long_ll == fit_ll


def test_bf16_linear_weights_give_the_autocast_numbers(tiny_model_dir):
    # Under bf16 autocast, a model HuggingFaceLM loads keeps its linear weights in bf16 (autocast would cast them
    # on every call); the products are the same roundings, so the log-likelihoods are identical.
    from alignlab.core.models import load_causal_lm
    from alignlab.evaluate.lm import HuggingFaceLM

    loaded = HuggingFaceLM(str(tiny_model_dir), device="cpu", autocast="bfloat16")
    given = HuggingFaceLM(load_causal_lm(str(tiny_model_dir)), str(tiny_model_dir), device="cpu", autocast="bfloat16")
    assert loaded.model.lm_head.weight.dtype == torch.bfloat16 and given.model.lm_head.weight.dtype == torch.float32
    requests = [("", "The capital of Zorbia is Vell."), ("Two plus", " two is four."), ("Two plus", " three")]
    assert loaded.loglikelihood(requests) == given.loglikelihood(requests)
