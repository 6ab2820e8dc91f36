"""best_of_n returns, for each prompt, the sample its reward scores highest (not the first, not a mean)."""

from __future__ import annotations

import torch

from alignlab.core.generation import GenerationConfig
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.outer.online.sampling import best_of_n


def test_best_of_n_returns_the_argmax_reward_sample_of_each_prompt(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": q}] for q in ("Hello!", "What is the capital of Zorbia?", "Two plus two?")]
    seen: list[tuple[str, str, float]] = []

    def reward(prompt_texts: list[str], completions: list[str]) -> list[float]:
        # a score that depends on the text only, so it is known for every sample the sampler drew
        scores = [float(sum(map(ord, c)) % 101) for c in completions]
        seen.extend(zip(prompt_texts, completions, scores))
        return scores

    n = 6
    best = best_of_n(model, tok, prompts, reward, n=n, generation=GenerationConfig(max_new_tokens=8))
    assert len(best) == len(prompts) and len(seen) == n * len(prompts)
    groups = [seen[i * n:(i + 1) * n] for i in range(len(prompts))]  # the n samples of each prompt, in order
    assert [len({p for p, _, _ in g}) for g in groups] == [1, 1, 1]
    for (text, score), group in zip(best, groups):
        top = max(s for _, _, s in group)
        assert score == top and (text, score) in [(c, s) for _, c, s in group]
    # the samples differ in reward, so the argmax check above is not vacuous
    assert any(len({s for _, _, s in g}) > 1 for g in groups)
