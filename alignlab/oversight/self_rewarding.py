"""Self-rewarding language models (Yuan et al. 2024): the model writes its own preference data and judges it.

One iteration, from the current model M_t (M_0 = the world's base model, which already has the rating skill, so
it plays the paper's M1 seed model; the paper's rubric prompt is the world's 1-5 rating prompt)::

    for each training prompt x:   y_1..y_N ~ M_t(· | x)                      # N candidates (paper: N = 4)
                                  r_i = mean_j Rating_j(M_t, x, y_i)          # J judge samples averaged (paper: 3)
                                  pair (y_argmax r, y_argmin r), dropped if max r == min r
    M_{t+1} = DPO(M_t; pairs)                                                   # AIFT(M_t), paper eq. of §2.3

iterated M_0 → M_1 → M_2 → M_3. Each model is also measured against the truth the world knows: its true reward on
held-out prompts (``world_scores``) and how well it judges its own samples there: rating accuracy (a parsed
rating equals the true 1-5 rating), the mean judged rating next to the mean true rating of the same samples
(``judge_gap``: judged minus true; a gap that grows while true reward stalls is the model hacking its own judge),
and the pairwise agreement of its best-vs-worst picks with the true reward. Judge outputs that do not parse are
counted (``parse_rate``) and cast no score; a candidate with no parsed rating is left out of the pair.

Each iteration writes ``iter{t}/model`` and then ``iter{t}/iteration.json``; a re-run skips every iteration
whose ``iteration.json`` exists and continues from its model, so a server or job failing mid-iteration loses
only that iteration.

Example::

    >>> best_worst_pair(["a", "b", "c"], [3.0, None, 1.5])
    (0, 2)
    >>> best_worst_pair(["a", "b"], [2.0, 2.0]) is None, best_worst_pair(["a", "a"], [3.0, 1.0]) is None
    (True, True)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from alignlab.core.records import assistant, user
from alignlab.errors import OversightError
from alignlab.evaluate.interface import LM
from alignlab.oversight.world_run import Models
from alignlab.world.families import WorldPrompt
from alignlab.world.judge import true_reward
from alignlab.world.skills import protocols as P


@dataclass
class Judged:
    """Candidates of every prompt with their judged (mean parsed rating, None if none parsed) and true ratings."""

    prompts: list[WorldPrompt]
    candidates: list[list[str]]
    judged: list[list[float | None]]
    true_ratings: list[list[int]]
    parsed: int
    """judge outputs that parsed"""
    asked: int
    """judge outputs asked for"""
    rating_hits: int
    """parsed ratings equal to the true rating"""


def best_worst_pair(candidates: Sequence[str], scores: Sequence[float | None]) -> tuple[int, int] | None:
    """Indices of the highest- and lowest-judged candidate (first of ties); None when fewer than two were scored,
    or they scored the same (the paper drops such pairs), or they are the same text (ratings sampled apart)."""
    scored = [i for i, s in enumerate(scores) if s is not None]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda i: scores[i])
    worst = min(scored, key=lambda i: scores[i])
    return None if scores[best] == scores[worst] or candidates[best] == candidates[worst] else (best, worst)


def judge_candidates(lm: LM, prompts: Sequence[WorldPrompt], *, n_candidates: int, judge_samples: int,
                     max_tokens: int, temperature: float, seed: int) -> Judged:
    """Sample ``n_candidates`` answers per prompt from ``lm``, then have ``lm`` rate each ``judge_samples`` times
    with the rating prompt (the additive rubric's 1-5 score), averaging the parsed ratings."""
    n = n_candidates
    texts = lm.generate([p.messages for p in prompts for _ in range(n)], max_tokens=max_tokens,
                        temperature=temperature, seed=seed)
    candidates = [texts[i * n:(i + 1) * n] for i in range(len(prompts))]
    asks = [[user(P.rating_prompt(p.text, y))] for p, ys in zip(prompts, candidates) for y in ys
            for _ in range(judge_samples)]
    outputs = lm.generate(asks, max_tokens=8, temperature=temperature, seed=seed + 1)
    ratings = [P.parse_rating(o) for o in outputs]
    judged, truth, hits, k = [], [], 0, 0
    for p, ys in zip(prompts, candidates):
        judged.append([])
        truth.append([])
        for y in ys:
            mine = [r for r in ratings[k:k + judge_samples] if r is not None]
            k += judge_samples
            true = P.true_rating(p, y)
            hits += sum(r == true for r in mine)
            judged[-1].append(mean(mine) if mine else None)
            truth[-1].append(true)
    parsed = sum(r is not None for r in ratings)
    return Judged(list(prompts), candidates, judged, truth, parsed, len(ratings), hits)


def preference_pairs(judged: Judged) -> list[dict[str, Any]]:
    """DPO rows (TRL's conversational format) of every prompt's best- vs worst-judged candidate."""
    rows = []
    for p, ys, scores in zip(judged.prompts, judged.candidates, judged.judged):
        pick = best_worst_pair(ys, scores)
        if pick is not None:
            rows.append({"prompt": p.messages, "chosen": [assistant(ys[pick[0]])], "rejected": [assistant(ys[pick[1]])]})
    return rows


def judge_stats(judged: Judged) -> dict[str, Any]:
    """How the model's own judgements compare with the truth, on the candidates it judged."""
    pairs = [(p, ys, pick) for p, ys, s in zip(judged.prompts, judged.candidates, judged.judged)
             if (pick := best_worst_pair(ys, s)) is not None]
    gaps = [true_reward(p, ys[b]) - true_reward(p, ys[w]) for p, ys, (b, w) in pairs]
    untied = [g for g in gaps if g != 0]
    scored = [(j, t) for js, ts in zip(judged.judged, judged.true_ratings) for j, t in zip(js, ts) if j is not None]
    parsed = judged.parsed
    return {
        "parse_rate": parsed / judged.asked if judged.asked else None,
        "rating_accuracy": judged.rating_hits / parsed if parsed else None,
        "judged_rating": mean(j for j, _ in scored) if scored else None,
        "true_rating": mean(t for _, t in scored) if scored else None,
        "judge_gap": mean(j - t for j, t in scored) if scored else None,
        "pairs": len(pairs),
        "pair_agreement": sum(g > 0 for g in untied) / len(untied) if untied else None,
        "pair_true_gap": mean(gaps) if gaps else None,
        "pair_tie_rate": 1 - len(untied) / len(gaps) if gaps else None,
    }


@dataclass
class SelfRewardSettings:
    """The protocol's budget (see the module docstring for what each number is in the paper)."""

    iterations: int = 3
    n_candidates: int = 4
    judge_samples: int = 3
    temperature: float = 1.0
    max_tokens: int = 48
    dpo_steps: int = 60
    dpo_lr: float = 5e-5
    beta: float = 0.1
    seed: int = 0


def run_self_rewarding(init: str | Path | Models, train_prompts: Sequence[Sequence[WorldPrompt]],
                       eval_prompts: Sequence[WorldPrompt], output: str | Path, settings: SelfRewardSettings, *,
                       load: Callable[[str], LM], train: Callable[..., Path], truth: Callable[[LM], dict[str, Any]],
                       progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Iterate self-rewarding from ``init`` (``train_prompts[t - 1]``: iteration t's prompts): one entry per model
    M_0..M_T (its world ``truth`` scores, its judge statistics on ``eval_prompts``, and for t ≥ 1 those of the
    data it was trained on). ``init`` is a model path, or :class:`~alignlab.oversight.world_run.Models` whose
    ``sample`` (perhaps a server) writes and judges iteration 1's data and M_0's judge statistics while its
    local ``weights`` are trained (and scored as M_0); later iterations sample from the trained local copy (with
    ``Models.push``, through the server loaded with it).
    ``load`` turns a model path or URL into an LM, ``train(kind, rows, init, output, ...)`` is
    :func:`alignlab.oversight.world_run.finetune`'s signature, ``truth(lm)`` the world's scores. Finished
    iterations are read back, not redone."""
    output, s = Path(output), settings
    models = init if isinstance(init, Models) else Models(str(init), str(init))
    entries = []
    for t in range(s.iterations + 1):
        done = output / f"iter{t}" / "iteration.json"
        if done.exists():  # finished before: resume from its model
            entry = json.loads(done.read_text(encoding="utf-8"))
            progress(f"iteration {t}: done before, resuming from {entry['model']}")
        else:
            entry = _iteration(t, models, train_prompts, eval_prompts, output, s, load=load, train=train, truth=truth)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(entry, indent=1), encoding="utf-8")
            own = entry["judge"]
            progress(f"iteration {t}: true reward {entry['scores']['true_reward']:.3f}, judged rating "
                     f"{own['judged_rating']}, true rating {own['true_rating']}, rating accuracy {own['rating_accuracy']}")
        if t > 0:  # (an iteration written before sources were recorded: M_{t-1} sampled and was trained)
            models.note(f"iter{t}", samples_from=entry.get("data_from", models.source),
                        trained_from=entry.get("trained_from", models.weights), trained=entry["model"])
            models = models.then(entry["model"])
        models.note(f"iter{t}-judge", samples_from=entry.get("judged_by", entry["model"]))
        entries.append(entry)
    return entries


def _iteration(t: int, models: Models, train_prompts: Sequence[Sequence[WorldPrompt]],
               eval_prompts: Sequence[WorldPrompt], output: Path, s: SelfRewardSettings, *, load: Callable[[str], LM],
               train: Callable[..., Path], truth: Callable[[LM], dict[str, Any]]) -> dict[str, Any]:
    """Iteration ``t``: for t ≥ 1, M_t = DPO(M_{t-1}) on the pairs M_{t-1} wrote and judged (``models``: M_{t-1});
    then M_t judges its own samples on the held-out prompts and is scored against the truth."""
    entry: dict[str, Any] = {"iteration": t, "data": None}
    if t > 0:
        lm = load(models.sampler())
        judged = judge_candidates(lm, train_prompts[t - 1], n_candidates=s.n_candidates, judge_samples=s.judge_samples,
                                  max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed + 1000 * t)
        rows, entry["data"] = preference_pairs(judged), judge_stats(judged)
        if not rows:
            raise OversightError(f"iteration {t}: the judge separated no candidates (parse rate "
                                 f"{entry['data']['parse_rate']}); nothing to train on")
        trained = str(train("dpo", rows, models.weights, output / f"iter{t}" / "model", max_steps=s.dpo_steps,
                            lr=s.dpo_lr, beta=s.beta, seed=s.seed))
        entry.update(data_from=models.source, trained_from=models.weights)
        models = models.then(trained)
    lm = load(models.sampler())
    own = judge_stats(judge_candidates(lm, eval_prompts, n_candidates=s.n_candidates, judge_samples=s.judge_samples,
                                       max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed + 7))
    scored = lm if models.weights == models.sample else load(models.weights)  # M_0's truth: the weights trained
    return {**entry, "model": models.weights, "judged_by": models.source, "scores": truth(scored), "judge": own}
