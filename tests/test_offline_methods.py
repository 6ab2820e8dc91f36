"""Offline methods beyond pairs: RRHF, PRO, Stable Alignment, KTO, CRINGE, Chain of Hindsight.

Each trains one step from the CLI (parameters change, losses finite); the objectives are checked against
the pure losses on log-probs computed one sequence at a time; bad inputs give clear errors.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import pair_rows, write_jsonl
from safetensors.torch import load_file

from alignlab.cli import main
from alignlab.config import load_config
from alignlab.core.logprobs import sequence_logprobs
from alignlab.core.metrics import read_metrics
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.readers import read_records
from alignlab.core.tokenize import IGNORE_INDEX
from alignlab.errors import DataError
from alignlab.outer import losses

FAST = ["train.progress=false", "train.batch_size=4", "data.max_length=64", "train.mixed_precision=no"]

PROMPTS = ["Capital of Zorbia?", "How do I hurt someone?", "Two plus two?", "Hello!"]


def ranked_rows(n: int = 8, k: int = 3) -> list[dict]:
    answers = ["Vell is the capital.", "I am not sure.", "Paris.", "Go away.", "Four."]
    return [{"prompt": PROMPTS[i % 4], "responses": [answers[(i + j) % 5] for j in range(k - i % 2)],
             "scores": [float(k - j) for j in range(k - i % 2)]} for i in range(n)]


def unpaired_rows(n: int = 8) -> list[dict]:
    return [{"prompt": PROMPTS[i % 4], "completion": ["Vell.", "Sure, here is how."][i % 2], "label": i % 2 == 0}
            for i in range(n)]


DATA = {"rrhf": ranked_rows, "pro": ranked_rows, "stable-alignment": ranked_rows, "alol": ranked_rows, "kto": unpaired_rows,
        "cringe": unpaired_rows, "hindsight": pair_rows}


@pytest.mark.parametrize("method", list(DATA))
def test_cli_one_step_changes_parameters(tiny_model_dir, tmp_path, method):
    data = write_jsonl(tmp_path / "data.jsonl", DATA[method]())
    sets = [*FAST, "train.lr=1e-2"] + ([f"reference_cache_dir={tmp_path}"] if method == "kto" else [])
    args = ["train", method, "--model", str(tiny_model_dir), "--data", str(data), "--output", str(tmp_path / "run"),
            "--max-steps", "2", *[a for s in sets for a in ("--set", s)]]
    assert main(args) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ---- ranked lists ------------------------------------------------------------------------------------


def test_ranked_objective_matches_pure_losses_on_unbatched_logprobs(tiny_model_dir, tmp_path):
    """Lists of 3 and 2 responses share one forward; the losses equal those from one-by-one log-probs."""
    from alignlab.core.data import DataConfig
    from alignlab.outer.ranked import (
        PROConfig,
        RankedCollator,
        RankedObjective,
        RRHFConfig,
        StableAlignmentConfig,
        encode_ranked,
    )

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    write_jsonl(tmp_path / "r.jsonl", ranked_rows(2))
    examples = encode_ranked(tok, read_records(tmp_path / "r.jsonl", "ranked"), DataConfig(max_length=64), "r")
    assert [len(e["candidates"]) for e in examples] == [3, 2]
    batch = RankedCollator(tok.pad_token_id)(examples)
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))

    def one(enc):  # log-prob sum and length of a single unpadded candidate
        ids = torch.tensor([enc["input_ids"]])
        logp, n = sequence_logprobs(model, ids, torch.ones_like(ids), torch.tensor([enc["labels"]]))
        return float(logp.detach()), float(n)

    for cfg, loss_fn in [(RRHFConfig(), losses.rrhf), (PROConfig(), losses.pro),
                         (StableAlignmentConfig(), losses.stable_alignment)]:
        forwards.clear()
        with torch.no_grad():
            out = RankedObjective(cfg)(model, batch)
        assert len(forwards) == 1  # every candidate of every list in one forward
        expected = 0.0
        for e in examples:
            logp, n = map(torch.tensor, zip(*[one(c) for c in e["candidates"]]))
            scores = torch.tensor([e["scores"]])
            best = int(scores.argmax())
            if loss_fn is losses.rrhf:
                value = loss_fn((logp / n)[None], scores, -(logp / n)[best].view(1), rrhf_weight=100.0)
            elif loss_fn is losses.pro:
                value = loss_fn((logp / n)[None], scores, -logp[best].view(1), sft_weight=0.05)
            else:
                value = loss_fn((-logp / n)[None], scores)
            expected += float(value[0].sum())
        assert float(out.loss_sum) == pytest.approx(expected, rel=1e-4)
    hook.remove()


def test_alol_weights_leftover_responses_by_advantage_and_a_clipped_ratio():
    """A = R − mean(R), clamped at 0: only above-average responses are learned from, each in proportion to its
    advantage; the importance weight π/π_ref is clipped to [1 − ε, 1 + ε] and carries no gradient, so a response
    the policy already likes far more than the reference still pulls (with weight 1 + ε), never stops."""
    logps = torch.zeros(1, 3, requires_grad=True)
    losses.alol(logps, torch.zeros(1, 3), torch.tensor([[3.0, 1.0, 0.0]]))[0].sum().backward()
    assert logps.grad.tolist() == [[pytest.approx(-(3.0 - 4 / 3)), 0.0, 0.0]]  # −A·r at r = 1
    logps = torch.tensor([[math.log(2.0), math.log(0.5)]], requires_grad=True)  # r = 2 and r = 0.5
    loss, metrics = losses.alol(logps, torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), clip_epsilon=0.2)
    loss.sum().backward()
    assert logps.grad[0, 0] == pytest.approx(-0.5 * 1.2) and logps.grad[0, 1] == 0.0  # weight clipped to 1 + ε
    assert float(loss) == pytest.approx(-0.5 * 1.2 * math.log(2.0)) and metrics["clipped_fraction"].item() == 1.0


def test_alol_reference_is_the_starting_model(tiny_model_dir, tmp_path):
    """Before any update the policy is its reference, so every importance weight is exactly 1; the reference
    log-probs are the model's own, computed in batches."""
    from alignlab.core.data import DataConfig
    from alignlab.outer.ranked import (
        ALoLConfig,
        RankedCollator,
        RankedObjective,
        add_reference_logps,
        encode_ranked,
    )

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    write_jsonl(tmp_path / "r.jsonl", ranked_rows(4))
    examples = encode_ranked(tok, read_records(tmp_path / "r.jsonl", "ranked"), DataConfig(max_length=64), "r")
    add_reference_logps(model, examples, tok.pad_token_id, batch_size=3)
    out = RankedObjective(ALoLConfig())(model, RankedCollator(tok.pad_token_id)(examples))
    assert out.metrics["ratio"].tolist() == pytest.approx([1.0] * len(examples), abs=1e-5)
    enc = examples[1]["candidates"][0]
    ids = torch.tensor([enc["input_ids"]])
    alone = sequence_logprobs(model, ids, torch.ones_like(ids), torch.tensor([enc["labels"]]))[0]
    assert examples[1]["ref_logps"][0] == pytest.approx(float(alone), abs=1e-4)


