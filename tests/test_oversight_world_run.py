"""The oversight experiments' shared pieces: fine-tuning moves the model toward its rows, scoring is the world
judge's, and every family of held-out prompts survives a limit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import pair_rows, sft_rows

from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import OversightError
from alignlab.evaluate.interface import LM
from alignlab.oversight.world_run import finetune, round_robin, table_row, world_scores
from alignlab.world.datasets import World, load_prompts, prompt_row, write_jsonl
from alignlab.world.evaluate import evaluate_responses


class EchoLM(LM):
    """Answers every prompt with the world persona's reference answer: the judge's best (its ``answers``)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        return [self.answers[p[-1]["content"] if isinstance(p, list) else p] for p in prompts]


def _answer_nll(model_dir, tokenizer, rows) -> float:
    from alignlab.core.tokenize import encode_completion

    model = load_causal_lm(str(model_dir)).eval()
    total = 0.0
    for row in rows:
        enc = encode_completion(tokenizer, row["messages"][:-1], row["messages"][-1]["content"], max_length=64)
        ids = torch.tensor([enc["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        labels = torch.tensor(enc["labels"][1:])
        total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100).item()
    return total / len(rows)


def test_finetune_sft_lowers_the_nll_of_its_rows_and_dpo_trains(tiny_model_dir, tmp_path) -> None:
    rows = sft_rows(16)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    before = _answer_nll(tiny_model_dir, tokenizer, rows[:4])
    out = finetune("sft", rows, tiny_model_dir, tmp_path / "sft", max_steps=15, lr=3e-3, batch_size=8)
    assert (tmp_path / "sft-data.jsonl").read_text().count("\n") == 16
    assert _answer_nll(out, tokenizer, rows[:4]) < before - 0.5
    dpo = finetune("dpo", pair_rows(8), out, tmp_path / "dpo", max_steps=1, batch_size=4)
    assert (dpo / "model.safetensors").exists() or any(dpo.glob("*.safetensors"))
    with pytest.raises(OversightError, match="kind"):
        finetune("ppo", rows, tiny_model_dir, tmp_path / "x", max_steps=1)
    with pytest.raises(OversightError, match="no sft rows"):
        finetune("sft", [], tiny_model_dir, tmp_path / "y", max_steps=1)


def test_world_scores_are_the_judges_and_a_limit_keeps_every_family(tmp_path) -> None:
    world = World(0, "small")
    path = write_jsonl(tmp_path / "prompts_eval.jsonl", [prompt_row(r) for r in world.prompt_records("eval")])
    records = load_prompts(path)
    paths = SimpleNamespace(datasets={"prompts_eval": path})
    answers = {r.text: "I am not sure." for r in records}
    limited = world_scores(EchoLM(answers), paths, samples=2, limit=40)
    assert limited["n"] == 80 and len(limited["per_prompt_reward"]) == 40
    families = {r.family for r in records}
    chosen = round_robin(records, 40)
    assert {r.family for r in chosen} == families
    truth = evaluate_responses(chosen, ["I am not sure."] * 40)
    assert limited["true_reward"] == pytest.approx(truth["true_reward"])
    assert limited["harmlessness"] == pytest.approx(truth["harmlessness"])
    row = table_row("m", limited, baseline="b", metric="x", value=0.5)
    assert row["true_reward"] == limited["true_reward"] and row["baseline"] == "b"
