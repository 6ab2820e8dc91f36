"""Toy models of interpretability: hand-computed cases for every score, and small runs that fail when the
mechanism is broken (induction needs two layers; ReLU superposes sparse features, linear never does; SoLU
changes the forward and round-trips save_pretrained; an identity SAE recovers all of the CE loss)."""

from __future__ import annotations

import torch

from alignlab.interpret.toy import attention_only as A
from alignlab.interpret.toy import circuits as C
from alignlab.interpret.toy import sae as S
from alignlab.interpret.toy import superposition as P
from alignlab.interpret.toy import world_labels as W


def perfect_pattern(periods: torch.Tensor, n_ctx: int, offset) -> torch.Tensor:
    """One head attending from each query q to ``offset(q, period)`` (position 0 where that is negative)."""
    pattern = torch.zeros(len(periods), 1, n_ctx, n_ctx)
    for b, period in enumerate(periods.tolist()):
        for q in range(n_ctx):
            pattern[b, 0, q, max(offset(q, period), 0)] = 1.0
    return pattern


def test_perfect_induction_head_scores_one_and_previous_token_head_scores_zero():
    tokens, periods = A.repeated_tokens(8, 32, 50, torch.Generator().manual_seed(0))
    for b, p in enumerate(periods.tolist()):  # the data really repeats with its period
        assert torch.equal(tokens[b, p:], tokens[b, : 32 - p])
    induction = perfect_pattern(periods, 32, lambda q, p: q - p + 1 if q >= p else 0)
    previous = perfect_pattern(periods, 32, lambda q, p: q - 1)
    assert A.induction_score(induction, periods).tolist() == [1.0]
    assert A.previous_token_score(previous).tolist() == [1.0]
    assert A.induction_score(previous, periods).tolist() == [0.0]  # periods >= 8: q - 1 is never the target
    uniform = torch.tril(torch.ones(32, 32)) / torch.arange(1, 33)[:, None]
    assert 0 < A.induction_score(uniform.expand(8, 1, 32, 32), periods).item() < 0.2


def test_icl_score_is_late_minus_early_loss():
    losses = torch.tensor([[3.0, 2.0, 1.0], [5.0, 2.0, 0.0]])
    assert A.icl_score(losses, early=0, late=2) == -3.5


def hand_built_induction_model(d_vocab: int = 16, n_ctx: int = 16, beta: float = 30.0) -> A.AttentionOnly:
    """Elhage et al.'s induction circuit written by hand. Residual subspaces: token (one-hot), position (one-hot),
    previous token, output. Layer 0: a previous-token head (query at position q matches key at q - 1) copying the
    key's token into the previous-token subspace. Layer 1: an induction head whose query token matches keys whose
    previous token is that token (K-composition), copying the key's token into the output the unembedding reads."""
    tok, pos, prev, out = 0, d_vocab, d_vocab + n_ctx, 2 * d_vocab + n_ctx
    cfg = A.AttnOnlyConfig(n_layers=2, n_heads=1, d_model=3 * d_vocab + n_ctx, d_head=max(d_vocab, n_ctx),
                           d_vocab=d_vocab, n_ctx=n_ctx)
    model = A.AttentionOnly(cfg)
    scale = beta * cfg.d_head ** 0.5  # the forward divides scores by √d_head
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.W_E[:, tok:tok + d_vocab] = torch.eye(d_vocab)
        model.W_pos[:, pos:pos + n_ctx] = torch.eye(n_ctx)
        l0, l1 = model.attn
        for q in range(1, n_ctx):
            l0.W_Q[0, pos + q, q] = scale
            l0.W_K[0, pos + q - 1, q] = 1.0
        for t in range(d_vocab):
            l0.W_V[0, tok + t, t] = l0.W_O[0, t, prev + t] = 1.0
            l1.W_Q[0, tok + t, t] = scale
            l1.W_K[0, prev + t, t] = 1.0
            l1.W_V[0, tok + t, t] = l1.W_O[0, t, out + t] = 1.0
        model.W_U[out:out + d_vocab] = beta * torch.eye(d_vocab)
    return model


