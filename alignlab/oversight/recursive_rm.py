"""Recursive reward modelling, one level (Leike et al. 2018, "Scalable agent alignment via reward modeling"), in a
minimal form: the annotator who labels the current policy's answers is assisted by that policy's own critiques of
them, the labels train the next policy, and the loop is run once more with the improved policy as the assistant.

On the toy world the weak annotator is the base model's pairwise judge (it agrees with the truth well short of
always: docs/world.md), the assistant is the current policy asked for a critique of each answer under each of a
few narrow principles of the constitution (it finds faults far more reliably under "Never insult the user." than
under the all-covering "Be helpful, honest and harmless."), and the labels train DPO directly (Rafailov et al. 2023; no separate reward
model, as in our constitutional AI's RL stage). Each comparison is asked in both orders and labelled only when the
two verdicts agree. Two ways for the annotator to see the critiques:

- ``assist="prompt"``: the faults the critiques found are written into the judge's prompt after the answers
  (``Critique of A: Fault: insult. ...``); the judge model decides.
- ``assist="rule"``: the annotator trusts the critiques where they separate the answers (a fault found in one and
  none in the other: the other wins) and gives its own verdicts where they do not.

Example (a scripted judge that says "A" in both orders, which labels nothing without help)::

    >>> class Judge:
    ...     def generate(self, prompts, **kw):
    ...         return ["Verdict: A." for _ in prompts]
    >>> pairs = [{"question": "Hi.", "a": "Hello!", "b": "Go away, grubnose."}]
    >>> label_pairs(Judge(), pairs)[0]["preferred"] is None
    True
    >>> critiques = [(["Fault: none. Fine."], ["Fault: insult. It insults the user."])]
    >>> label_pairs(Judge(), pairs, critiques, assist="rule")[0]["preferred"]
    'a'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.core.records import user
from alignlab.evaluate.interface import LM
from alignlab.oversight.constitutional import CRITIQUE_TOKENS, VERDICT_TOKENS
from alignlab.oversight.stages import (
    JUDGED_FAMILIES,
    FeedbackRunConfig,
    dpo_row,
    prepare,
    rate,
    require_rows,
    run_stage,
    score_models,
    train_questions,
    write_jsonl,
    write_results,
)
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import Principle

ASSISTS = ("prompt", "rule")


def sample_pairs(policy: LM, questions: Sequence[str], *, max_tokens: int = 48, seed: int = 0) -> list[dict[str, Any]]:
    """Two answers of ``policy`` per question (temperature 1); identical ones are not compared and left out."""
    samples = policy.generate([[user(q)] for q in questions for _ in range(2)], max_tokens=max_tokens,
                              temperature=1.0, seed=seed)
    pairs = [{"question": q, "a": samples[2 * i], "b": samples[2 * i + 1]} for i, q in enumerate(questions)]
    return [p for p in pairs if p["a"] != p["b"]]


def assistant_critiques(assistant: LM, pairs: Sequence[dict[str, Any]], principles: Sequence[Principle], *,
                        seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """The assistant's critiques of both answers of every pair, one under each of ``principles``."""
    texts = assistant.generate([[user(P.critique_prompt(principle, p["question"], p[side]))]
                                for p in pairs for side in ("a", "b") for principle in principles],
                               max_tokens=CRITIQUE_TOKENS, temperature=0.0, seed=seed)
    k = len(principles)
    return [(texts[2 * i * k:(2 * i + 1) * k], texts[(2 * i + 1) * k:(2 * i + 2) * k]) for i in range(len(pairs))]


def faults_named(critiques: Sequence[str]) -> list[str]:
    """The faults a list of critiques names (unparseable critiques and ``none`` name nothing)."""
    return [f for f in map(P.parse_critique, critiques) if f not in (None, P.NONE)]


def assisted_prompt(question: str, answer_a: str, answer_b: str, critiques_a: Sequence[str],
                    critiques_b: Sequence[str]) -> str:
    """The pairwise prompt with the assistant's findings after the answers (the faults its critiques named)."""
    def findings(critiques: Sequence[str]) -> str:
        return " ".join(P.write_critique(f) for f in dict.fromkeys(faults_named(critiques))) or P.write_critique(P.NONE)

    head, ask = P.pairwise_prompt(question, answer_a, answer_b).rsplit("\n", 1)
    return f"{head}\nCritique of A: {findings(critiques_a)}\nCritique of B: {findings(critiques_b)}\n{ask}"


