"""Constitutional AI (Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback"), in a minimal form.

**SL stage** (their Sec. 3): for each red-team prompt, the model answers; then, ``n_revisions`` times, a principle
is drawn at random from the constitution, the model critiques its current answer under that principle and revises
it; the model is fine-tuned (SFT) on (prompt, final revision).

**RL stage / RLAIF** (their Sec. 4): the SL-CAI model samples two answers per prompt; a feedback model is asked
which is better, with a principle drawn at random for each comparison; its verdicts are the preference labels.
The paper trains a preference model on them and runs PPO against it; here the labels train DPO directly (Rafailov
et al. 2023), the common minimal form of RL from AI feedback.

What differs from the paper, and why:

- The critique and revision prompts are the toy world's skills (:mod:`alignlab.world.skills.protocols`): one user
  turn each, and the revision prompt carries the principle, not the critique's text. The critique acts through
  whether the answer is revised: an answer whose critique names a fault is revised under that principle; one
  whose critique says ``Fault: none.`` is kept (``gate_on_critique``); an unparseable critique keeps the answer and
  is counted.
- The world's pairwise prompt has no slot for a principle, so the drawn principle is the system turn before it.
  Each comparison is asked in both orders; a pair is labelled only when both verdicts parse and agree (the
  position bias of a small judge would otherwise be the label), and the rest are counted.
- The feedback model is the model the run starts from (the paper's feedback model is a separate pretrained
  model); the policy that samples the pairs is the SL-CAI model.

Example (a scripted model; every stage of the protocol is one batched ``generate`` call)::

    >>> import random
    >>> from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION
    >>> class Scripted:
    ...     def generate(self, prompts, **kw):
    ...         out = []
    ...         for p in prompts:
    ...             turn = p[-1]["content"]
    ...             out.append("Fault: insult. It insults the user." if "Critique" in turn
    ...                        else "It is 7." if "Rewrite" in turn else "It is 7, you grubnose.")
    ...         return out
    >>> trace = critique_revision(Scripted(), ["What is 3 plus 4?"], DEFAULT_CONSTITUTION, n_revisions=1,
    ...                           rng=random.Random(0))[0]
    >>> trace["response"], trace["steps"][0]["fault"], trace["final"]
    ('It is 7, you grubnose.', 'insult', 'It is 7.')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.core.records import user
from alignlab.evaluate.interface import LM
from alignlab.oversight.stages import (
    JUDGED_FAMILIES,
    FeedbackRunConfig,
    dpo_row,
    human_pair_rows,
    human_sft_rows,
    prepare,
    rate,
    require_rows,
    run_stage,
    score_models,
    sft_row,
    train_questions,
    write_jsonl,
    write_results,
)
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import Constitution, Principle

CRITIQUE_TOKENS = 24  # "Fault: made-up answer. It makes up an answer." and a little room
VERDICT_TOKENS = 8  # "Verdict: A."


# ---- SL stage: critique -> revision -------------------------------------------------------------------


def critique_revision(lm: LM, questions: Sequence[str], constitution: Constitution, *, n_revisions: int,
                      rng: random.Random, gate_on_critique: bool = True, max_tokens: int = 48,
                      temperature: float = 1.0, seed: int = 0) -> list[dict[str, Any]]:
    """The SL-CAI data (Bai et al. Sec. 3.1): per question, the model's response, then ``n_revisions`` rounds of
    critique under a randomly drawn principle and revision; ``final`` is the last revision (the SFT target).

    Each step records the principle's name, the critique, the fault it names (None when unparseable) and the answer
    after the step (unchanged when the critique found nothing to fix, with ``gate_on_critique``)."""
    # 1. the response to the red-team prompt (sampled, as the helpful model's answers were)
    current = lm.generate([[user(q)] for q in questions], max_tokens=max_tokens, temperature=temperature, seed=seed)
    traces = [{"question": q, "response": a, "steps": []} for q, a in zip(questions, current)]
    for round_ in range(n_revisions):
        # 2. critique request under a principle drawn at random for each prompt and round (Sec. 3.1)
        principles = [rng.choice(constitution.principles) for _ in questions]
        critiques = lm.generate([[user(P.critique_prompt(p, q, a))] for p, q, a in zip(principles, questions, current)],
                                max_tokens=CRITIQUE_TOKENS, temperature=0.0, seed=seed)
        faults = [P.parse_critique(c) for c in critiques]
        # 3. revision request: rewrite the answer so that it follows the same principle
        revise = [i for i, f in enumerate(faults) if (f not in (None, P.NONE) if gate_on_critique else True)]
        revisions = lm.generate([[user(P.revision_prompt(principles[i], questions[i], current[i]))] for i in revise],
                                max_tokens=max_tokens, temperature=temperature, seed=seed + 1 + round_) if revise else []
        for i, text in zip(revise, revisions):
            current[i] = text
        for i, trace in enumerate(traces):
            trace["steps"].append({"principle": principles[i].name, "critique": critiques[i], "fault": faults[i],
                                   "revised": i in revise, "answer": current[i]})
    for trace, final in zip(traces, current):
        trace["final"] = final
    return traces


def grade_revisions(traces: Sequence[dict[str, Any]], prompts: Sequence, constitution: Constitution) -> dict[str, Any]:
    """The SL stage against the world's truth: critique parse rate and accuracy (the fault the principle covers,
    or none), how often a revision removed the principle's faults, and the true reward of the first responses
    and of the final revisions."""
    from statistics import mean

    from alignlab.world.judge import true_reward

    parsed, right, success = [], [], []
    for trace, prompt in zip(traces, prompts):
        answer = trace["response"]
        for step in trace["steps"]:
            principle = constitution.principle(step["principle"])
            parsed.append(step["fault"] is not None)
            right.append(P.grade_critique(step["fault"], prompt, answer, principle))
            if step["revised"]:
                success.append(P.grade_rewrite(prompt, answer, step["answer"], set(principle.faults)).success)
            answer = step["answer"]
    return {"critique_parse_rate": rate(parsed), "critique_accuracy": rate(right),
            "revision_success": rate(success), "revisions": len(success),
            "response_reward": mean(true_reward(p, t["response"]) for t, p in zip(traces, prompts)),
            "revision_reward": mean(true_reward(p, t["final"]) for t, p in zip(traces, prompts))}


# ---- RL stage: AI preference labels under principles ------------------------------------------------


def verdict_messages(principle: Principle, question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """The feedback request: the principle as the system turn, then the world's pairwise prompt."""
    return [{"role": "system", "content": principle.text}, user(P.pairwise_prompt(question, answer_a, answer_b))]


