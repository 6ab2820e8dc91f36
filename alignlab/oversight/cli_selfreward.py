"""``alignlab oversee self-rewarding|r-tuning|process-supervision``: three oversight methods on the oversight world.

    alignlab oversee self-rewarding --world --output runs/self-rewarding          # M0 -> M1 -> M2 -> M3
    alignlab oversee r-tuning --world --output runs/r-tuning                      # against plain SFT
    alignlab oversee process-supervision --world --output runs/prm                # PRM vs ORM vs vote over N

``--model`` defaults to the oversight world's base model; it may be a server URL (``alignlab serve``): sampling and
judging go to it while fine-tuning trains a local copy (``--set train_from=DIR``, default ``--model`` when it is a
directory, else the world's base model; :class:`alignlab.oversight.world_run.Models`). Each writes ``results.json`` (with command,
commit, seed and machine) into ``--output``, with ``rows`` for the oversight table. The protocols:
:mod:`alignlab.oversight.self_rewarding`, :mod:`alignlab.oversight.r_tuning`,
:mod:`alignlab.oversight.process_supervision`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignlab.cli import add_config_command, parse_command_config
from alignlab.oversight.world_run import OversightRunConfig, PushesWeights, TrainsLocally, prepare_training


@dataclass
class WorldMethodConfig(OversightRunConfig):
    """A method run on the oversight world."""

    score_samples: int = 4
    """answers per held-out prompt for the world's true scores"""
    score_limit: int = 72
    """held-out prompts for the world's true scores"""


@dataclass
class SelfRewardingConfig(PushesWeights, TrainsLocally, WorldMethodConfig):
    """Self-rewarding: the model judges its own candidates (1-5 rating, averaged), best vs worst -> DPO, iterated."""

    output: str = "runs/self-rewarding"
    iterations: int = 3
    """iterations (M0 -> M1 -> ... -> M_iterations)"""
    prompts: int = 96
    """training prompts per iteration (drawn afresh each iteration from the world's train split)"""
    eval_prompts: int = 48
    """held-out prompts on which each model judges its own samples"""
    families: list[str] = field(default_factory=lambda: ["facts", "unknowns", "arithmetic", "harmful", "groups", "chat"])
    """world prompt families (the rating skill covers these)"""
    n_candidates: int = 4
    """candidates sampled per prompt (paper: 4)"""
    judge_samples: int = 3
    """ratings sampled per candidate and averaged (paper: 3)"""
    temperature: float = 1.0
    """sampling temperature of candidates and ratings"""
    max_tokens: int = 48
    """tokens per candidate"""
    dpo_steps: int = 40
    """DPO steps per iteration"""
    dpo_lr: float = 5e-5
    """DPO learning rate"""
    beta: float = 0.1
    """DPO beta"""


@dataclass
class RTuningConfig(TrainsLocally, WorldMethodConfig):
    """R-Tuning: refusals where the model's own answer is wrong, true answers where it is right; vs plain SFT."""

    output: str = "runs/r-tuning"
    questions: int = 600
    """training questions (facts, unknowns, arithmetic of the train split, a third each)"""
    sft_steps: int = 120
    """SFT steps of both R-Tuning and the plain-SFT baseline"""
    lr: float = 1e-4
    """SFT learning rate"""
    eval_samples: int = 2
    """answers per held-out question"""


@dataclass
class ProcessSupervisionConfig(TrainsLocally, WorldMethodConfig):
    """Process supervision: best-of-N by a PRM (step labels), an ORM (final answers) and majority vote, over N."""

    output: str = "runs/process-supervision"
    train_problems: int = 300
    """training problems whose sampled solutions train the PRM and ORM"""
    train_samples: int = 4
    """solutions sampled per training problem"""
    eval_problems: int = 60
    """held-out problems"""
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """numbers of samples to select from (the largest is sampled per problem)"""
    verifier_steps: int = 100
    """training steps of each verifier"""
    verifier_lr: float = 1e-4
    """verifier learning rate"""
    prm_reduce: str = "product"
    """PRM solution score from step probabilities: product (paper) or min"""
    max_tokens: int = 96
    """tokens per solution"""