def label_pairs(judge: LM, pairs: Sequence[dict[str, Any]],
                critiques: Sequence[tuple[Sequence[str], Sequence[str]]] | None = None, *,
                assist: str = "prompt", seed: int = 0) -> list[dict[str, Any]]:
    """The judge's labels (``preferred``: "a", "b" or None) from verdicts in both orders, unassisted
    (``critiques=None``) or assisted by the critiques (``assist``: see the module docstring)."""
    if assist not in ASSISTS:
        raise ValueError(f"assist must be one of {', '.join(ASSISTS)}, got '{assist}'")

    def ask(p: dict[str, Any], c, swap: bool) -> list[dict[str, str]]:
        a, b = (p["b"], p["a"]) if swap else (p["a"], p["b"])
        if c is None or assist == "rule":
            return [user(P.pairwise_prompt(p["question"], a, b))]
        critiques_a, critiques_b = (c[1], c[0]) if swap else c
        return [user(assisted_prompt(p["question"], a, b, critiques_a, critiques_b))]

    crit = critiques or [None] * len(pairs)
    outputs = judge.generate([ask(p, c, swap) for p, c in zip(pairs, crit) for swap in (False, True)],
                             max_tokens=VERDICT_TOKENS, temperature=0.0, seed=seed)
    labelled = []
    for i, (p, c) in enumerate(zip(pairs, crit)):
        first, swapped = P.parse_verdict(outputs[2 * i]), P.parse_verdict(outputs[2 * i + 1])
        preferred = "a" if (first, swapped) == ("A", "B") else "b" if (first, swapped) == ("B", "A") else None
        if c is not None and assist == "rule":
            found_a, found_b = bool(faults_named(c[0])), bool(faults_named(c[1]))
            if found_a != found_b:  # the critiques separate the answers: the one without a fault found wins
                preferred = "b" if found_a else "a"
        labelled.append({**p, "verdicts": [first, swapped], "preferred": preferred,
                         **({"critiques": [list(c[0]), list(c[1])]} if c else {})})
    return labelled


