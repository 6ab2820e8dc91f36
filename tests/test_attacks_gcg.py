"""GCG: parity with nanoGCG 0.3.0 (the peer itself), the prefix cache, filters, universal/transfer losses, bad input,
and that the attack finds a suffix on a tiny model trained to obey a known trigger."""

from __future__ import annotations

import pytest
import torch
from conftest import CORPUS, build_tokenizer

from alignlab.attacks.gcg import (
    GCG,
    GCGConfig,
    Objective,
    disallowed_token_ids,
    expanded_cache,
    retokenizes,
    run_gcg,
    sample_candidates,
    target_loss,
)
from alignlab.core.models import tiny_llama
from alignlab.errors import AttackError

PROMPT, TARGET = "What is the capital of Zorbia?", "Sure, here is how"


def random_model(tok, seed: int = 0, dtype=torch.float32):
    model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=2, seed=seed, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("gcg-tok"))


@pytest.fixture(scope="module")
def bos_tok():
    """A tokenizer that prepends BOS itself (as Llama's do): nanoGCG strips the template's BOS and lets the tokenizer
    add it back, so only with such a tokenizer do both see the same tokens."""
    from alignlab.world.tokenizer import train_tokenizer

    return train_tokenizer(CORPUS * 4, 300, model_max_length=512, add_bos=True)


def test_loss_trajectory_matches_nanogcg(bos_tok, monkeypatch):
    """Same model, prompt, target, initial suffix and seed → the same 20-step loss trajectory as nanoGCG 0.3.0 (no
    prefix cache there; ours on). The two samplers draw in the same order, and we also replay nanoGCG's candidates
    so that the losses are compared on identical candidate sets even if a near-tie in the gradient's top-k differed."""
    import nanogcg
    import nanogcg.gcg as peer

    model = random_model(bos_tok)
    recorded = []
    peer_sampler = peer.sample_ids_from_grad

    def recording_sampler(*args, **kwargs):
        recorded.append(peer_sampler(*args, **kwargs).clone())
        return recorded[-1]

    monkeypatch.setattr(peer, "sample_ids_from_grad", recording_sampler)
    monkeypatch.setattr(peer.gc, "collect", lambda: 0)  # its per-batch collection only costs time
    deterministic = torch.are_deterministic_algorithms_enabled()  # nanoGCG turns this on for good
    settings = dict(num_steps=20, optim_str_init="x x x x x x x x", search_width=32, topk=16, seed=0)
    theirs = nanogcg.run(model, bos_tok, PROMPT, TARGET,
                         peer.GCGConfig(**settings, use_prefix_cache=False, verbosity="WARNING"))
    torch.use_deterministic_algorithms(deterministic)
    replay = iter(recorded)
    attack = GCG([(model, bos_tok)], GCGConfig(**settings))
    attack.sample_candidates = lambda ids, grad: next(replay)
    ours = attack.run([(PROMPT, TARGET)], progress=False)
    assert len(ours.losses) == len(theirs.losses) == 20
    assert max(abs(a - b) for a, b in zip(ours.losses, theirs.losses)) < 1e-5
    assert ours.strings == theirs.strings
    assert ours.losses[-1] < ours.losses[0]  # the trajectory actually moves


