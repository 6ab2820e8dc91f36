"""``alignlab oversee debate|multiagent-debate|market-making|ida|sandwiching``: debate, market making and task
decomposition on the oversight world, over any model the LM interface loads (a directory or a server URL).

    alignlab oversee debate --world --output runs/debate                    # the world's base model debates
    alignlab oversee multiagent-debate --model http://127.0.0.1:8000/v1 --world --output runs/mad
    alignlab oversee market-making --world --output runs/market
    alignlab oversee ida --world --output runs/ida                          # resumes after its last iteration
    alignlab oversee sandwiching --world --output runs/sandwich

Each writes ``results.json`` (``{"rows": [...]}`` of :func:`alignlab.oversight.world_run.table_row` and the
method's own numbers) into ``--output`` and, with ``--record PATH``, a copy to PATH (the docs' result files).
Without ``--model`` the oversight world's base model is used. The protocols: :mod:`alignlab.oversight.debate`,
:mod:`alignlab.oversight.market_making`, :mod:`alignlab.oversight.decomposition`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.cli import add_config_command, parse_command_config
from alignlab.oversight.world_run import (
    Models,
    OversightRunConfig,
    PushesWeights,
    TrainsLocally,
    is_url,
    prepare_training,
    prepare_world,
)


@dataclass
class WorldMethodConfig(OversightRunConfig):
    """A model on the oversight world."""

    record: str = ""
    """also write the results to this JSON file (e.g. docs/results/oversight/debate/seed0.json)"""
    score_limit: int = 40
    """held-out world prompts for each model's ground-truth scores (the table's reward columns)"""


@dataclass
class DebateConfig(TrainsLocally, WorldMethodConfig):
    """Debate before a weaker judge: judge accuracy with and without the transcript."""

    output: str = "runs/debate"
    judge: str = ""
    """the judge's model (default: --model)"""
    items: int = 100
    """held-out questions debated"""
    rounds: list[int] = field(default_factory=lambda: [1, 2])
    """numbers of debate rounds (each measured)"""
    samples: int = 4
    """critiques a debater samples per round (it states the strongest)"""
    judge_items: int = 160
    """training questions whose true verdicts teach the judge to read (0: the judge reads zero-shot only)"""
    judge_steps: int = 120
    """fine-tuning steps of each judge taught to read"""
    judge_lr: float = 3e-4
    """learning rate of the judges' fine-tuning"""


@dataclass
class MultiagentDebateConfig(WorldMethodConfig):
    """Multi-agent debate: majority accuracy by rounds and number of agents."""

    output: str = "runs/multiagent-debate"
    agents: list[int] = field(default_factory=lambda: [1, 3, 5])
    """numbers of agents (each a separate debate)"""
    rounds: int = 2
    """rounds of reading the others' answers"""
    families: list[str] = field(default_factory=lambda: ["multistep", "facts"])
    """question families (multistep: held-out problems of at least min_ops operations)"""
    per_family: int = 40
    """questions per family"""
    min_ops: int = 5
    """shortest multi-step problem asked"""
    temperature: float = 1.0
    """the agents' sampling temperature"""
    max_tokens: int = 96
    """tokens per answer"""


@dataclass
class MarketMakingConfig(WorldMethodConfig):
    """Market making: an adversary moves the market's prediction of the judge until it settles."""

    output: str = "runs/market-making"
    judge: str = ""
    """the judge the market predicts (default: --model)"""
    items: int = 60
    """held-out questions"""
    candidates: int = 4
    """arguments the adversary samples per round (it shows the one that moves the market most)"""
    mode: str = "likelihood"
    """how the market reads the judge: likelihood (its verdicts' log-likelihoods) or sample (sampled verdicts)"""
    samples: int = 8
    """verdicts sampled per market prediction (mode sample)"""
    max_rounds: int = 4
    """rounds at most"""
    threshold: float = 0.1
    """the market has settled when no argument moves it by this much"""


@dataclass
class IDAConfig(PushesWeights, TrainsLocally, WorldMethodConfig):
    """Iterated amplification and distillation on long multi-step arithmetic."""

    output: str = "runs/ida"
    min_ops: list[int] = field(default_factory=lambda: [7, 10])
    """shortest problem amplified in each iteration"""
    max_ops: list[int] = field(default_factory=lambda: [9, 12])
    """longest problem amplified in each iteration"""
    parts: int = 2
    """sub-questions a problem is decomposed into"""
    train_problems: int = 192
    """problems amplified (and distilled) per iteration"""
    eval_problems: int = 60
    """held-out problems per range"""
    steps: int = 120
    """distillation (SFT) steps per iteration"""
    lr: float = 3e-4
    """distillation learning rate"""