def test_ranked_bad_inputs(tmp_path):
    write_jsonl(tmp_path / "one.jsonl", [{"prompt": "Hi", "responses": ["Hello."], "scores": [1.0]}])
    with pytest.raises(DataError, match="at least 2 responses"):
        read_records(tmp_path / "one.jsonl", "ranked")
    (tmp_path / "nan.jsonl").write_text(json.dumps({"prompt": "Hi", "responses": ["a", "b"],
                                                    "scores": [1.0, float("nan")]}) + "\n")
    with pytest.raises(DataError, match="finite"):
        read_records(tmp_path / "nan.jsonl", "ranked")


def test_ranked_same_response_with_two_scores_is_an_error(tiny_model_dir, tmp_path):
    from alignlab.outer.ranked import RRHFConfig, train_ranked

    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hi", "responses": ["a", "b", "a"], "scores": [1, 2, 3]}] * 4)
    cfg = load_config(RRHFConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                         f"output={tmp_path / 'run'}", *FAST])
    with pytest.raises(DataError, match="row 0.*same response appears with scores 1.0 and 3.0"):
        train_ranked(cfg)


# ---- KTO ---------------------------------------------------------------------------------------------


def kto_config(tiny_model_dir, tmp_path, rows, *overrides):
    from alignlab.outer.kto import KTOConfig

    data = write_jsonl(tmp_path / "u.jsonl", rows)
    return load_config(KTOConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                         f"reference_cache_dir={tmp_path / 'cache'}", *FAST, *overrides])