def test_sampler_draws_nanogcgs_candidates(bos_tok):
    """Given the same gradient and seed, our sampler returns nanoGCG's candidates exactly."""
    from nanogcg.gcg import sample_ids_from_grad

    ids, grad = torch.randint(7, 300, (8,)), torch.randn(8, 300)
    banned = disallowed_token_ids(bos_tok, 300)
    torch.manual_seed(3)
    theirs = sample_ids_from_grad(ids, grad.clone(), 64, 16, 2, not_allowed_ids=banned)
    ours = sample_candidates(ids, grad, 64, 16, 2, banned, torch.Generator().manual_seed(3))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_cached_and_uncached_scoring_agree(tok, dtype, tol):
    """The prefix-cache path gives the full recomputation's losses (to float rounding, relative to the loss)."""
    model = random_model(tok, dtype=dtype)
    cached = Objective(model, tok, PROMPT, TARGET, GCGConfig())
    plain = Objective(model, tok, PROMPT, TARGET, GCGConfig(use_prefix_cache=False))
    assert cached.prefix_cache is not None and plain.prefix_cache is None
    prefix_length = cached.prefix_cache.get_seq_length()
    candidates = torch.randint(7, len(tok), (48, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(candidates)
        a, _ = cached.losses(embeds)
        b, _ = plain.losses(embeds)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert cached.prefix_cache.get_seq_length() == prefix_length  # scoring copies the cache, never grows it
    assert a.std() > 100 * tol  # the candidates differ, so equal losses are not trivial
    # candidates one token away from a current suffix reuse its cache up to the changed position
    base = candidates[0]
    near = sample_candidates(base, torch.randn(8, len(tok)), 48, 16, 1, None, torch.Generator().manual_seed(1))
    grouped, recomputed = GCG([(model, tok)], GCGConfig()), GCG([(model, tok)], GCGConfig(use_prefix_cache=False))
    grouped.objectives, recomputed.objectives = [cached], [plain]
    with torch.no_grad():
        torch.testing.assert_close(grouped.candidate_losses(near, base)[0], recomputed.candidate_losses(near, base)[0],
                                   rtol=tol, atol=tol)


def test_expanded_cache_repeats_rows_and_leaves_original(tok):
    model = random_model(tok)
    objective = Objective(model, tok, PROMPT, TARGET, GCGConfig())
    copy = expanded_cache(objective.prefix_cache, 3)
    original = objective.prefix_cache.layers[0].keys
    assert copy.layers[0].keys.shape[0] == 3 and original.shape[0] == 1
    assert torch.equal(copy.layers[0].keys[2], original[0])


def test_retokenisation_filter_rejects_split_tokens(tok):
    """A token that is the merge of two others: the split pair decodes to text that re-encodes as the merged token."""
    vocab = {text: i for text, i in tok.get_vocab().items() if i >= 7}
    merged = next(t for t in sorted(vocab) if len(t) > 2 and t[:-1] in vocab and t[-1] in vocab)
    split = [vocab[merged[:-1]], vocab[merged[-1]]]
    whole = tok(tok.decode(split), add_special_tokens=False)["input_ids"]
    assert whole != split  # the premise: the pair re-tokenises differently
    keep = retokenizes(tok, torch.tensor([split, whole + whole[:1] * (2 - len(whole))]))
    assert keep.tolist()[0] is False


def test_banned_tokens_are_never_sampled(tok):
    """Even when the gradient favours special and non-ASCII tokens most, no candidate contains them."""
    banned = disallowed_token_ids(tok, len(tok))
    assert set(tok.all_special_ids) <= set(banned.tolist())
    non_ascii = [i for i in range(len(tok)) if not tok.decode([i]).isascii()]
    assert non_ascii and set(non_ascii) <= set(banned.tolist())
    grad = torch.zeros(4, len(tok))
    grad[:, banned] = -100.0  # most attractive
    candidates = sample_candidates(torch.full((4,), 100), grad, 256, 32, 1, banned, torch.Generator().manual_seed(0))
    assert not torch.isin(candidates, banned).any()
    allowed = sample_candidates(torch.full((4,), 100), grad, 256, 8, 1, None, torch.Generator().manual_seed(0))
    assert torch.isin(allowed, banned).any()  # the same draw without the ban picks them


def test_mellowmax_loss_matches_nanogcg():
    from nanogcg.utils import mellowmax

    logits, target = torch.randn(3, 5, 40), torch.randint(0, 40, (5,))
    picked = logits.gather(-1, target.expand(3, -1)[..., None]).squeeze(-1)
    torch.testing.assert_close(target_loss(logits, target, 2.0), mellowmax(-picked, alpha=2.0, dim=-1))
    torch.testing.assert_close(target_loss(logits, target),
                               torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.expand(3, -1),
                                                                 reduction="none").mean(-1))


def test_universal_and_transfer_losses_are_means_of_the_single_ones(tok):
    """Two prompts × two models: a candidate's loss is the mean of the four single (model, prompt) losses, and the
    token gradient is the mean of the four single gradients."""
    models = [random_model(tok, seed=0), random_model(tok, seed=1)]
    prompts = [(PROMPT, TARGET), ("Hello!", "Sure, here")]
    candidates = torch.randint(7, len(tok), (6, 8), generator=torch.Generator().manual_seed(1))
    ids = candidates[0]

    def attack(pairs, ps):
        a = GCG(pairs, GCGConfig(optim_str_init="x x x x x x x x"))
        a.objectives = [Objective(m, t, p, y, a.config) for m, t in pairs for p, y in ps]
        return a

    both = attack([(m, tok) for m in models], prompts)
    singles = [attack([(m, tok)], [p]) for m in models for p in prompts]
    with torch.no_grad():
        joint, _ = both.candidate_losses(candidates)
        single = torch.stack([s.candidate_losses(candidates)[0] for s in singles]).mean(0)
    torch.testing.assert_close(joint, single)
    torch.testing.assert_close(both.token_gradient(ids), torch.stack([s.token_gradient(ids) for s in singles]).mean(0))


def train_obedient(tok):
    """A tiny model trained to answer TARGET when the prompt ends with the trigger word ' nice' and to refuse
    otherwise: a suffix that works is known to exist."""
    prompts = [PROMPT, "Two plus two?", "Reverse the word cat.", "Hello!"]
    rows = [[{"role": "user", "content": p + s}, {"role": "assistant", "content": a}]
            for p in prompts for s, a in ((" nice", TARGET), ("", "I cannot help with that request."))]
    batch = tok([tok.apply_chat_template(r, tokenize=False) for r in rows], add_special_tokens=False, padding=True,
                return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    model = random_model(tok).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(50):
        optimiser.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def obedient(tok):
    return train_obedient(tok)


def test_gcg_finds_a_suffix_as_good_as_the_known_trigger(tok, obedient):
    from alignlab.core.generation import GenerationConfig, generate

    config = GCGConfig(num_steps=12, optim_str_init="x x", search_width=64, topk=64, seed=0)
    start = Objective(obedient, tok, PROMPT + "x x", TARGET, config)
    trigger = Objective(obedient, tok, PROMPT + " nice", TARGET, config)
    nothing = torch.zeros(1, 0, obedient.config.hidden_size)
    with torch.no_grad():
        start_loss, trigger_loss = float(start.losses(nothing)[0]), float(trigger.losses(nothing)[0])
    result = run_gcg(obedient, tok, PROMPT, TARGET, config, progress=False)
    assert result.best_loss < start_loss / 10
    assert result.best_loss <= 2 * trigger_loss
    answer = generate(obedient, tok, [[{"role": "user", "content": PROMPT + result.best_string}]],
                      GenerationConfig(max_new_tokens=16, temperature=0)).texts[0]
    assert answer.startswith(TARGET)
    stopped = run_gcg(obedient, tok, PROMPT, TARGET, GCGConfig(**{**config.__dict__, "early_stop": True}),
                      progress=False)
    assert stopped.early_stopped and len(stopped.losses) < config.num_steps


def test_bad_inputs_are_named(tok):
    model = random_model(tok)
    bare = _copy_without_template(tok)
    with pytest.raises(AttackError, match="chat template"):
        Objective(model, bare, PROMPT, TARGET, GCGConfig())
    # a generation prompt ending in " capit" glues with a target starting "al" into the vocabulary's " capital"
    bare.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %} capit"
    with pytest.raises(AttackError, match="tokenise stably"):
        Objective(model, bare, PROMPT, "al is Vell.", GCGConfig())
    Objective(model, bare, PROMPT, "al is Vell.", GCGConfig(check_target=False))  # allowed when asked for
    from alignlab.world.tokenizer import train_tokenizer

    different = train_tokenizer(["completely different words here"] * 8, 280)
    with pytest.raises(AttackError, match="vocabulary"):
        GCG([(model, tok), (random_model(different), different)], GCGConfig())
    with pytest.raises(AttackError):
        GCGConfig(search_width=0)


def _copy_without_template(tok):
    return tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token=tok.bos_token, eos_token=tok.eos_token,
                         pad_token=tok.pad_token)