@dataclass
class SandwichingConfig(WorldMethodConfig):
    """Sandwiching: a weak overseer alone or assisted by the model, against the world's truth (the expert)."""

    output: str = "runs/sandwiching"
    overseer: str = ""
    """the weak overseer's model (default: --model)"""
    problems: int = 100
    """held-out long problems, each with a right solution and one with a slip"""
    min_ops: int = 7
    """shortest problem"""
    max_ops: int = 12
    """longest problem"""
    parts: int = 3
    """sub-questions of the assistant's decomposition"""


def scores_of(paths, config: WorldMethodConfig, model: str) -> dict[str, Any]:
    """The world's ground truth for ``model`` (``score_limit`` held-out prompts, 2 samples each), computed once
    per process: every row of a run that shows the same model shares it."""
    from alignlab.oversight.world_run import world_scores

    key = (str(paths.root), model, config.score_limit, config.seed)
    if key not in _SCORES:
        scores = world_scores(model, paths, samples=2, limit=config.score_limit, seed=config.seed)
        _SCORES[key] = {k: v for k, v in scores.items() if k != "per_prompt_reward"}
    return _SCORES[key]


_SCORES: dict[tuple, dict[str, Any]] = {}


def _write(config: WorldMethodConfig, results: dict[str, Any]) -> dict[str, Any]:
    from alignlab.core.provenance import write_result

    write_result(Path(config.output) / "results.json", results, seed=config.seed, config=config)
    if config.record:
        write_result(config.record, results, seed=config.seed, config=config)
    return results


def run_debate(config: DebateConfig) -> dict[str, Any]:
    """Debate on ``config.items`` held-out questions for each number of rounds, judged zero-shot and, with
    ``judge_items``, by judges taught to read (one without transcripts, one with the longest debate's: the same
    labels)."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight import debate as D
    from alignlab.oversight.world_run import finetune, table_row

    paths, world, models = prepare_training(config, ours=("judge-plain", "judge-debate",
                                                   "judge-plain-data.jsonl", "judge-debate-data.jsonl"))
    debater, judge_path = load_lm(models.sample), config.judge or models.sample
    # the judges taught to read start from train_from, else the judge's own weights when local, else --model's
    judge_weights = config.train_from or (config.judge if config.judge and not is_url(config.judge) else models.weights)
    models = Models(models.sample, judge_weights)  # the result's sources name the weights the judges train from
    items = D.debate_items(world.splits.eval, config.items, seed=config.seed)
    full, debater_parse = D.debate(debater, items, rounds=max(config.rounds), samples=config.samples, seed=config.seed)
    transcripts = {r: [t[:2 * r] for t in full] for r in config.rounds}  # round r's turns are the same in any debate
    pairs = {"": (judge_path, judge_path)}  # suffix -> (the judge alone, the judge of debates)
    if config.judge_items:
        train = D.debate_items(world.splits.train, config.judge_items, seed=config.seed)
        train_transcripts, _ = D.debate(debater, train, rounds=max(config.rounds), samples=config.samples,
                                        seed=config.seed)
        trained = [str(finetune("sft", D.judge_rows(train, t), judge_weights, Path(config.output) / f"judge-{name}",
                                max_steps=config.judge_steps, lr=config.judge_lr, seed=config.seed))
                   for name, t in (("plain", None), ("debate", train_transcripts))]
        pairs["-trained"] = (trained[0], trained[1])
        for path in trained:
            models.note(Path(path).name, trained_from=judge_weights, trained=path)
    models.note("debates", samples_from={"debaters": models.sample, "judge": judge_path})
    rows = []
    for suffix, (alone_path, debate_path) in pairs.items():
        alone = D.judge(load_lm(alone_path), items, seed=config.seed)
        rows.append(table_row(f"judge-alone{suffix}", scores_of(paths, config, alone_path), baseline=None,
                              metric="judge_accuracy", value=alone.accuracy, stderr=alone.stderr,
                              parse_rate=alone.parse_rate, rounds=0))
        judge_lm = load_lm(debate_path)
        for r, transcript in transcripts.items():
            result = D.judge(judge_lm, items, transcript, seed=config.seed)
            rows.append(table_row(f"debate{suffix}", scores_of(paths, config, debate_path),
                                  baseline=f"judge-alone{suffix}", metric="judge_accuracy", value=result.accuracy,
                                  stderr=result.stderr, parse_rate=result.parse_rate, rounds=r,
                                  debater_parse_rate=debater_parse))
    examples = [{"question": it.prompt.text, "A": it.answer_a, "B": it.answer_b, "truth": it.truth,
                 "transcript": full[i]} for i, it in enumerate(items[:3])]
    return _write(config, {"rows": rows, "examples": examples, "sources": models.summary()})


def run_multiagent_debate(config: MultiagentDebateConfig) -> dict[str, Any]:
    """Multi-agent debate on held-out multi-step problems and facts, for each number of agents."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight import debate as D
    from alignlab.oversight.consistency import world_answer_parser
    from alignlab.oversight.world_run import table_row
    from alignlab.world.skills.multistep import EVAL_PROBLEMS, PROBLEMS, multistep_prompts

    paths, world, model = prepare_world(config)
    lm = load_lm(model)
    questions = []
    for family in config.families:
        if family == "multistep":
            pool = [p for p in multistep_prompts(world.seed, world.size, PROBLEMS)[:EVAL_PROBLEMS]
                    if len(p.meta["ops"]) >= config.min_ops]
        else:
            pool = world.eval_prompts([family])
        questions += pool[:config.per_family]
    curves = [D.multiagent_debate(lm, questions, agents=n, rounds=config.rounds, extract=world_answer_parser(world),
                                  feedback=D.world_feedback, temperature=config.temperature,
                                  max_tokens=config.max_tokens, seed=config.seed)
              for n in config.agents]
    rows = []
    for curve in curves:
        n, first, last = curve["agents"], curve["rounds"][0], curve["rounds"][-1]
        rows.append(table_row(f"vote-{n}", scores_of(paths, config, model), baseline=None, metric="majority_accuracy",
                              value=first["majority_accuracy"], stderr=first["majority_stderr"],
                              parse_rate=first["parse_rate"], agents=n, rounds=0))
        rows.append(table_row(f"multiagent-debate-{n}", scores_of(paths, config, model), baseline=f"vote-{n}",
                              metric="majority_accuracy", value=last["majority_accuracy"],
                              stderr=last["majority_stderr"], parse_rate=last["parse_rate"], agents=n,
                              rounds=config.rounds))
    by_family = {f: sum(q.family == f for q in questions) for f in config.families}
    return _write(config, {"rows": rows, "curves": curves, "questions": by_family})