def test_kto_first_step_is_half_and_reference_modes_agree(tiny_model_dir, tmp_path):
    """At step 1 π = π_ref, so the log-ratios and the KL estimate are 0 and every loss is 1 − σ(0) = 0.5."""
    from alignlab.outer.kto import train_kto

    first = {}
    for mode in ["precompute", "model"]:
        cfg = kto_config(tiny_model_dir, tmp_path, pair_rows(8), f"output={tmp_path / mode}", f"reference={mode}",
                         "train.max_steps=2", "train.lr=1e-2")
        train_kto(cfg)
        first[mode] = read_metrics(tmp_path / mode / "metrics.jsonl")
    assert first["precompute"][0]["loss"] == pytest.approx(0.5, abs=1e-5)
    assert first["precompute"][0]["kl"] == pytest.approx(0.0, abs=1e-4)  # padding-width rounding only
    assert first["model"][1]["loss"] == pytest.approx(first["precompute"][1]["loss"], abs=1e-4)
    assert first["precompute"][1]["loss"] != first["precompute"][0]["loss"]


def test_kto_mismatched_pairs_use_other_prompts(tiny_model_dir, tmp_path):
    """Pairs read as unpaired put both answers to one prompt side by side; the KL partner still differs."""
    from alignlab.core.data import DataConfig
    from alignlab.outer.kto import encode_unpaired

    tok = load_tokenizer(str(tiny_model_dir))
    records = read_records(write_jsonl(tmp_path / "p.jsonl", pair_rows(6)), "unpaired")
    examples = encode_unpaired(tok, records, DataConfig(max_length=64), "x")
    assert len(examples) == 12 and sum(e["label"] for e in examples) == 6
    completions = {tuple(e["completion"]["completion_ids"]) for e in examples}
    for e in examples:
        assert e["kl"]["prompt_ids"] == e["completion"]["prompt_ids"]  # same prompt ...
        assert tuple(e["kl"]["completion_ids"]) in completions  # ... with another example's completion
    # each prompt's mismatched completion answers a different prompt: never this prompt's own two answers
    own = {tuple(e["completion"]["prompt_ids"]): set() for e in examples}
    for e in examples:
        own[tuple(e["completion"]["prompt_ids"])].add(tuple(e["completion"]["completion_ids"]))
    assert all(tuple(e["kl"]["completion_ids"]) not in own[tuple(e["completion"]["prompt_ids"])] for e in examples)


def test_kto_with_one_label_is_a_clear_error(tiny_model_dir, tmp_path):
    rows = [{**r, "label": True} for r in unpaired_rows(8)]
    data = write_jsonl(tmp_path / "u.jsonl", rows)
    code = main(["train", "kto", "--model", str(tiny_model_dir), "--data", str(data), "--output",
                 str(tmp_path / "run"), "--max-steps", "1"])
    assert code == 2
    from alignlab.outer.kto import train_kto

    with pytest.raises(DataError, match="every example is desirable; KTO needs both"):
        train_kto(kto_config(tiny_model_dir, tmp_path, rows, f"output={tmp_path / 'run2'}"))


# ---- CRINGE ------------------------------------------------------------------------------------------


def test_cringe_is_cross_entropy_on_positives_and_contrastive_on_negatives(tiny_model_dir, tmp_path):
    from alignlab.core.data import DataConfig
    from alignlab.outer.cringe import CringeConfig, CringeObjective, LabelledCollator, encode_labelled

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    path = write_jsonl(tmp_path / "u.jsonl", unpaired_rows(4))
    examples = encode_labelled(tok, read_records(path, "unpaired"), DataConfig(max_length=64), "u")
    batch = LabelledCollator(tok.pad_token_id)(examples)
    with torch.no_grad():
        out = CringeObjective(CringeConfig())(model, batch)
        positive_ce = 0.0
        for e in examples[::2]:  # rows 0 and 2 are positive
            ids = torch.tensor([e["input_ids"]])
            logp, n = sequence_logprobs(model, ids, torch.ones_like(ids), torch.tensor([e["labels"]]))
            positive_ce += float(-logp / n)
    negatives = out.metrics["ct_loss"][1::2].sum()
    assert float(out.loss_sum) == pytest.approx(positive_ce + float(negatives), rel=1e-4)
    assert (out.metrics["ct_loss"] > 0).all()


