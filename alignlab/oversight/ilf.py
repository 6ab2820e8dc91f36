"""ILF: imitation learning from language feedback (Scheurer et al. 2023, "Training Language Models with Language
Feedback at Scale"), in a minimal form.

For each (question, answer, feedback) — on the toy world the feedback is the truth's: the fault the answer shows,
in words ("The capital is wrong.") —

1. the model writes ``k`` refinements of the answer conditioned on the feedback (the world's refinement skill);
2. the refinement that best incorporates the feedback is chosen. The paper asks an instruction-following model
   whether each refinement incorporates the feedback and keeps the most likely "yes"; here the model itself is
   asked the nearest question its skills can answer: a critique of the refinement under the constitution's
   narrowest principle covering the feedback's fault (``select="critique"``: the first refinement it finds free of
   that fault, that is not the answer unchanged). ``select="rating"`` takes the model's highest 1-5 rating instead,
   and ``select="oracle"`` the world's grader (an upper bound, not a method);
3. the model is fine-tuned (SFT) on (question, chosen refinement).

The baseline is SFT on the answers the annotator chose in the same pairs (the same questions and budget).

Example (a scripted model)::

    >>> class Scripted:
    ...     def generate(self, prompts, **kw):
    ...         return ["It is 8." if "Improve" in p[-1]["content"] else "Fault: none. Fine." for p in prompts]
    >>> refinements = refine(Scripted(), [("What is 3 plus 5?", "It is 9.", "The arithmetic is wrong.")], k=2)
    >>> refinements
    [['It is 8.', 'It is 8.']]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.core.records import user
from alignlab.evaluate.interface import LM
from alignlab.oversight.constitutional import CRITIQUE_TOKENS
from alignlab.oversight.stages import (
    JUDGED_FAMILIES,
    FeedbackRunConfig,
    human_pair_rows,
    prepare,
    rate,
    run_stage,
    score_models,
    sft_row,
    write_jsonl,
    write_results,
)
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import Constitution, Principle

SELECTORS = ("critique", "rating", "oracle")


def refine(lm: LM, items: Sequence[tuple[str, str, str]], *, k: int, max_tokens: int = 48, temperature: float = 1.0,
           seed: int = 0) -> list[list[str]]:
    """``k`` refinements per (question, answer, feedback) (Scheurer et al. Sec. 2, step 2)."""
    requests = [[user(P.feedback_prompt(q, a, f))] for q, a, f in items for _ in range(k)]
    texts = lm.generate(requests, max_tokens=max_tokens, temperature=temperature, seed=seed)
    return [texts[i * k:(i + 1) * k] for i in range(len(items))]


def narrowest_principle(constitution: Constitution, fault: str) -> Principle:
    """The principle covering ``fault`` that covers the fewest other faults (the feedback's own question)."""
    return min(constitution.covering(fault), key=lambda p: len(p.faults))


def select_refinements(lm: LM, items: Sequence[tuple[str, str, str]], refinements: Sequence[Sequence[str]],
                       principles: Sequence[Principle], *, select: str = "critique", seed: int = 0,
                       ) -> tuple[list[int], list[bool]]:
    """The index of the chosen refinement per item (step 3) and whether each of the model's judgements parsed.

    ``critique``: the first refinement that differs from the answer and whose critique under the item's principle
    says ``Fault: none.`` (else the first that differs, else the first). ``rating``: the highest rating (an
    unparseable rating counts as 0; ties: the first)."""
    flat = [(i, j, r) for i, rs in enumerate(refinements) for j, r in enumerate(rs)]
    score: dict[tuple[int, int], tuple[float, ...]]  # compared as tuples: the first entry counts most
    if select == "critique":
        outputs = lm.generate([[user(P.critique_prompt(principles[i], items[i][0], r))] for i, _, r in flat],
                              max_tokens=CRITIQUE_TOKENS, temperature=0.0, seed=seed)
        parsed = [P.parse_critique(o) for o in outputs]
        score = {(i, j): (r != items[i][1], v == P.NONE) for (i, j, r), v in zip(flat, parsed)}
    elif select == "rating":
        outputs = lm.generate([[user(P.rating_prompt(items[i][0], r))] for i, _, r in flat],
                              max_tokens=CRITIQUE_TOKENS, temperature=0.0, seed=seed)
        parsed = [P.parse_rating(o) for o in outputs]
        score = {(i, j): (float(v or 0),) for (i, j, _), v in zip(flat, parsed)}
    else:
        raise ValueError(f"unknown selector '{select}' for the model (the oracle needs the world: select_oracle)")
    chosen = [max(range(len(rs)), key=lambda j: (score[i, j], -j)) for i, rs in enumerate(refinements)]
    return chosen, [v is not None for v in parsed]


# ---- the experiment on the toy world ------------------------------------------------------------------


@dataclass
class ILFConfig(FeedbackRunConfig):
    """ILF on the toy world: refinements of faulty answers conditioned on the truth's feedback, the best one chosen
    by the model's own critique, SFT on it; against SFT on the annotator's chosen answers of the same pairs."""

    output: str = "runs/ilf"
    pairs: int = 300
    """annotator-labelled pairs of the world (``pairs_train``) whose faulty answer gets feedback"""
    k: int = 4
    """refinements per answer"""
    select: str = "critique"
    """how the refinement is chosen: critique (the model's), rating (the model's) or oracle (the world's grader)"""

    def __post_init__(self) -> None:
        if self.select not in SELECTORS:
            from alignlab.errors import ConfigError

            raise ConfigError(f"select must be one of {', '.join(SELECTORS)}, got '{self.select}'")


STAGES = ("refinements", "ilf", "sft-chosen", "scores")


def feedback_items(world, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs whose question is of a judged family, with the answer that shows a fault (the lower true reward)
    and the truth's feedback about one of its faults."""
    from alignlab.world.families import parse_prompt
    from alignlab.world.judge import true_reward
    from alignlab.world.skills.constitution import answer_faults

    items = []
    for row in rows:
        prompt = parse_prompt(row["prompt"][-1]["content"], world.kb)
        if prompt.family not in JUDGED_FAMILIES:
            continue
        answers = [row["chosen"][-1]["content"], row["rejected"][-1]["content"]]
        worse = min(answers, key=lambda a: true_reward(prompt, a))
        faults = sorted(answer_faults(prompt, worse))
        if faults:
            items.append({"prompt": prompt, "question": prompt.text, "answer": worse, "fault": faults[0],
                          "feedback": P.feedback_text(faults[0], prompt), "chosen": answers[0]})
    return items


def run_ilf(config: ILFConfig) -> dict[str, Any]:
    """ILF on the world; writes and returns the result (rows: base, SFT on the annotator's choices, ILF)."""
    from statistics import mean

    from alignlab.oversight.world_run import finetune, table_row
    from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION

    paths, world, lm, models = prepare(config, STAGES)
    train_from = models.weights
    out, seed = Path(config.output), config.seed
    rows, _ = human_pair_rows(paths.datasets["pairs_train"], config.pairs, seed, world.kb)
    items = feedback_items(world, rows)
    triples = [(it["question"], it["answer"], it["feedback"]) for it in items]

    def refinements(stage: Path) -> dict[str, Any]:
        candidates = refine(lm, triples, k=config.k, max_tokens=config.max_tokens, seed=seed)
        success = [[P.grade_rewrite(it["prompt"], it["answer"], r, {it["fault"]}).success for r in rs]
                   for it, rs in zip(items, candidates)]
        if config.select == "oracle":  # the world's grader: the first successful refinement
            chosen, parsed = [next((j for j, s in enumerate(ss) if s), 0) for ss in success], []
        else:
            principles = [narrowest_principle(DEFAULT_CONSTITUTION, it["fault"]) for it in items]
            chosen, parsed = select_refinements(lm, triples, candidates, principles, select=config.select, seed=seed)
        write_jsonl(stage / "refinements.jsonl", [{"question": q, "answer": a, "feedback": f, "refinements": rs,
                                                   "chosen": c} for (q, a, f), rs, c in zip(triples, candidates, chosen)])
        return {"items": len(items), "parse_rate": rate(parsed),
                "chosen_success": mean(ss[c] for ss, c in zip(success, chosen)),  # what the selector achieved
                "random_success": mean(mean(ss) for ss in success),             # a refinement picked at random
                "oracle_success": mean(any(ss) for ss in success),              # some refinement succeeded
                "rows": [sft_row(q, rs[c]) for (q, _, _), rs, c in zip(triples, candidates, chosen)]}

    ref = run_stage(out, "refinements", refinements)
    models.note("refinements", samples_from=models.sample)
    train = {"max_steps": config.steps, "lr": config.lr, "seed": seed}
    run_stage(out, "ilf", lambda d: {"model": str(finetune("sft", ref["rows"], train_from, d / "model", **train))})
    baseline_rows = [sft_row(it["question"], it["chosen"]) for it in items]
    run_stage(out, "sft-chosen", lambda d: {"model": str(finetune("sft", baseline_rows, train_from, d / "model", **train))})
    for name in ("ilf", "sft-chosen"):
        models.note(name, trained_from=train_from, trained=out / name / "model")
    scored = {"base": train_from, "sft-chosen": out / "sft-chosen" / "model", "ilf": out / "ilf" / "model"}
    scores = run_stage(out, "scores", lambda d: score_models(scored, paths, samples=config.eval_samples,
                                                             limit=config.eval_limit, seed=seed))
    stats = {k: v for k, v in ref.items() if k != "rows"}
    table = [table_row("base", scores["base"], baseline=None),
             table_row("sft-chosen", scores["sft-chosen"], baseline="base", metric="sft_rows", value=len(items)),
             table_row("ilf", scores["ilf"], baseline="sft-chosen", metric="chosen_success",
                       value=stats["chosen_success"], parse_rate=stats["parse_rate"], select=config.select)]
    return write_results(config, {"rows": table, "refinement_stage": stats, "sources": models.summary(),
                                  "per_prompt_reward": {k: v["per_prompt_reward"] for k, v in scores.items()}})
