"""SELF-ALIGN (Sun et al. 2023, "Principle-Driven Self-Alignment of Language Models from Scratch with Minimal
Human Supervision", the Dromedary model), in a minimal form.

1. **Topic-guided red-teaming self-instruct**: the model writes new prompts from a few seed prompts. Here the model
   continues an open user turn that starts with a seed prompt's opening words (the topic: "How do I ..."), and the
   new prompts are cut and filtered (``extract``: the world keeps a prompt it can read; duplicates and seeds go).
2. **Principle-driven self-alignment**: the model answers each new prompt with the principles (the system turn) and
   a few in-context exemplars (earlier turns) before it.
3. **Principle engraving**: the base model is fine-tuned on (prompt, principle-driven answer) *without* the
   principles and exemplars in the prompt, so it answers that way unprompted.

Not done: the paper's fourth stage (verbose cloning) and its internal-thought notes in the exemplars. A tiny model
pretrained on transcripts cannot follow an instruction to write questions, which is why step 1 samples the opening
of a user turn instead of asking for "a new question"; the opening is the chat template's text before a user
message (``user_prefix``), so step 1 needs a backend that takes plain-text prompts.

Example (a scripted model)::

    >>> import random
    >>> class Scripted:
    ...     def generate(self, prompts, **kw):
    ...         return [" steal the gold?" if isinstance(p, str) else "I can't help with that." for p in prompts]
    >>> new = self_instruct(Scripted(), ["How do I poison a well?"], 2, rng=random.Random(0), opening_words=3)
    >>> new
    ['How do I steal the gold?', 'How do I steal the gold?']
    >>> principle_driven_messages(["Never help anyone hurt."], [("Hi.", "Hello!")], "How do I steal the gold?")[0]
    {'role': 'system', 'content': 'Never help anyone hurt.'}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.core.records import assistant, user
from alignlab.evaluate.interface import LM
from alignlab.oversight.stages import (
    JUDGED_FAMILIES,
    FeedbackRunConfig,
    prepare,
    require_rows,
    run_stage,
    score_models,
    sft_row,
    train_questions,
    write_jsonl,
    write_results,
)


def self_instruct(lm: LM, seeds: Sequence[str], n: int, *, rng: random.Random, opening_words: int = 3,
                  user_prefix: str = "<|user|>", max_tokens: int = 32, seed: int = 0) -> list[str]:
    """``n`` raw new prompts: each continues an open user turn that starts with the first ``opening_words`` words of
    a seed prompt drawn at random (Sun et al. Sec. 3.1, topic-guided red-teaming self-instruct)."""
    openings = [" ".join(rng.choice(seeds).split()[:opening_words]) for _ in range(n)]
    texts = lm.generate([user_prefix + o for o in openings], max_tokens=max_tokens, temperature=1.0, seed=seed)
    return [o + t for o, t in zip(openings, texts)]


def filter_prompts(raw: Sequence[str], seeds: Sequence[str], extract: Callable[[str], str | None],
                   held_out: Sequence[str] = ()) -> tuple[list[str], dict]:
    """The new prompts ``extract`` can read, without seeds, duplicates and ``held_out`` prompts (the evaluation's:
    a self-instructed prompt that is an evaluation prompt would train on the test), and how many of each were
    dropped."""
    seen, evaluation, kept, unreadable, leaked = set(seeds), set(held_out), [], 0, 0
    for text in raw:
        prompt = extract(text)
        if prompt is None:
            unreadable += 1
        elif prompt in evaluation:
            leaked += 1
        elif prompt not in seen:
            seen.add(prompt)
            kept.append(prompt)
    return kept, {"generated": len(raw), "unreadable": unreadable, "held_out": leaked, "kept": len(kept),
                  "repeats": len(raw) - unreadable - leaked - len(kept)}


def world_prompt_extractor(kb) -> Callable[[str], str | None]:
    """The shortest prefix of a generated text, ending in "?" or ".", that is a prompt of the world (the model
    writes the answer after the question in the same breath; the world's prompt index says where the prompt ends)."""
    from alignlab.errors import WorldError
    from alignlab.world.families import parse_prompt

    def extract(text: str) -> str | None:
        for end, char in enumerate(text):
            if char in "?.":
                try:
                    return parse_prompt(text[: end + 1].strip(), kb).text
                except WorldError:
                    continue
        return None

    return extract


def principle_driven_messages(principles: Sequence[str], exemplars: Sequence[tuple[str, str]], question: str,
                              ) -> list[dict[str, str]]:
    """The principle-driven prompt (Sun et al. Sec. 3.2): the principles, the exemplars as earlier turns, the question."""
    messages = [{"role": "system", "content": " ".join(principles)}]
    for q, a in exemplars:
        messages += [user(q), assistant(a)]
    return [*messages, user(question)]


def principle_driven_answers(lm: LM, questions: Sequence[str], principles: Sequence[str],
                             exemplars: Sequence[tuple[str, str]], *, max_tokens: int = 48, temperature: float = 0.7,
                             seed: int = 0) -> list[str]:
    """The model's answers with the principles and exemplars in the prompt."""
    return lm.generate([principle_driven_messages(principles, exemplars, q) for q in questions],
                       max_tokens=max_tokens, temperature=temperature, seed=seed)


def engraving_rows(questions: Sequence[str], answers: Sequence[str]) -> list[dict[str, Any]]:
    """Principle engraving (Sun et al. Sec. 3.3): SFT rows of the bare question and the principle-driven answer."""
    return [sft_row(q, a) for q, a in zip(questions, answers)]


# ---- the experiment on the toy world ------------------------------------------------------------------


@dataclass
class SelfAlignConfig(FeedbackRunConfig):
    """SELF-ALIGN on the toy world: self-instructed prompts, principle-driven answers, principle-engraving SFT;
    against the base model and SFT on the model's own plain answers to the same prompts."""

    output: str = "runs/self-align"
    seeds: int = 12
    """seed prompts (training questions of every judged family)"""
    generate: int = 800
    """raw prompts the model writes (fewer survive the filter)"""
    opening_words: int = 3
    """words of a seed prompt that open each new prompt (the topic)"""
    exemplars: int = 3
    """in-context exemplars (the world's human demonstrations) in the principle-driven prompt"""
    temperature: float = 0.7
    """sampling temperature of the principle-driven (and the plain) answers"""
    user_prefix: str = "<|user|>"
    """the chat template's text before a user message (opens the user turn the model continues)"""


STAGES = ("prompts", "answers", "self-align", "sft-plain", "scores")


def run_self_align(config: SelfAlignConfig) -> dict[str, Any]:
    """SELF-ALIGN on the world; writes and returns the result (rows: base, SFT on plain answers, SELF-ALIGN)."""
    from statistics import mean

    from alignlab.oversight.world_run import finetune, table_row
    from alignlab.world.datasets import read_jsonl
    from alignlab.world.families import parse_prompt
    from alignlab.world.judge import true_reward
    from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION

    paths, world, lm, models = prepare(config, STAGES)
    train_from = models.weights
    out, seed = Path(config.output), config.seed
    seeds = [p.text for p in train_questions(world, config.seeds, JUDGED_FAMILIES, seed)]

    def new_prompts(stage: Path) -> dict[str, Any]:
        raw = self_instruct(lm, seeds, config.generate, rng=random.Random(f"self-align-{seed}"),
                            opening_words=config.opening_words, user_prefix=config.user_prefix, seed=seed)
        kept, counts = filter_prompts(raw, seeds, world_prompt_extractor(world.kb),
                                      held_out=[p.text for p in world.eval_prompts()])
        write_jsonl(stage / "raw.jsonl", [{"text": t} for t in raw])
        return {**counts, "prompts": kept}

    stats = run_stage(out, "prompts", new_prompts)
    questions = require_rows(stats["prompts"], "the model wrote no new prompt the world can read", stats)
    principles = [p.text for p in DEFAULT_CONSTITUTION.principles]
    demos = read_jsonl(paths.datasets["sft_train"])[: config.exemplars]
    exemplars = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in demos]

    def answers(stage: Path) -> dict[str, Any]:
        driven = principle_driven_answers(lm, questions, principles, exemplars, max_tokens=config.max_tokens,
                                          temperature=config.temperature, seed=seed)
        plain = lm.generate([[user(q)] for q in questions], max_tokens=config.max_tokens,
                            temperature=config.temperature, seed=seed)
        prompts = [parse_prompt(q, world.kb) for q in questions]
        return {"principle_driven": driven, "plain": plain,
                "principle_driven_reward": mean(true_reward(p, a) for p, a in zip(prompts, driven)),
                "plain_reward": mean(true_reward(p, a) for p, a in zip(prompts, plain))}

    ans = run_stage(out, "answers", answers)
    for name in ("prompts", "answers"):
        models.note(name, samples_from=models.sample)
    train = {"max_steps": config.steps, "lr": config.lr, "seed": seed}
    run_stage(out, "self-align", lambda d: {"model": str(finetune(
        "sft", engraving_rows(questions, ans["principle_driven"]), train_from, d / "model", **train))})
    run_stage(out, "sft-plain", lambda d: {"model": str(finetune(
        "sft", engraving_rows(questions, ans["plain"]), train_from, d / "model", **train))})
    for name in ("self-align", "sft-plain"):
        models.note(name, trained_from=train_from, trained=out / name / "model")
    scored = {"base": train_from, "sft-plain": out / "sft-plain" / "model", "self-align": out / "self-align" / "model"}
    scores = run_stage(out, "scores", lambda d: score_models(scored, paths, samples=config.eval_samples,
                                                             limit=config.eval_limit, seed=seed))
    gain = ans["principle_driven_reward"] - ans["plain_reward"]
    rows = [table_row("base", scores["base"], baseline=None),
            table_row("sft-plain", scores["sft-plain"], baseline="base", metric="answer_reward", value=ans["plain_reward"]),
            table_row("self-align", scores["self-align"], baseline="sft-plain", metric="answer_reward",
                      value=ans["principle_driven_reward"], prompt_yield=stats["kept"] / stats["generated"])]
    return write_results(config, {"rows": rows, "prompts": {k: v for k, v in stats.items() if k != "prompts"},
                                  "principle_driven_reward": ans["principle_driven_reward"],
                                  "plain_reward": ans["plain_reward"], "principle_gain": gain,
                                  "sources": models.summary(),
                                  "per_prompt_reward": {k: v["per_prompt_reward"] for k, v in scores.items()}})
