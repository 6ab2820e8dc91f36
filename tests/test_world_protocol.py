"""The world's one evaluation protocol (alignlab.world.model_eval.sample_answers / kl_estimate), which the demo and
both benches use: answers come from the generator's output, prompts repeat in order, ``read`` shapes what the
judge grades, finished flags (not lengths) count the unfinished answers, and the KL estimate is the mean
log-ratio of the generated ids, EOS included."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from alignlab.core.generation import GenerationOutput
from alignlab.core.models import load_causal_lm
from alignlab.world.model_eval import answer_logprobs, kl_estimate, sample_answers


class ScriptedGenerator:
    """Answers prompt i with 'answer i ' and says which finished; records what it was asked."""

    def __init__(self, finished):
        self.finished, self.calls = finished, []

    def encode_prompt(self, messages):
        return [len(messages[0]["content"])]

    def complete(self, encoded, **settings):
        self.calls.append((encoded, settings))
        n = len(encoded)
        return GenerationOutput(prompt_ids=encoded, completion_ids=[[5, 6, 2] for _ in range(n)],
                                texts=[f" answer {i} " for i in range(n)], finished=self.finished[:n], seconds=0.0)


def prompts(*texts):
    return [SimpleNamespace(messages=[{"role": "user", "content": t}], text=t) for t in texts]


def test_sample_answers_repeats_prompts_in_order_and_counts_unfinished_by_flags():
    lm = ScriptedGenerator([True, False, True, True, False, True])
    sampled = sample_answers(lm, prompts("a", "bb", "ccc"), samples=2, max_tokens=7, temperature=1.0, seed=3,
                             read=str.strip)
    assert [p.text for p in sampled.prompts] == ["a", "bb", "ccc", "a", "bb", "ccc"]  # answer k is to prompt k % 3
    assert sampled.prompt_ids == [[1], [2], [3], [1], [2], [3]]
    assert sampled.answers == [f"answer {i}" for i in range(6)]  # read applied to the generator's texts
    assert sampled.unfinished == pytest.approx(2 / 6)  # two flags say cut; every answer has the same length
    (_, settings), = lm.calls
    assert settings == {"max_tokens": 7, "temperature": 1.0, "seed": 3}


def test_sample_answers_renders_with_the_given_prompt_ids():
    lm = ScriptedGenerator([True, True])
    sampled = sample_answers(lm, prompts("x", "yy"), samples=1, max_tokens=4, temperature=0.0, seed=0,
                             prompt_ids=lambda messages: [9, len(messages[0]["content"])])
    assert sampled.prompt_ids == [[9, 1], [9, 2]] and sampled.answers == [" answer 0 ", " answer 1 "]


def test_kl_estimate_is_the_mean_log_ratio_of_the_generated_ids(tiny_model_dir, tmp_path):
    model = load_causal_lm(str(tiny_model_dir)).eval()
    other = load_causal_lm(str(tiny_model_dir)).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = GenerationOutput(prompt_ids=[[3, 4], [5]], completion_ids=[[7, 8, 2], [9]], texts=["", ""],
                           finished=[True, False], seconds=0.0)
    sampled = SimpleNamespace(prompt_ids=[[3, 4], [5]], generated=out)
    assert kl_estimate(model, model, sampled, pad_token_id=0) == 0.0  # a model against itself
    expected = (answer_logprobs(model, [[3, 4], [5]], [[7, 8, 2], [9]], pad_token_id=0)
                - answer_logprobs(other, [[1], [5]], [[7, 8, 2], [9]], pad_token_id=0)).mean()
    got = kl_estimate(model, other, sampled, pad_token_id=0, reference_prompt_ids=[[1], [5]])
    assert got == pytest.approx(float(expected), rel=1e-6) and abs(got) > 1e-3
