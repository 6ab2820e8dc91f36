"""Process supervision (Lightman et al. 2023, "Let's verify step by step") on the world's multi-step arithmetic.

The generator (the base model) samples worked solutions; three ways pick one of N per held-out problem:

- **PRM**, a process reward model trained on step labels (each step graded valid or not by
  :func:`alignlab.world.skills.multistep.grade_solution`: the human labellers of PRM800K). A solution's score is
  the probability that every step is right, ``∏_k p(step k valid)`` (the paper's product; ``min`` is offered too).
- **ORM**, an outcome reward model trained on whether the final answer is right, scored at the last token.
- **majority vote** over the final answers (self-consistency; no model).
- **the base model as a zero-training verifier**: a solution's score is the sum over its stated steps of the base
  model's log-probability of the step's stated result given everything before it (:func:`step_result_logprobs`),
  i.e. the log of the probability that the model itself would have written every result the solution states.
  No label is used; it asks whether the information the PRM should learn is in the base model already.

Both reward models are the base model itself, fine-tuned with a fresh one-logit head on every token
(``AutoModelForTokenClassification``) through alignlab's one training loop, as the paper fine-tunes its base
model: the PRM with a binary cross-entropy at the token that ends each step, the ORM at the solution's last
token; both on the generator's own samples of training problems. The closing sentence ``The answer is N.`` is
the PRM's last step, valid when the solution states every step and N is the last stated result; a solution
that never closes scores 0 under the PRM (its last step is missing).

Best-of-N accuracy for each N is averaged over the disjoint blocks of N among K samples per problem (the paper
subsamples a larger pool the same way), beside pass@N (some sample right: the ceiling of every selector) and a
diagnostic, **uniform over distinct solutions** (the expected accuracy of picking uniformly among the distinct texts
of a block): a verifier whose score carries no information still picks one distinct text, not one sample, so it
loses the weight of the right answer, which the sampler writes most often.

Example::

    >>> step_spans("2 + 3 = 5. 5 * 2 = 10. The answer is 10.")
    [10, 22, 40]
    >>> ranking_auc([[0.9, 0.2, 0.5]], [[True, False, False]])
    1.0
    >>> blocks(16, 4)
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.core.trainer import ObjectiveOutput
from alignlab.oversight.self_consistency import majority_vote
from alignlab.world.families import WorldPrompt
from alignlab.world.skills.multistep import FINAL, STEP, grade_solution, parse_final, parse_steps, problem_of


def step_spans(text: str) -> list[int]:
    """Character offsets where each stated step ends (after its ``.``), then where the closing sentence ends."""
    ends = [m.end() for m in STEP.finditer(text)]
    final = FINAL.search(text)
    return ends + ([final.end() - (len(final.group(0)) - len(final.group(0).rstrip()))] if final else [])


def step_labels(prompt: WorldPrompt, text: str) -> list[bool]:
    """The process labels of a solution: one per stated step (the grader's validity; steps beyond the problem's
    operations invalid), and for the closing sentence whether the solution is complete and the answer is the last
    stated result."""
    problem = problem_of(prompt)
    grades, stated = grade_solution(problem, text), parse_steps(text)
    labels = [grades.steps[i] if i < len(problem.ops) else False for i in range(len(stated))]
    if parse_final(text) is not None:
        labels.append(len(stated) == len(problem.ops) and bool(stated) and parse_final(text) == stated[-1][3])
    return labels


def blocks(k: int, n: int) -> list[list[int]]:
    """The disjoint blocks of ``n`` consecutive samples among ``k`` (the last partial block dropped)."""
    return [list(range(i, i + n)) for i in range(0, k - n + 1, n)]


def solution_tokens(lm, prompt: WorldPrompt, text: str) -> tuple[list[int], list[int]]:
    """The prompt-and-solution token ids, and the position of the token that ends each of :func:`step_spans`."""
    tok = lm.tokenizer
    ids = lm.encode_prompt(prompt.messages)
    # the token ending at each span end: the length of the tokenised prefix, minus one (BPE glues a space to the
    # word after it, so a prefix that ends in "." tokenises as the start of the whole)
    positions = [len(ids) + len(tok.encode(text[:end], add_special_tokens=False)) - 1 for end in step_spans(text)]
    return ids + tok.encode(text, add_special_tokens=False), positions


@dataclass
class VerifierObjective:
    """Binary cross-entropy of the verifier's logit at labelled positions (PRM: each step's end; ORM: the
    solution's last token), the classes weighted to balance (wrong steps are rare)."""

    pos_weight: float = 1.0

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["label_mask"].sum())

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0].float()
        mask, labels = batch["label_mask"], batch["labels"].float()  # [batch, tokens] each
        weight = torch.where(labels > 0, 1.0, self.pos_weight) * mask  # pos_weight here weighs the wrong class
        losses = F.binary_cross_entropy_with_logits(logits, labels, weight=weight, reduction="none")
        right = ((logits > 0).float() == labels).float()[mask.bool()]
        return ObjectiveOutput(loss_sum=losses.sum(), metrics={"accuracy": right.detach()})