def _pick(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (files are grouped by family: keep them all)."""
    return items if n >= len(items) else items[:: len(items) // n][:n]


def run_self_rewarding_command(config: SelfRewardingConfig) -> dict[str, Any]:
    """Self-rewarding iterations on the oversight world; writes and returns the results."""
    import random

    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight.self_rewarding import SelfRewardSettings, run_self_rewarding
    from alignlab.oversight.world_run import finetune, table_row, world_scores

    paths, world, models = prepare_training(config, tuple(f"iter{t}" for t in range(config.iterations + 1)))
    rng = random.Random(f"self-rewarding-{config.seed}")
    train = [world.sample_prompts(config.prompts, rng, families=config.families) for _ in range(config.iterations)]
    eval_prompts = _pick(world.eval_prompts(config.families), config.eval_prompts)
    settings = SelfRewardSettings(**{k: getattr(config, k) for k in asdict(SelfRewardSettings())})
    entries = run_self_rewarding(
        models, train, eval_prompts, config.output, settings, load=load_lm, train=finetune,
        truth=lambda lm: world_scores(lm, paths, samples=config.score_samples, limit=config.score_limit,
                                      seed=config.seed))
    rows = []
    for e in entries:
        judge, data = e["judge"], e["data"] or {}
        rows.append(table_row("base" if e["iteration"] == 0 else f"self-rewarding M{e['iteration']}", e["scores"],
                              baseline=None if e["iteration"] == 0 else "base", metric="rating_accuracy",
                              value=judge["rating_accuracy"], parse_rate=judge["parse_rate"],
                              iteration=e["iteration"], judge=judge, data=data or None))
    result = {"rows": rows, "world_seed": config.world_seed, "sources": models.summary()}
    write_result(Path(config.output) / "results.json", result, seed=config.seed, config=config)
    return result


def run_r_tuning_command(config: RTuningConfig) -> dict[str, Any]:
    """R-Tuning against plain SFT on the same questions; writes and returns the results."""
    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight import r_tuning as R
    from alignlab.oversight.world_run import finetune, table_row, world_scores

    paths, world, models = prepare_training(config, ("base", "sft", "r-tuning", "sft-data.jsonl", "r-tuning-data.jsonl"))
    # the same number from each family (the oversight world's train split is mostly unknowns)
    train = [p for f in R.FAMILIES for p in _pick(list(world.splits.train[f]), config.questions // len(R.FAMILIES))]
    held_out = world.eval_prompts(list(R.FAMILIES))
    known, _ = R.split_by_knowledge(load_lm(models.sample), train, seed=config.seed)  # step 1: D1 (right), D0 (wrong)
    models.note("split", samples_from=models.sample)
    out = Path(config.output)
    scored = {"base": models.weights}  # the weights both tunings start from, scored as the others are: locally
    for name, rows in (("sft", R.plain_rows(train)), ("r-tuning", R.r_tuning_rows(train, known))):
        scored[name] = str(finetune("sft", rows, models.weights, out / name, max_steps=config.sft_steps, lr=config.lr,
                                    seed=config.seed))
        models.note(name, trained_from=models.weights, trained=scored[name])
    rows = []
    for name, path in scored.items():
        lm = load_lm(path)
        metrics = R.honesty_metrics(lm, held_out, samples=config.eval_samples, seed=config.seed)
        scores = world_scores(lm, paths, samples=config.score_samples, limit=config.score_limit, seed=config.seed)
        rows.append(table_row(name, scores, baseline={"base": None, "sft": "base", "r-tuning": "sft"}[name],
                              metric="accuracy_answered", value=metrics["accuracy_answered"], questions=metrics))
    result = {"rows": rows, "known_fraction": sum(known) / len(known), "train_questions": len(train),
              "world_seed": config.world_seed, "sources": models.summary()}
    write_result(out / "results.json", result, seed=config.seed, config=config)
    return result


def run_process_supervision_command(config: ProcessSupervisionConfig) -> dict[str, Any]:
    """PRM vs ORM vs majority vote for best-of-N on multi-step arithmetic; writes and returns the results."""
    from statistics import mean

    from alignlab.core.provenance import write_result
    from alignlab.errors import ConfigError, OversightError
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight import process_supervision as S
    from alignlab.oversight.world_run import table_row
    from alignlab.world.skills.multistep import EVAL_PROBLEMS, PROBLEMS, multistep_prompts

    if config.prm_reduce not in ("product", "min"):
        raise ConfigError(f"prm_reduce must be 'product' or 'min', got {config.prm_reduce!r}")
    paths, world, models = prepare_training(config, ("prm", "orm"))
    problems = multistep_prompts(world.seed, world.size, PROBLEMS)
    # the generator may be a server; the verifiers (and the base model's step log-probs) read the local weights
    lm = load_lm(models.sample)
    local = lm if models.sample == models.weights else load_lm(models.weights)
    init = models.weights
    train = S.sample_solutions(lm, problems[EVAL_PROBLEMS:EVAL_PROBLEMS + config.train_problems],
                               config.train_samples, max_tokens=config.max_tokens, seed=config.seed, reader=local)
    prm_examples, orm_examples = S.training_examples(train)
    if not prm_examples:
        raise OversightError(f"nothing to train the PRM on: none of the {len(orm_examples)} sampled training solutions "
                             f"states a step (parse rate of their final answers "
                             f"{sum(f is not None for fs in train.finals for f in fs) / max(1, len(orm_examples)):.3f})")
    out = Path(config.output)
    prm, prm_loss = S.train_verifier(init, prm_examples, str(out / "prm"), seed=config.seed,
                                     steps=config.verifier_steps, lr=config.verifier_lr)
    orm, orm_loss = S.train_verifier(init, orm_examples, str(out / "orm"), seed=config.seed,
                                     steps=config.verifier_steps, lr=config.verifier_lr)
    test = S.sample_solutions(lm, problems[:min(config.eval_problems, EVAL_PROBLEMS)], max(config.ns),
                              max_tokens=config.max_tokens, seed=config.seed + 1, reader=local)
    models.note("solutions", samples_from=models.sample)
    for name in ("prm", "orm"):
        models.note(name, trained_from=init, trained=out / name)
    prm_scores, orm_scores, step_probs = S.verifier_scores(test, prm, orm, prm_reduce=config.prm_reduce)
    closes = [[f is not None for f in fs] for fs in test.finals]
    base_scores = [[S.base_score(lp, c) for lp, c in zip(row, cs)]
                   for row, cs in zip(S.step_result_logprobs(local, test), closes)]
    scores = {"prm": prm_scores, "orm": orm_scores, "base": base_scores}
    curves = S.summarize_curves(S.selection_accuracy(test, scores, config.ns))
    parse_rate = sum(f is not None for fs in test.finals for f in fs) / sum(len(fs) for fs in test.finals)
    top = str(max(config.ns))
    rows = [table_row(f"best-of-{top} {name}", {}, baseline=None if name == "vote" else "vote",
                      metric=f"best_of_{top}_accuracy", value=curves[key][top]["accuracy"],
                      stderr=curves[key][top]["stderr"], parse_rate=parse_rate)
            for key, name in (("prm", "PRM"), ("orm", "ORM"), ("base", "base-model step log-prob"), ("vote", "vote"))]
    result = {"rows": rows, "curves": curves, "prm_step_labels": S.step_label_accuracy(test, step_probs),
              "ranking_auc": {m: S.ranking_auc(s, test.correct) for m, s in scores.items()},
              "training_loss": {"prm": prm_loss, "orm": orm_loss},
              "too_few_steps": S.too_few_steps(test, scores),
              "distinct_texts_per_problem": mean(len(set(ts)) for ts in test.texts),
              "train": {"solutions": len(orm_examples), "step_labels": sum(len(e["labels"]) for e in prm_examples),
                        "invalid_steps": sum(not x for e in prm_examples for x in e["labels"]),
                        "right_answers": sum(e["labels"][0] for e in orm_examples)},
              "parse_rate": parse_rate, "world_seed": config.world_seed, "sources": models.summary()}
    write_result(out / "results.json", result, seed=config.seed, config=config)
    return result


FLAGS = ("model", "world", "world_dir", "world_seed", "output", "seed")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the three sub-commands of ``alignlab oversee``."""
    add_config_command(commands, "self-rewarding", _self_rewarding,
                       help="the model judges its own candidates, best vs worst -> DPO, iterated")
    add_config_command(commands, "r-tuning", _r_tuning,
                       help="refuse where the model's own answer was wrong; against plain SFT")
    add_config_command(commands, "process-supervision", _process_supervision,
                       help="best-of-N by process vs outcome reward models vs majority vote")


def _self_rewarding(args: argparse.Namespace) -> None:
    result = run_self_rewarding_command(parse_command_config(
        SelfRewardingConfig, args, flags=(*FLAGS, "iterations"), lists=["families"]))
    for row in result["rows"]:
        j = row["judge"]
        print(f"{row['method']}: true reward {row['true_reward']:.3f}, judged rating {j['judged_rating']}, "
              f"true rating {j['true_rating']}, rating accuracy {j['rating_accuracy']}, parse rate {j['parse_rate']}")


def _r_tuning(args: argparse.Namespace) -> None:
    result = run_r_tuning_command(parse_command_config(RTuningConfig, args, flags=FLAGS))
    for row in result["rows"]:
        q = row["questions"]
        print(f"{row['method']}: honesty {q['honesty']:.3f}, helpfulness {q['helpfulness']:.3f}, refusals "
              f"{q['refusal_rate_answerable']:.3f}, accuracy answered {q['accuracy_answered']}")


def _process_supervision(args: argparse.Namespace) -> None:
    result = run_process_supervision_command(parse_command_config(ProcessSupervisionConfig, args, flags=FLAGS,
                                                                  lists=["ns"]))
    for name, curve in result["curves"].items():
        print(f"{name}: " + ", ".join(f"N={n} {v['accuracy']:.3f}" for n, v in curve.items()))