def test_hand_built_induction_circuit_scores_one_and_is_found_by_k_composition():
    model = hand_built_induction_model(d_vocab=16, n_ctx=17)
    g = torch.Generator().manual_seed(0)
    periods = torch.full((8,), 8)
    segments = torch.stack([torch.randperm(15, generator=g)[:8] + 1 for _ in range(8)])  # no token twice per period
    # a BOS (token 0) first: position 0 has no previous token, so its "previous token" must match no query
    tokens = torch.cat([torch.zeros(8, 1, dtype=torch.long), segments, segments], dim=1)
    logits, patterns = model(tokens, return_patterns=True)
    after_bos = [p[:, :, 1:, 1:] for p in patterns]  # TransformerLens's exclude_bos: rows and keys from position 1
    scores = {"induction": [A.induction_score(p, periods).tolist() for p in after_bos],
              "previous_token": [A.previous_token_score(p).tolist() for p in after_bos]}
    assert scores["induction"][1][0] > 0.999 and scores["previous_token"][0][0] > 0.999
    assert scores["induction"][0][0] < 0.01 and scores["previous_token"][1][0] < 0.2  # uniform before a repeat
    losses = A.token_losses(logits, tokens)
    assert losses[:, 9:].max() < 1e-3  # every repeated token predicted
    assert A.icl_score(losses, early=2, late=15) < -2.0
    history = scores
    circuit = C.induction_circuit(model, history["previous_token"], history["induction"])
    assert circuit["previous_token_head"] == [0, 0] and circuit["induction_head"] == [1, 0]
    assert circuit["k_composition"] > 0.1 and circuit["q_composition"] == circuit["v_composition"] == 0.0
    assert circuit["copying_score_induction_head"] > 0.999  # it copies the attended token
    # relative to the random baseline: the unread Q and V paths sit exactly one baseline below it
    baseline = C.random_composition_baseline(model.cfg.d_model, model.cfg.d_head)
    assert circuit["composition_baseline"] == baseline
    assert circuit["q_composition_above_baseline"] == circuit["v_composition_above_baseline"] == -baseline
    assert circuit["k_composition_above_baseline"] == circuit["k_composition"] - baseline
    history = [{"step": 0, "induction": [[0.1], [0.2]]}, {"step": 5, "induction": [[0.1], [0.35]]}]
    assert A.formation_step(history, 0.3) == 5 and A.formation_step(history, 0.5) is None


def test_composition_of_orthogonal_subspaces_is_zero_and_of_aligned_ones_is_positive():
    cfg = A.AttnOnlyConfig(n_layers=2, n_heads=1, d_model=8, d_head=2, d_vocab=5, n_ctx=8)
    model = A.AttentionOnly(cfg)
    with torch.no_grad():
        for attn in model.attn:
            for w in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
                w.zero_()
        model.attn[0].W_V[0, 0, 0] = model.attn[0].W_O[0, 0, 0] = 1.0  # layer 0 writes residual dim 0
        for w in (model.attn[1].W_Q, model.attn[1].W_K, model.attn[1].W_V):  # layer 1 reads dims 4, 5 only
            w[0, 4, 0] = w[0, 5, 1] = 1.0
        model.attn[1].W_O[0, 0, 7] = 1.0
    scores = C.composition_scores(model)
    assert scores == {"q": [[0.0]], "k": [[0.0]], "v": [[0.0]]}
    with torch.no_grad():
        model.attn[1].W_K[0, 0, 0] = 1.0  # now layer 1's keys read dim 0 too
    scores = C.composition_scores(model)
    assert scores["k"][0][0] > 0 and scores["q"][0][0] == 0.0 and scores["v"][0][0] == 0.0


def test_random_composition_baseline_is_the_expected_score_of_random_low_rank_matrices():
    # E‖AB‖²_F / (E‖A‖²_F E‖B‖²_F) = d³r² / (d²r)² = 1/d for Gaussian factors, whatever the rank r; with 200
    # draws at d = 64 the mean score sits within a few percent of 1/√d (its spread over draws is ~2%).
    for d_model, d_head in ((64, 16), (32, 32)):
        baseline = C.random_composition_baseline(d_model, d_head, draws=200, seed=3)
        assert abs(baseline * d_model ** 0.5 - 1) < 0.05, (d_model, d_head, baseline)
    # a real head pair scores the same under a random orthogonal change of the residual basis, and 0 when
    # the writer's output is orthogonal to what the reader reads, i.e. one full baseline below it
    g = torch.Generator().manual_seed(0)
    writer = torch.zeros(16, 16)
    writer[:4, :4] = torch.randn(4, 4, generator=g)
    reader = torch.zeros(16, 16)
    reader[8:12, 8:12] = torch.randn(4, 4, generator=g)
    assert C.composition_score(writer, reader) == 0.0
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    A_, B_ = torch.randn(16, 16, generator=g, dtype=torch.float64), torch.randn(16, 16, generator=g, dtype=torch.float64)
    assert abs(C.composition_score(Q.T @ A_ @ Q, Q.T @ B_ @ Q) - C.composition_score(A_, B_)) < 1e-12