def collate_labelled(examples: list[dict[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids``; ``labels``/``label_mask`` hold each example's labels at its ``positions``."""
    width = max(len(e["input_ids"]) for e in examples)
    batch = {k: torch.zeros(len(examples), width, dtype=torch.long) for k in ("input_ids", "attention_mask",
                                                                             "labels", "label_mask")}
    batch["input_ids"].fill_(pad_token_id)
    for b, e in enumerate(examples):
        n = len(e["input_ids"])
        batch["input_ids"][b, :n] = torch.tensor(e["input_ids"])
        batch["attention_mask"][b, :n] = 1
        for pos, label in zip(e["positions"], e["labels"]):
            batch["labels"][b, pos], batch["label_mask"][b, pos] = int(label), 1
    return batch


def constant_loss(labels: Sequence[bool], pos_weight: float) -> float:
    """The :class:`VerifierObjective` loss per label of the best constant prediction (the weighted base rate): the
    level a verifier that learnt nothing from the text reaches."""
    right = sum(labels)
    w_right, w_wrong = float(right), pos_weight * (len(labels) - right)
    if not w_right or not w_wrong:
        return 0.0
    p = w_right / (w_right + w_wrong)
    return -(w_right * math.log(p) + w_wrong * math.log(1 - p)) / len(labels)


def train_verifier(init: str, examples: list[dict[str, Any]], output: str, *, seed: int, steps: int,
                   lr: float = 1e-4, batch_size: int = 32) -> tuple[nn.Module, dict[str, float]]:
    """Fine-tune a copy of ``init`` (the base model) with a fresh one-logit head on every token as a verifier
    (the paper fine-tunes its base model likewise), on ``examples`` ``{"input_ids", "positions", "labels"}``
    through alignlab's one training loop. Returns the model and its training loss: the mean over the first and
    the last tenth of the steps, beside :func:`constant_loss` (a verifier whose last loss is near it learnt
    nothing)."""
    from functools import partial

    from transformers import AutoModelForTokenClassification

    from alignlab.core.trainer import TrainConfig, train

    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(init, num_labels=1)
    labels = [label for e in examples for label in e["labels"]]
    wrong = max(1, labels.count(False))
    objective = VerifierObjective(pos_weight=(len(labels) - wrong) / wrong)
    config = TrainConfig(max_steps=steps, batch_size=min(batch_size, len(examples)), lr=lr, seed=seed,
                         progress=False, mixed_precision="no", save_total_limit=1, overwrite=True)
    pad = model.config.pad_token_id or 0
    history = train(model, objective, examples, partial(collate_labelled, pad_token_id=pad), config, output).history
    losses = [row["loss"] for row in history if "loss" in row]
    tenth = max(1, len(losses) // 10)
    return model.eval(), {"loss_start": mean(losses[:tenth]), "loss_end": mean(losses[-tenth:]),
                          "loss_constant": constant_loss(labels, objective.pos_weight)}


@torch.no_grad()
def verifier_probs(model: nn.Module, examples: list[dict[str, Any]], *, batch_size: int = 64) -> list[torch.Tensor]:
    """Per example, the verifier's probability of "right" at each of its ``positions``."""
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = collate_labelled([{**e, "labels": [0] * len(e["positions"])} for e in chunk])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0]
        out += [torch.sigmoid(logits[b, e["positions"]].float()) for b, e in enumerate(chunk)]
    return out


def prm_score(step_probs: torch.Tensor, how: str = "product") -> float:
    """The PRM's solution score from its step probabilities: the product (the paper's choice) or the minimum;
    0 for a solution with no step."""
    if step_probs.numel() == 0:
        return 0.0
    return float(step_probs.prod() if how == "product" else step_probs.min())


@dataclass
class Solutions:
    """K sampled solutions per problem, their tokens (with step-end positions) and grades."""

    prompts: list[WorldPrompt]
    texts: list[list[str]]
    tokens: list[list[dict[str, Any]]]
    correct: list[list[bool]]
    finals: list[list[int | None]]


def sample_solutions(lm, prompts: Sequence[WorldPrompt], k: int, *, max_tokens: int, seed: int,
                     temperature: float = 1.0, reader=None) -> Solutions:
    """``k`` solutions per problem from the generator ``lm`` (a local model or a server), with their tokens as
    the verifiers read them (``reader``'s tokenizer: a local model, default ``lm``) and their final-answer grades."""
    texts = lm.generate([p.messages for p in prompts for _ in range(k)], max_tokens=max_tokens,
                        temperature=temperature, seed=seed)
    rows = [texts[i * k:(i + 1) * k] for i in range(len(prompts))]
    reader = lm if reader is None else reader
    tokens = [[dict(zip(("input_ids", "positions"), solution_tokens(reader, p, t))) for t in ts]
              for p, ts in zip(prompts, rows)]
    return Solutions(list(prompts), rows, tokens,
                     [[grade_solution(problem_of(p), t).final_correct for t in ts] for p, ts in zip(prompts, rows)],
                     [[parse_final(t) for t in ts] for ts in rows])


def result_spans(text: str) -> list[tuple[int, int]]:
    """Per stated step, the character span from just after its ``=`` to the end of its stated result (the result
    with the space before it, which the tokenizer glues to it)."""
    return [(m.start(4) - 1, m.end(4)) for m in STEP.finditer(text)]


@torch.no_grad()
def step_result_logprobs(lm, sols: Solutions) -> list[list[torch.Tensor]]:
    """Per solution, the base model's log-probability of each stated step's result given the prompt and the
    solution before it (through ``lm.loglikelihood_tokens``, so repeated texts cost one pass)."""
    tok, requests, counts = lm.tokenizer, [], []
    for p, texts, toks in zip(sols.prompts, sols.texts, sols.tokens):
        prompt_len = len(lm.encode_prompt(p.messages))
        for text, t in zip(texts, toks):
            spans = result_spans(text)
            for start, end in spans:
                a = prompt_len + len(tok.encode(text[:start], add_special_tokens=False))
                b = prompt_len + len(tok.encode(text[:end], add_special_tokens=False))
                requests.append((t["input_ids"][:a], t["input_ids"][a:b]))
            counts.append(len(spans))
    logprobs = iter([lp for lp, _ in lm.loglikelihood_tokens(requests)] if requests else [])
    flat = [torch.tensor([next(logprobs) for _ in range(n)]) for n in counts]
    k = len(sols.texts[0]) if sols.texts else 0
    return [flat[i * k:(i + 1) * k] for i in range(len(sols.texts))]


def base_score(result_logprobs: torch.Tensor, closes: bool) -> float:
    """The zero-training verifier's score: the summed log-probability of the stated results (the log of the PRM's
    product, with the base model's probabilities); a solution with no step or that never closes scores -inf."""
    return float(result_logprobs.sum()) if closes and result_logprobs.numel() else -math.inf


def training_examples(sols: Solutions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The PRM's examples (every solution with a label at each step's end) and the ORM's (every solution with
    its final-answer label at its last token)."""
    prm, orm = [], []
    for p, texts, toks, correct in zip(sols.prompts, sols.texts, sols.tokens, sols.correct):
        for text, t, right in zip(texts, toks, correct):
            labels = step_labels(p, text)
            if labels:
                prm.append({"input_ids": t["input_ids"], "positions": t["positions"][:len(labels)], "labels": labels})
            orm.append({"input_ids": t["input_ids"], "positions": [len(t["input_ids"]) - 1], "labels": [right]})
    return prm, orm


def verifier_scores(sols: Solutions, prm: nn.Module, orm: nn.Module, *,
                    prm_reduce: str = "product") -> tuple[list[list[float]], list[list[float]], list[list[torch.Tensor]]]:
    """Every solution's PRM score (a solution that never closes has its last step missing: score 0), its ORM
    score, and the PRM's step probabilities."""
    flat = [t for toks in sols.tokens for t in toks]
    closes = [f is not None for finals in sols.finals for f in finals]
    steps = verifier_probs(prm, flat)
    outcome = verifier_probs(orm, [{"input_ids": t["input_ids"], "positions": [len(t["input_ids"]) - 1]} for t in flat])
    prm_s = [prm_score(p, prm_reduce) if c else 0.0 for p, c in zip(steps, closes)]
    k = len(sols.tokens[0]) if sols.tokens else 0
    cut = range(len(sols.tokens))
    return ([prm_s[i * k:(i + 1) * k] for i in cut], [[float(o[0]) for o in outcome[i * k:(i + 1) * k]] for i in cut],
            [steps[i * k:(i + 1) * k] for i in cut])


def selection_accuracy(sols: Solutions, scores: dict[str, list[list[float]]],
                       ns: Sequence[int]) -> dict[str, dict[int, list[float]]]:
    """Per selector and N, each problem's best-of-N accuracy (mean over the disjoint blocks of N samples): the
    highest of each of ``scores`` (ties: the first), majority vote, uniform over the distinct texts of the block
    (its expected accuracy) and pass@N (the ceiling)."""
    names = [*scores, "vote", "distinct", "pass"]
    out: dict[str, dict[int, list[float]]] = {m: {n: [] for n in ns} for m in names}
    for p, (texts, correct, finals) in enumerate(zip(sols.texts, sols.correct, sols.finals)):
        for n in ns:
            picks: dict[str, list[float]] = {m: [] for m in out}
            for block in blocks(len(correct), n):
                for m, s in scores.items():
                    picks[m].append(float(correct[max(block, key=lambda i: s[p][i])]))
                distinct = {texts[i]: correct[i] for i in block}
                picks["distinct"].append(sum(distinct.values()) / len(distinct))
                vote, _ = majority_vote([None if finals[i] is None else str(finals[i]) for i in block])
                chosen = next((i for i in block if finals[i] is not None and str(finals[i]) == vote), None)
                picks["vote"].append(float(chosen is not None and correct[chosen]))
                picks["pass"].append(float(any(correct[i] for i in block)))
            for m in out:
                out[m][n].append(mean(picks[m]))
    return out


def ranking_auc(scores: list[list[float]], correct: list[list[bool]]) -> float | None:
    """How often a right solution outscores a wrong one of the same problem (ties count half), over every such
    pair: a verifier's discrimination, apart from how the best-of-N maximum treats its outliers."""
    wins = pairs = 0.0
    for s, c in zip(scores, correct):
        right = [x for x, ok in zip(s, c) if ok]
        wrong = [x for x, ok in zip(s, c) if not ok]
        wins += sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
        pairs += len(right) * len(wrong)
    return wins / pairs if pairs else None


def too_few_steps(sols: Solutions, scores: dict[str, list[list[float]]]) -> dict[str, float]:
    """How often each selector's pick among all K samples of a problem states fewer steps than the problem has
    operations, beside the rate among all samples (``"all"``): a product of step probabilities favours short
    solutions, as each step can only lower it."""
    short = [[len(parse_steps(t)) < len(problem_of(p).ops) for t in texts] for p, texts in zip(sols.prompts, sols.texts)]
    out = {"all": mean(x for row in short for x in row)}
    for m, s in scores.items():
        out[m] = mean(row[max(range(len(row)), key=lambda i: s[p][i])] for p, row in enumerate(short))
    return out


def step_label_accuracy(sols: Solutions, step_probs: list[list[torch.Tensor]]) -> dict[str, float | None]:
    """The PRM's accuracy on held-out step labels (threshold ½), overall and on the invalid steps."""
    hits = bad_hits = bad = total = 0
    for p, texts, probs in zip(sols.prompts, sols.texts, step_probs):
        for text, prob in zip(texts, probs):
            labels = step_labels(p, text)
            pred = (prob[:len(labels)] > 0.5).tolist()
            hits += sum(a == b for a, b in zip(pred, labels))
            total += len(labels)
            bad += sum(not b for b in labels)
            bad_hits += sum(not a and not b for a, b in zip(pred, labels))
    return {"step_accuracy": hits / total if total else None, "invalid_step_recall": bad_hits / bad if bad else None}


def summarize_curves(per_problem: dict[str, dict[int, list[float]]]) -> dict[str, dict[str, Any]]:
    """Mean best-of-N accuracy and its standard error over problems, per selector and N."""
    def se(v: list[float]) -> float:
        m = mean(v)
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) if len(v) > 1 else 0.0

    return {m: {str(n): {"accuracy": mean(v), "stderr": se(v)} for n, v in curve.items()}
            for m, curve in per_problem.items()}