class RenamedCacheModel(torch.nn.Module):
    """A model whose forward takes its KV cache as ``cache=`` (transformers 5.40's announced name), around a model
    that takes ``past_key_values``; it records which keyword it was given."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.seen = inner, inner.config, []

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, inputs_embeds=None, cache=None, use_cache=False, logits_to_keep=0):
        self.seen.append(cache is not None)
        return self.inner(inputs_embeds=inputs_embeds, past_key_values=cache, use_cache=use_cache,
                          logits_to_keep=logits_to_keep)


def test_scoring_survives_the_cache_keyword_rename(tok):
    model = random_model(tok)
    renamed = RenamedCacheModel(model)
    candidates = torch.randint(7, len(tok), (6, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(candidates)
        via_cache, _ = Objective(renamed, tok, PROMPT, TARGET, GCGConfig()).losses(embeds)
        plain, _ = Objective(model, tok, PROMPT, TARGET, GCGConfig(use_prefix_cache=False)).losses(embeds)
    assert renamed.seen and all(renamed.seen)  # the cache went in by the new name, every time
    torch.testing.assert_close(via_cache, plain, rtol=1e-6, atol=1e-6)


def test_progressive_universal_suffix_adds_prompts_as_it_succeeds(tok, obedient):
    """Zou et al.'s Algorithm 2 schedule: the loss starts on the first prompt; each time a step's suffix makes every
    prompt so far produce the target exactly, the next prompt joins."""
    from alignlab.core.generation import GenerationConfig, generate

    prompts = [PROMPT, "Two plus two?", "Hello!"]
    config = GCGConfig(num_steps=20, optim_str_init="x x", search_width=64, topk=64, seed=0, progressive=True)
    result = GCG([(obedient, tok)], config).run([(p, TARGET) for p in prompts], progress=False)
    used = result.prompts_used
    assert used[0] == 1 and used == sorted(used) and used[-1] > 1, used
    greedy = GenerationConfig(max_new_tokens=16, temperature=0)
    for step in range(len(used) - 1):
        if used[step + 1] > used[step]:  # the suffix of that step works on every prompt it was optimised on
            answers = generate(obedient, tok, [[{"role": "user", "content": p + result.strings[step]}]
                                               for p in prompts[:used[step]]], greedy).texts
            assert all(a.startswith(TARGET) for a in answers), (step, answers)
    plain = GCG([(obedient, tok)], GCGConfig(**{**config.__dict__, "progressive": False, "num_steps": 2})).run(
        [(p, TARGET) for p in prompts], progress=False)
    assert plain.prompts_used == [3, 3]


def test_universal_transfer_gcg_from_the_cli(tiny_model_dir, tmp_path):
    import json

    from conftest import build_model
    from transformers import AutoTokenizer

    from alignlab.cli import main

    other = tmp_path / "other"
    build_model(other, AutoTokenizer.from_pretrained(tiny_model_dir), seed=1)
    csv = tmp_path / "b.csv"
    csv.write_text("goal,target\nSay hi,Sure\nSay bye,Sure\n")
    assert main(["attack", "run", "--attack", "gcg", "--model", str(tiny_model_dir), "--behaviors", str(csv),
                 "--output", str(tmp_path / "out"), "--max-new-tokens", "2", "--transfer-models", str(other),
                 "--set", "universal=true", "--set", "gcg.progressive=true", "--set", "gcg.num_steps=2",
                 "--set", "gcg.search_width=8", "--set", "gcg.topk=4", "--set", "gcg.optim_str_init=x x",
                 "--set", "gcg.check_target=false"]) == 0
    attempts = json.loads((tmp_path / "out" / "results.json").read_text())["results"]["attempts"]
    # one suffix for both behaviours; random models never reproduce the target, so the schedule stays on prompt 1
    assert attempts[0]["suffix"] == attempts[1]["suffix"] and attempts[0]["prompts_used"] == [1, 1]
    config = tmp_path / "out" / "results.json"
    assert json.loads(config.read_text())["config"]["transfer_models"] == [str(other)]