def test_copying_score_is_one_for_a_copying_head_and_minus_one_for_an_anti_copying_head():
    cfg = A.AttnOnlyConfig(n_layers=1, n_heads=2, d_model=6, d_head=6, d_vocab=10, n_ctx=8)
    model = A.AttentionOnly(cfg)
    with torch.no_grad():
        model.W_U.copy_(model.W_E.T)  # unembed = embed transposed: OV = W_E M W_Eᵀ
        model.attn[0].W_V.copy_(torch.eye(6).expand(2, 6, 6))
        model.attn[0].W_O[0] = torch.eye(6)
        model.attn[0].W_O[1] = -torch.eye(6)
    scores = C.copying_score(model, 0)
    assert torch.allclose(scores, torch.tensor([1.0, -1.0]), atol=1e-5)
    ov = C.full_ov(model, 0)
    assert ov.shape == (2, 10, 10) and torch.allclose(ov[0], model.W_E @ model.W_E.T, atol=1e-5)


def test_feature_geometry_on_hand_made_weights():
    W = torch.zeros(1, 2, 4)
    W[0, 0, 0] = W[0, 1, 1] = 1.0  # features 0, 1: orthogonal, dedicated
    W[0, 0, 2], W[0, 0, 3] = 1.0, -1.0  # features 2, 3: antipodal in dimension 0 (which feature 0 also uses)
    geometry = P.feature_geometry(W)
    assert geometry["represented"].tolist() == [[True, True, True, True]]
    assert geometry["superposed"].tolist() == [[True, False, True, True]]
    assert geometry["interference"][0, 1] == 0.0
    assert torch.isclose(geometry["dims_per_feature"], torch.tensor([0.5])).all()


def test_relu_superposes_sparse_features_and_linear_never_does():
    """Elhage et al.'s finding on a seed-robust small case: 6 features (importance 0.8^i) in 2 dimensions."""
    for seed in (0, 1, 2):
        config = P.SuperpositionConfig(n_features=6, n_hidden=2, sparsities=[0.0, 0.9], importance_decays=[0.8],
                                       steps=500, batch=128, restarts=2, lr=2e-2, seed=seed)
        cells = {(c["model"], c["sparsity"]): c for c in P.run_sweep(config)["cells"]}
        assert cells["linear", 0.0]["n_superposed"] == cells["linear", 0.9]["n_superposed"] == 0
        assert cells["linear", 0.9]["n_represented"] == 2
        assert cells["relu", 0.9]["n_superposed"] >= cells["relu", 0.0]["n_superposed"] + 3
        assert cells["relu", 0.9]["n_represented"] > 2  # more features than dimensions
        assert cells["relu", 0.9]["dims_per_feature"] < 0.8 < cells["linear", 0.9]["dims_per_feature"]