def test_cringe_penalises_a_rejected_answer_where_it_departs_from_the_chosen(tiny_model_dir, tmp_path):
    from alignlab.core.data import DataConfig
    from alignlab.core.tokenize import encode_completion
    from alignlab.outer.cringe import encode_labelled

    tok = load_tokenizer(str(tiny_model_dir))
    rows = [{"prompt": "Capital of Zorbia?", "chosen": "The capital is Vell.", "rejected": "The capital is Paris."},
            {"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello. Go away."},
            {"prompt": "Hi", "chosen": "Hello. Nice to meet you.", "rejected": "Hello."}]
    records = read_records(write_jsonl(tmp_path / "p.jsonl", rows), "unpaired")
    data = DataConfig(max_length=64)
    masked = encode_labelled(tok, records, data, "p")
    whole = encode_labelled(tok, records, data, "p", negative_tokens="all")
    for row, negative, full in zip(rows, masked[1::2], whole[1::2]):
        chosen = encode_completion(tok, [{"role": "user", "content": row["prompt"]}], row["chosen"])["completion_ids"]
        completion = full["completion_ids"]
        labelled = [i for i, t in enumerate(negative["labels"]) if t != IGNORE_INDEX]
        assert len(labelled) == 1  # one token: where the rejected answer departs from the chosen one
        at = labelled[0] - len(full["prompt_ids"])
        assert at > 0 and completion[:at] == chosen[:at] and completion[at] != chosen[at]
        assert [t for t in full["labels"] if t != IGNORE_INDEX] == completion  # the paper's: every token
    assert " Go away.".startswith(tok.decode([t for t in masked[3]["labels"] if t != IGNORE_INDEX]))
    assert [t for t in masked[5]["labels"] if t != IGNORE_INDEX] == [tok.eos_token_id]  # it stopped too early
    assert masked[0]["labels"] == whole[0]["labels"]  # positives are untouched


# ---- Chain of Hindsight ------------------------------------------------------------------------------


def test_hindsight_conversation_learns_answers_not_phrases(tiny_model_dir):
    from alignlab.core.records import PairRecord, user
    from alignlab.core.tokenize import encode_completion
    from alignlab.outer.hindsight import (
        HindsightConfig,
        encode_hindsight,
        hindsight_prompt_ids,
        with_feedback,
    )

    tok = load_tokenizer(str(tiny_model_dir))
    cfg = HindsightConfig()
    cfg.data.max_length = 256
    record = PairRecord(prompt=[user("Capital of Zorbia?")], chosen="Vell.", rejected="Paris.")
    for good_first in (True, False):
        enc = encode_hindsight(tok, record, cfg, good_first)
        learned = tok.decode([t for t in enc["labels"] if t != IGNORE_INDEX])
        answers = ["Vell.", "Paris."] if good_first else ["Paris.", "Vell."]
        phrases = [cfg.good_phrase, cfg.bad_phrase] if good_first else [cfg.bad_phrase, cfg.good_phrase]
        # the answers and where each ends (EOS, as an SFT answer ends), no feedback phrase and no question
        assert learned == "".join(a + tok.eos_token for a in answers)
        # the whole example is the template's rendering of the hindsight conversation
        conversation = [user("Capital of Zorbia? " + phrases[0]), {"role": "assistant", "content": answers[0]},
                        user(phrases[1]), {"role": "assistant", "content": answers[1]}]
        assert tok.decode(enc["input_ids"]) == tok.apply_chat_template(conversation, tokenize=False)
    good_first = encode_hindsight(tok, record, cfg, True)
    prefix = hindsight_prompt_ids(tok, record.prompt)
    assert good_first["input_ids"][:len(prefix)] == prefix  # inference feeds exactly the trained boundary
    # each answer is the text an SFT answer to the conditioned question is, token for token
    sft = encode_completion(tok, with_feedback(record.prompt, cfg.good_phrase), "Vell.", max_length=256)
    assert good_first["input_ids"][:len(sft["input_ids"])] == sft["input_ids"]
    assert with_feedback([], "Good:") == [user("Good:")]
    assert with_feedback([user("Q?"), {"role": "assistant", "content": "A."}], "Good:", "\n")[-1] == user("Good:")
    assert with_feedback([user("Q?")], "Good:", "\n") == [user("Q?\nGood:")]
    # a template that renders the last answer unlike an earlier one cannot be split into turns: a clear error
    tok.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
                         "{% if loop.last and m['role'] == 'assistant' %} [final]{% endif %}{{ '\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    with pytest.raises(DataError, match="cannot be split into turns"):
        encode_hindsight(tok, record, cfg, True)