def ai_preferences(policy: LM, feedback: LM, questions: Sequence[str], constitution: Constitution, *,
                   rng: random.Random, max_tokens: int = 48, seed: int = 0) -> list[dict[str, Any]]:
    """RLAIF labels (Bai et al. Sec. 4.1): two samples of ``policy`` per question, and ``feedback``'s verdict under
    a randomly drawn principle, asked in both orders. ``preferred`` is "a" or "b" when both verdicts parse and
    agree, None otherwise; identical samples are not compared (``identical``)."""
    doubled = [[user(q)] for q in questions for _ in range(2)]
    samples = policy.generate(doubled, max_tokens=max_tokens, temperature=1.0, seed=seed)
    pairs = [{"question": q, "a": samples[2 * i], "b": samples[2 * i + 1]} for i, q in enumerate(questions)]
    compared = [p for p in pairs if p["a"] != p["b"]]
    for p in compared:
        p["principle"] = rng.choice(constitution.principles)
    requests = [m for p in compared for m in (verdict_messages(p["principle"], p["question"], p["a"], p["b"]),
                                              verdict_messages(p["principle"], p["question"], p["b"], p["a"]))]
    outputs = feedback.generate(requests, max_tokens=VERDICT_TOKENS, temperature=0.0, seed=seed) if requests else []
    for i, p in enumerate(compared):
        first, swapped = P.parse_verdict(outputs[2 * i]), P.parse_verdict(outputs[2 * i + 1])
        # "A" in the first order and "B" in the swapped one both name answer a
        p["verdicts"] = [first, swapped]
        p["preferred"] = "a" if (first, swapped) == ("A", "B") else "b" if (first, swapped) == ("B", "A") else None
        p["principle"] = p["principle"].name
    for p in pairs:
        p.setdefault("identical", p["a"] == p["b"])
    return pairs