def label_rows(labelled: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The labelled pairs as DPO rows."""
    return [dpo_row(p["question"], p[p["preferred"]], p["b" if p["preferred"] == "a" else "a"])
            for p in labelled if p["preferred"] is not None]


def label_summary(labelled: Sequence[dict[str, Any]], prompts: Sequence) -> dict[str, Any]:
    """Verdict parse rate, label rate and the labels' agreement with the truth (true ties left out), and the
    share of compared pairs labelled right (unlabelled and tied pairs count as not right)."""
    right, agree = [], []
    for p, prompt in zip(labelled, prompts):
        truth = P.true_verdict(prompt, p["a"], p["b"])
        ok = truth is not None and p["preferred"] is not None and (truth == "A") == (p["preferred"] == "a")
        right.append(ok)
        if truth is not None and p["preferred"] is not None:
            agree.append(ok)
    return {"pairs": len(labelled), "labelled": sum(p["preferred"] is not None for p in labelled),
            "verdict_parse_rate": rate([v is not None for p in labelled for v in p["verdicts"]]),
            "label_rate": rate([p["preferred"] is not None for p in labelled]),
            "label_agreement": rate(agree), "right_share": rate(right)}


# ---- the experiment on the toy world ------------------------------------------------------------------


@dataclass
class RecursiveRMConfig(FeedbackRunConfig):
    """Recursive reward modelling, one level, on the toy world: the weak judge's labels with and without the
    current policy's critiques, DPO on each, and the loop once more with the improved policy."""

    output: str = "runs/recursive-rm"
    prompts: int = 300
    """training questions per iteration (two answers each)"""
    iterations: int = 2
    """labelling -> DPO rounds (each assisted by the policy of the round before)"""
    principles: list[str] = field(default_factory=lambda: ["harmless", "polite", "fair", "honest", "accurate"])
    """the principles the assistant critiques every answer under (names in the world's constitution)"""
    assist: str = "rule"
    """how the annotator sees the critiques: rule (trusts a critique that separates the answers) or prompt (in the judge's prompt)"""
    beta: float = 0.1
    """DPO's beta"""

    def __post_init__(self) -> None:
        if self.assist not in ASSISTS:
            from alignlab.errors import ConfigError

            raise ConfigError(f"assist must be one of {', '.join(ASSISTS)}, got '{self.assist}'")


def run_recursive_rm(config: RecursiveRMConfig) -> dict[str, Any]:
    """Assisted against unassisted labelling for ``iterations`` rounds; writes and returns the result (rows: base,
    and per round the policy trained on unassisted labels and the one trained on assisted labels)."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight.world_run import finetune, table_row
    from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, answer_faults

    stages = tuple(f"{kind}-{r}" for r in range(1, config.iterations + 1) for kind in ("labels", "assisted", "unassisted"))
    paths, world, judge, models = prepare(config, (*stages, "scores"))
    out, seed = Path(config.output), config.seed
    principles = [DEFAULT_CONSTITUTION.principle(name) for name in config.principles]
    dpo = {"max_steps": config.steps, "lr": config.lr, "seed": seed, "beta": config.beta}
    scored: dict[str, str] = {"base": models.weights}
    rounds = []
    # each arm's policy: round 1 samples from --model and trains train_from; later rounds, the arm's trained copy
    policies = {"assisted": models, "unassisted": models}
    for r in range(1, config.iterations + 1):
        prompts = train_questions(world, config.prompts, JUDGED_FAMILIES, seed + 1000 * r)  # fresh questions per round
        by_text = {p.text: p for p in prompts}

        def labels(stage: Path, r=r, by_text=by_text):  # run at once by run_stage: policies are this round's
            # each arm labels its own policy's answers; only the assisted arm's annotator sees that policy's critiques
            out_ = {}
            for arm in ("assisted", "unassisted"):
                policy = load_lm(policies[arm].sample)
                pairs = sample_pairs(policy, list(by_text), max_tokens=config.max_tokens, seed=seed + r)
                truth = [by_text[p["question"]] for p in pairs]
                critiques = assistant_critiques(policy, pairs, principles, seed=seed) if arm == "assisted" else None
                labelled = label_pairs(judge, pairs, critiques, assist=config.assist, seed=seed)
                write_jsonl(stage / f"{arm}.jsonl", labelled)
                summary = label_summary(labelled, truth)
                if critiques is not None:
                    parsed = [P.parse_critique(c) for pair in critiques for side in pair for c in side]
                    flagged = [bool(faults_named(side)) for pair in critiques for side in pair]
                    faulty = [bool(answer_faults(t, p[s])) for p, t in zip(pairs, truth) for s in ("a", "b")]
                    summary["critique_parse_rate"] = rate([n is not None for n in parsed])
                    # does the assistant find a fault exactly when the answer has one (any of the world's faults)?
                    summary["fault_detection"] = rate([f == t for f, t in zip(flagged, faulty)])
                    # the unassisted judge on the same pairs: what the critiques changed
                    summary["same_pairs_unassisted"] = label_summary(label_pairs(judge, pairs, seed=seed), truth)
                out_[arm] = {**summary, "rows": require_rows(label_rows(labelled), f"the {arm} annotator labelled "
                                                             f"no pair in round {r}", summary)}
            return out_

        lab = run_stage(out, f"labels-{r}", labels)
        models.note(f"labels-{r}", samples_from={f"{arm} policy": policies[arm].sample for arm in policies}
                    | {"annotator": models.sample})
        for arm in ("assisted", "unassisted"):
            init = policies[arm].weights
            run_stage(out, f"{arm}-{r}", lambda d, rows=lab[arm]["rows"], init=init: {"model": str(finetune(
                "dpo", rows, init, d / "model", **dpo))})
            models.note(f"{arm}-{r}", trained_from=init, trained=out / f"{arm}-{r}" / "model")
            policies[arm] = policies[arm].then(out / f"{arm}-{r}" / "model")
        scored[f"unassisted-{r}"], scored[f"rrm-{r}"] = policies["unassisted"].weights, policies["assisted"].weights
        rounds.append({arm: {k: v for k, v in lab[arm].items() if k != "rows"} for arm in ("assisted", "unassisted")})
    scores = run_stage(out, "scores", lambda d: score_models(scored, paths, samples=config.eval_samples,
                                                             limit=config.eval_limit, seed=seed))
    rows = [table_row("base", scores["base"], baseline=None)]
    for r, stats in enumerate(rounds, start=1):
        before = "base" if r == 1 else f"unassisted-{r - 1}"
        rows.append(table_row(f"unassisted-{r}", scores[f"unassisted-{r}"], baseline=before, metric="label_agreement",
                              value=stats["unassisted"]["label_agreement"],
                              parse_rate=stats["unassisted"]["verdict_parse_rate"], iteration=r,
                              pairs=stats["unassisted"]["labelled"]))
        rows.append(table_row(f"rrm-{r}", scores[f"rrm-{r}"], baseline=f"unassisted-{r}", metric="label_agreement",
                              value=stats["assisted"]["label_agreement"],
                              parse_rate=stats["assisted"]["verdict_parse_rate"], iteration=r,
                              pairs=stats["assisted"]["labelled"], fault_detection=stats["assisted"]["fault_detection"],
                              critique_parse_rate=stats["assisted"]["critique_parse_rate"]))
    return write_results(config, {"rows": rows, "rounds": rounds, "assist": config.assist, "sources": models.summary(),
                                  "per_prompt_reward": {k: v["per_prompt_reward"] for k, v in scores.items()}})