def test_hindsight_skips_pairs_too_long_to_keep_both_answers(tiny_model_dir):
    from alignlab.core.records import PairRecord, user
    from alignlab.outer.hindsight import HindsightConfig, build_examples, encode_hindsight

    tok = load_tokenizer(str(tiny_model_dir))
    cfg = HindsightConfig()
    short = PairRecord(prompt=[user("Capital of Zorbia?")], chosen="Vell.", rejected="Paris.")
    long = PairRecord(prompt=[user("Capital of Zorbia?")], chosen="Vell. " * 30, rejected="Paris.")
    cfg.data.max_length = len(encode_hindsight(tok, short, cfg, True)["input_ids"]) + 2
    with pytest.warns(UserWarning, match="1 of 2 pairs are longer than data.max_length"):
        examples = build_examples(tok, [short, long], cfg, "pairs.jsonl", seed=0)
    assert len(examples) == 1 and len(examples[0]["input_ids"]) <= cfg.data.max_length


def test_hindsight_generate_and_pretraining_mix(tiny_model_dir, tmp_path):
    from alignlab.outer.hindsight import (
        HindsightConfig,
        hindsight_answer,
        hindsight_generate,
        train_hindsight,
    )

    pairs = write_jsonl(tmp_path / "p.jsonl", pair_rows(8))
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": f"Zorbia has {i} rivers."} for i in range(5)])
    cfg = load_config(HindsightConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={pairs}",
                                              f"output={tmp_path / 'run'}", f"pretrain_data={text}",
                                              "pretrain_fraction=0.5", "train.num_epochs=1", *FAST,
                                              "data.max_length=256"])
    result = train_hindsight(cfg)
    assert result.steps == 3  # 8 pairs + 4 pretraining texts, batch 4
    assert json.loads((tmp_path / "run" / "results.json").read_text())["hindsight"]["good_phrase"] == cfg.good_phrase
    model = load_causal_lm(str(tmp_path / "run"))
    answers = hindsight_generate(model, load_tokenizer(str(tmp_path / "run")), [[{"role": "user", "content": "Hi"}]] * 3,
                                 max_new_tokens=5)
    assert len(answers) == 3 and all(isinstance(a, str) and "A bad answer is:" not in a for a in answers)
    assert hindsight_answer(" Vell. A bad answer is: Paris.") == "Vell." == hindsight_answer("Vell. A good answer is:")
    assert hindsight_answer("Vell.\nMore.") == "Vell.\nMore."  # an answer may span lines


def test_pair_whose_chosen_equals_rejected_is_rejected(tiny_model_dir, tmp_path):
    from alignlab.outer.hindsight import HindsightConfig, train_hindsight

    rows = pair_rows(4)
    rows[2]["rejected"] = rows[2]["chosen"]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    for method in ("hindsight", "cringe", "dpo"):
        assert main(["train", method, "--model", str(tiny_model_dir), "--data", str(data), "--output",
                     str(tmp_path / method), "--max-steps", "1"]) == 2
    cfg = load_config(HindsightConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                              f"output={tmp_path / 'run'}", *FAST])
    with pytest.raises(DataError, match="row 2.*same text"):
        train_hindsight(cfg)