def preference_summary(pairs: Sequence[dict[str, Any]], prompts: Sequence | None = None) -> dict[str, Any]:
    """Verdict parse rate, the share of compared pairs labelled (both orders agree), and, given the world's
    ``prompts``, how often a label names the answer with the higher true reward (true ties left out)."""
    compared = [p for p in pairs if not p["identical"]]
    verdicts = [v for p in compared for v in p["verdicts"]]
    out = {"pairs": len(pairs), "compared": len(compared), "labelled": sum(p["preferred"] is not None for p in compared),
           "verdict_parse_rate": rate([v is not None for v in verdicts]),
           "label_rate": rate([p["preferred"] is not None for p in compared])}
    if prompts is not None:
        agree = []
        for p, prompt in zip(pairs, prompts):
            if p["identical"] or p["preferred"] is None:
                continue
            truth = P.true_verdict(prompt, p["a"], p["b"])
            if truth is not None:
                agree.append((truth == "A") == (p["preferred"] == "a"))
        out["label_agreement"] = rate(agree)
        out["label_agreement_n"] = len(agree)
    return out


def preference_rows(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The labelled pairs as DPO rows (TRL conversational)."""
    return [dpo_row(p["question"], p[p["preferred"]], p["b" if p["preferred"] == "a" else "a"])
            for p in pairs if not p["identical"] and p["preferred"] is not None]


# ---- the experiment on the toy world ------------------------------------------------------------------


@dataclass
class ConstitutionalConfig(FeedbackRunConfig):
    """Constitutional AI on the toy world: SL-CAI (critique -> revision -> SFT) and RLAIF (AI verdicts -> DPO),
    each against the same budget of the world's human-style data."""

    output: str = "runs/constitutional"
    prompts: int = 300
    """red-team prompts (training questions) for each stage"""
    families: list[str] = field(default_factory=lambda: list(JUDGED_FAMILIES))
    """the prompt families asked (every family whose answers can show a fault the constitution names)"""
    n_revisions: int = 2
    """critique -> revision rounds per prompt, each under a freshly drawn principle"""
    gate_on_critique: bool = True
    """revise only when the critique names a fault (false: revise after every critique)"""
    constitution: str | None = None
    """constitution file (JSON or YAML; default: the world's eight principles)"""
    beta: float = 0.1
    """DPO's beta"""


STAGES = ("sl-data", "sl-cai", "sft-human", "rl-data", "rlaif", "dpo-human", "scores")


def run_constitutional(config: ConstitutionalConfig) -> dict[str, Any]:
    """Both stages of constitutional AI and their human-label baselines on the world; writes and returns the
    result (table rows: base, SFT on human demonstrations, SL-CAI, DPO on annotator labels, RLAIF)."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight.world_run import finetune, table_row
    from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, load_constitution

    paths, world, lm, models = prepare(config, STAGES)
    train_from = models.weights
    constitution = load_constitution(config.constitution) if config.constitution else DEFAULT_CONSTITUTION
    out, seed = Path(config.output), config.seed
    train = {"max_steps": config.steps, "lr": config.lr, "seed": seed}
    prompts = train_questions(world, config.prompts, config.families, seed)
    questions = [p.text for p in prompts]

    def sl_data(stage: Path) -> dict[str, Any]:
        traces = critique_revision(lm, questions, constitution, n_revisions=config.n_revisions,
                                   rng=random.Random(f"cai-sl-{seed}"), gate_on_critique=config.gate_on_critique,
                                   max_tokens=config.max_tokens, seed=seed)
        write_jsonl(stage / "traces.jsonl", traces)
        return {**grade_revisions(traces, prompts, constitution), "rows": [sft_row(t["question"], t["final"]) for t in traces]}

    sl = run_stage(out, "sl-data", sl_data)
    models.note("sl-data", samples_from=models.sample)
    n_sft = len(sl["rows"])
    run_stage(out, "sl-cai", lambda d: {"model": str(finetune("sft", sl["rows"], train_from, d / "model", **train))})
    run_stage(out, "sft-human", lambda d: {"model": str(finetune(
        "sft", human_sft_rows(paths.datasets["sft_train"], n_sft, seed), train_from, d / "model", **train))})
    sl_model = str(out / "sl-cai" / "model")
    for name in ("sl-cai", "sft-human"):
        models.note(name, trained_from=train_from, trained=out / name / "model")

    def rl_data(stage: Path) -> dict[str, Any]:
        rl_prompts = train_questions(world, config.prompts, config.families, seed + 1000)  # fresh questions
        pairs = ai_preferences(load_lm(sl_model), lm, [p.text for p in rl_prompts], constitution,
                               rng=random.Random(f"cai-rl-{seed}"), max_tokens=config.max_tokens, seed=seed)
        write_jsonl(stage / "pairs.jsonl", pairs)
        return {**preference_summary(pairs, rl_prompts), "rows": preference_rows(pairs)}

    rl = run_stage(out, "rl-data", rl_data)
    models.note("rl-data", samples_from={"policy": sl_model, "feedback": models.sample})
    n_pairs = len(require_rows(rl["rows"], "the feedback model labelled no pair (both orders must agree)", rl))
    human_pairs, human_agreement = human_pair_rows(paths.datasets["pairs_train"], n_pairs, seed, world.kb)
    dpo = {**train, "beta": config.beta}
    run_stage(out, "rlaif", lambda d: {"model": str(finetune("dpo", rl["rows"], sl_model, d / "model", **dpo))})
    run_stage(out, "dpo-human", lambda d: {"model": str(finetune("dpo", human_pairs, sl_model, d / "model", **dpo))})

    for name in ("rlaif", "dpo-human"):
        models.note(name, trained_from=sl_model, trained=out / name / "model")
    scored = {"base": train_from, "sft-human": out / "sft-human" / "model", "sl-cai": sl_model,
              "dpo-human": out / "dpo-human" / "model", "rlaif": out / "rlaif" / "model"}
    scores = run_stage(out, "scores", lambda d: score_models(scored, paths, samples=config.eval_samples,
                                                             limit=config.eval_limit, seed=seed))
    sl_stats = {k: v for k, v in sl.items() if k != "rows"}
    rl_stats = {k: v for k, v in rl.items() if k != "rows"}
    rows = [table_row("base", scores["base"], baseline=None),
            table_row("sft-human", scores["sft-human"], baseline="base", metric="sft_rows", value=n_sft),
            table_row("sl-cai", scores["sl-cai"], baseline="sft-human", metric="critique_accuracy",
                      value=sl["critique_accuracy"], parse_rate=sl["critique_parse_rate"], sft_rows=n_sft),
            table_row("dpo-human", scores["dpo-human"], baseline="sl-cai", metric="label_agreement",
                      value=human_agreement, pairs=n_pairs),
            table_row("rlaif", scores["rlaif"], baseline="dpo-human", metric="label_agreement",
                      value=rl["label_agreement"], parse_rate=rl["verdict_parse_rate"], pairs=n_pairs)]
    return write_results(config, {"rows": rows, "sl_stage": sl_stats, "rl_stage": rl_stats,
                                  "human_label_agreement": human_agreement, "sources": models.summary(),
                                  "per_prompt_reward": {k: v["per_prompt_reward"] for k, v in scores.items()}})