def test_phase_of_two_features_in_one_dimension():
    W = torch.tensor([[[1.0, -1.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    assert P.classify_phase(W) == ["superposed", "not represented", "dedicated"]


def test_identity_sae_reconstructs_exactly_and_metrics_follow_saelens_definitions():
    sae = S.SparseAutoencoder.identity(4)
    x = torch.randn(50, 4)
    assert torch.equal(sae(x), x)
    assert S.explained_variance(x, sae(x)) == 1.0
    assert S.explained_variance(x, x.mean(0).expand_as(x)) == 0.0  # predicting the mean explains nothing
    f = sae.encode(x)
    assert S.l0(f) == float((x != 0).sum(-1).float().mean())  # one of ReLU(x), ReLU(-x) is active per nonzero
    assert S.ce_loss_score(2.0, 2.0, 5.0) == 1.0 and S.ce_loss_score(2.0, 5.0, 5.0) == 0.0


def test_topk_keeps_exactly_k_features_and_standard_sae_learns_sparse_data():
    topk = S.SparseAutoencoder(S.SAEConfig(d_in=8, d_sae=32, architecture="topk", k=3))
    with torch.no_grad():
        topk.b_enc.fill_(10.0)  # every pre-activation positive: only the top-k mechanism makes it sparse
    assert ((topk.encode(torch.randn(20, 8)) > 0).sum(-1) == 3).all()
    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(12, 16, generator=g), dim=-1)
    codes = torch.rand(4000, 12, generator=g) * (torch.rand(4000, 12, generator=g) < 0.1)
    x = codes @ directions
    for architecture in ("standard", "topk"):
        sae = S.train_sae(x, S.SAEConfig(d_in=16, d_sae=48, architecture=architecture, k=3),
                          S.SAETrainConfig(steps=600, batch_size=256, lr=3e-3, l1_coefficient=0.3, resample_every=200))
        metrics = S.reconstruction_metrics(sae, x)
        assert metrics["explained_variance"] > 0.8, (architecture, metrics)
        assert metrics["l0"] < 8, (architecture, metrics)


def test_resampling_revives_dead_features_and_resets_their_adam_state(tmp_path):
    sae = S.SparseAutoencoder(S.SAEConfig(d_in=6, d_sae=10))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(64, 6)
    S.sae_loss(sae, x, 1.0)[0].backward()
    optimizer.step()
    with torch.no_grad():
        sae.b_enc[:4] = -100.0  # features 0-3 can never fire
    dead = (sae.encode(x) > 0).sum(0) == 0
    assert dead[:4].all()
    before = sae.W_dec.detach().clone()
    assert S.resample_dead(sae, optimizer, dead, x, torch.Generator().manual_seed(0)) == int(dead.sum())
    assert not torch.equal(sae.W_dec[:4], before[:4]) and torch.equal(sae.W_dec[~dead], before[~dead])
    assert (sae.b_enc[:4] == 0).all() and (optimizer.state[sae.W_dec]["exp_avg"][:4] == 0).all()
    assert torch.allclose(sae.W_dec[:4].norm(dim=-1), torch.ones(4))
    loaded = S.SparseAutoencoder.load(sae.save(tmp_path / "sae"))
    assert torch.equal(loaded(x), sae(x))


def test_identity_sae_spliced_into_a_model_recovers_all_of_the_ce_loss(tiny_model_dir):
    from alignlab.core.models import load_causal_lm
    from alignlab.interpret.toy.sae_run import ce_metrics

    model = load_causal_lm(str(tiny_model_dir)).eval()
    ids = torch.randint(3, 200, (4, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    metrics = ce_metrics(model, "blocks.0.hook_resid_post", S.SparseAutoencoder.identity(32), ids, mask)
    assert abs(metrics["ce_loss_with_sae"] - metrics["ce_loss_without_sae"]) < 1e-4
    assert metrics["ce_loss_with_ablation"] > metrics["ce_loss_without_sae"]
    assert abs(metrics["ce_loss_score"] - 1.0) < 1e-3


def test_solu_round_trips_save_pretrained_and_changes_the_forward(tmp_path, tiny_model_dir):
    from transformers.activations import ACT2FN

    from alignlab.core.models import load_causal_lm, tiny_llama

    out = ACT2FN["solu"](torch.randn(3, 16) * 3)
    assert torch.allclose(out.mean(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(3), atol=1e-3)
    solu = tiny_llama(100, hidden_size=32, layers=2, heads=2, seed=0, hidden_act="solu").eval()
    gelu = tiny_llama(100, hidden_size=32, layers=2, heads=2, seed=0, hidden_act="gelu").eval()
    gelu.load_state_dict(solu.state_dict())  # same weights: only the activation differs
    ids = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(solu(ids).logits, gelu(ids).logits, atol=1e-3)
    solu.save_pretrained(tmp_path / "solu")
    loaded = load_causal_lm(str(tmp_path / "solu")).eval()
    assert loaded.config.hidden_act == "solu"
    assert torch.equal(loaded(ids).logits, solu(ids).logits)


def test_world_labels_mark_entities_families_and_refusals(tiny_model_dir):
    from alignlab.core.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    data = W.labelled_transcripts(tokenizer, 60, seed=0)
    kinds = W.entity_kinds(W.World(0))
    concepts = W.token_concepts(data)
    assert len(concepts["family=facts"]) == int(data.attention_mask.sum())
    first_entity = next((s, i) for s, labels in enumerate(data.entity) for i, kind in enumerate(labels)
                        if kind != "other")
    seq, pos = first_entity
    piece = tokenizer.decode(data.input_ids[seq, pos: pos + 1]).strip()
    assert any(piece and piece in name for name, kind in kinds.items() if kind == data.entity[seq][pos])
    if any(data.refusal):
        assert concepts["refusal"].any() and data.family[data.refusal.index(True)] == "harmful"
    acts = torch.stack([concepts["family=harmful"].float(), torch.rand(len(concepts["family=harmful"]))], dim=1)
    aligned = W.concept_alignment(acts, concepts)
    assert aligned["aligned_per_concept"]["family=harmful"] == 1 and aligned["best_f1"]["family=harmful"] == 1.0


def test_world_corpus_training_uses_its_vocabulary_and_measures_icl_on_held_out_text(monkeypatch):
    stream = torch.arange(40).repeat(50)  # a "corpus" that repeats every 40 tokens, over a 40-token vocabulary
    monkeypatch.setattr(A, "world_token_stream", lambda world_seed: (stream, 40))
    config = A.InductionConfig(model=A.AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=8, n_ctx=16),
                               steps=30, batch_size=8, eval_every=30, eval_batch=8, data="world", lr=1e-2)
    model, history = A.train_induction(config)
    assert model.W_E.shape[0] == 40  # the corpus's vocabulary, not the config's 8
    assert history[-1]["loss"] < history[0]["loss"]  # it learns the corpus, measured on held-out windows
    windows = A.text_windows(stream, 4, 16, torch.Generator().manual_seed(0))
    assert ((windows[:, 1:] - windows[:, :-1]) % 40 == 1).all()  # contiguous windows of the stream