def run_market_making(config: MarketMakingConfig) -> dict[str, Any]:
    """Market making on ``config.items`` held-out debate questions."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight.debate import debate_items
    from alignlab.oversight.market_making import Market, market_making
    from alignlab.oversight.world_run import table_row

    paths, world, model = prepare_world(config)
    adversary, judge_path = load_lm(model), config.judge or model
    items = debate_items(world.splits.eval, config.items, seed=config.seed)
    market = Market(load_lm(judge_path), mode=config.mode, samples=config.samples, seed=config.seed)
    out = market_making(market, adversary, items, candidates=config.candidates, max_rounds=config.max_rounds,
                        threshold=config.threshold, seed=config.seed)
    scores = scores_of(paths, config, judge_path)
    rows = [table_row("market-first-prediction", scores, baseline=None, metric="accuracy", value=out["first_accuracy"],
                      stderr=out["first_stderr"], parse_rate=out["judge_parse_rate"]),
            table_row("market-making", scores, baseline="market-first-prediction", metric="accuracy",
                      value=out["accuracy"], stderr=out["stderr"], parse_rate=out["judge_parse_rate"],
                      adversary_parse_rate=out["adversary_parse_rate"])]
    keep = ("mean_move_by_round", "moving_by_round", "arguments_shown", "judge_parse_rate", "adversary_parse_rate")
    return _write(config, {"rows": rows, **{k: out[k] for k in keep},
                           "examples": [{"question": it.prompt.text, "truth": it.truth, "p": p, "transcript": t}
                                        for it, p, t in zip(items[:3], out["final_p"], out["transcripts"])]})


def run_ida(config: IDAConfig) -> dict[str, Any]:
    """IDA from ``config.model``; each iteration's model under ``output/iter{k}`` (a re-run resumes)."""
    from alignlab.oversight.decomposition import ida
    from alignlab.oversight.world_run import table_row

    iterations = tuple(f"iter{k + 1}" for k in range(len(config.min_ops)))
    paths, world, models = prepare_training(config, ours=(*iterations, *(f"{i}-data.jsonl" for i in iterations)))
    records = ida(models, config.output, world_seed=world.seed, min_ops=config.min_ops, max_ops=config.max_ops,
                  parts=config.parts, train_problems=config.train_problems, eval_problems=config.eval_problems,
                  max_steps=config.steps, lr=config.lr, seed=config.seed)
    longest = records[-1]["range"]
    rows = [table_row("base", scores_of(paths, config, models.weights), baseline=None, metric=f"direct_accuracy_{longest}",
                      value=records[0]["direct_before"][longest]["accuracy"],
                      stderr=records[0]["direct_before"][longest]["stderr"],
                      parse_rate=records[0]["direct_before"][longest]["parse_rate"], iteration=0)]
    for k, record in enumerate(records):
        after = record["direct_after"][longest]
        rows.append(table_row(f"ida-M{k + 1}", scores_of(paths, config, record["model"]), baseline="base",
                              metric=f"direct_accuracy_{longest}", value=after["accuracy"], stderr=after["stderr"],
                              parse_rate=after["parse_rate"], iteration=k + 1))
    return _write(config, {"rows": rows, "iterations": [{k: v for k, v in r.items() if k != "model"} for r in records],
                           "sources": models.summary()})


def run_sandwiching(config: SandwichingConfig) -> dict[str, Any]:
    """A weak overseer choosing between solutions of long problems: alone, and reading the model's assistance."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight import decomposition as C
    from alignlab.oversight.debate import judge
    from alignlab.oversight.world_run import table_row

    paths, world, model = prepare_world(config)
    assistant, overseer_path = load_lm(model), config.overseer or model
    overseer = load_lm(overseer_path)
    problems = C.long_problems(world.seed, "eval", config.problems, config.min_ops, config.max_ops)
    items = C.sandwich_items(problems, seed=config.seed)
    amplified, sub_parse = C.amplify(assistant, problems, parts=config.parts, seed=config.seed)
    critiques, critique_parse = C.critique_assistance(assistant, items, seed=config.seed)
    scores = scores_of(paths, config, overseer_path)
    rows = []
    for name, transcript, parse in (("overseer-alone", None, None), ("overseer+critique", critiques, critique_parse),
                                    ("overseer+decomposition", C.decomposition_assistance(amplified, items), sub_parse)):
        result = judge(overseer, items, transcript, seed=config.seed)
        rows.append(table_row(name, scores, baseline=None if transcript is None else "overseer-alone",
                              metric="overseer_accuracy", value=result.accuracy, stderr=result.stderr,
                              parse_rate=result.parse_rate, assistance_parse_rate=parse))
    expert = {"assistant_alone": C.assistant_choice(amplified, items), "expert": 1.0,
              "assistant_amplified_accuracy": C.accuracy(problems, amplified)["accuracy"]}
    return _write(config, {"rows": rows, **expert})


FLAGS = ("model", "world", "world_dir", "world_seed", "output", "record", "seed")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the debate, market-making and decomposition sub-commands of ``alignlab oversee``."""
    for name, handler, help_text in (
            ("debate", _debate, "two debaters argue before a weaker judge: judge accuracy with and without debate"),
            ("multiagent-debate", _multiagent, "agents read each other's answers and update: accuracy by rounds and agents"),
            ("market-making", _market, "an adversary moves a market predicting the judge until it settles"),
            ("ida", _ida, "iterated amplification (decomposition) and distillation on long arithmetic"),
            ("sandwiching", _sandwiching, "a weak overseer with and without the model's assistance vs the truth")):
        add_config_command(commands, name, handler, help=help_text)


def _print_rows(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        extra = f" rounds {row['rounds']}" if "rounds" in row else ""
        print(f"{row['method']}{extra}: {row['metric']} {row['value']:.3f} ± {row['value_stderr']:.3f}"
              f" (parse rate {row['parse_rate']:.3f})")


def _debate(args: argparse.Namespace) -> None:
    _print_rows(run_debate(parse_command_config(DebateConfig, args, flags=FLAGS)))


def _multiagent(args: argparse.Namespace) -> None:
    _print_rows(run_multiagent_debate(parse_command_config(MultiagentDebateConfig, args, flags=FLAGS,
                                                           lists=["families"])))


def _market(args: argparse.Namespace) -> None:
    result = run_market_making(parse_command_config(MarketMakingConfig, args, flags=FLAGS))
    _print_rows(result)
    print("mean move by round: " + ", ".join(f"{m:.3f}" for m in result["mean_move_by_round"]))


def _ida(args: argparse.Namespace) -> None:
    _print_rows(run_ida(parse_command_config(IDAConfig, args, flags=FLAGS)))


def _sandwiching(args: argparse.Namespace) -> None:
    result = run_sandwiching(parse_command_config(SandwichingConfig, args, flags=FLAGS))
    _print_rows(result)
    print(f"assistant alone {result['assistant_alone']:.3f}; expert (the world's truth) 1.000")
